"""The two failure modes of a run's masks, and the mask rule ``qdev postprocess`` would choose for
it, on validation, then reported on test (the same search: ``training/postprocess.py``):

* false lesions on normal scans: normal images with any marked pixel;
* missed lesions: lesion images whose Dice is below 0.1.

The rule is chosen on the validation split only (by all-image Dice, each step to a more complex rule
behind the search's bootstrap margin; the grid's best rule without the margin is shown beside it);
the test columns are read after the choice, for the report. Also prints the EMA-versus-live
validation curve statistics of
the run's log when it has an EMA. Reads the run's checkpoint; writes nothing.

Usage: .venv/bin/python bench/postprocess.py RUN [RUN ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from qdev.core.masks import dice
from qdev.core.maskrule import DEFAULT_RULE
from qdev.training.checkpoint import load_checkpoint_model
from qdev.training.data import load_busi, read_split, resolve_busi_root
from qdev.training.postprocess import RuleSearch, rule_figures, search_rules, split_codes


def ema_curve(run: Path) -> str | None:
    log = [json.loads(x) for x in (run / "train" / "log.jsonl").read_text().splitlines()]
    rows = [r for r in log if "val_live" in r and r.get("bits_frozen", True)]
    if not rows:
        return None
    e = np.array([r["val"]["dice_lesion"] for r in rows])
    live = np.array([r["val_live"]["dice_lesion"] for r in rows])
    jumps = lambda a: float(np.abs(np.diff(a)).max()) if len(a) > 1 else 0.0  # noqa: E731
    return (
        f"frozen epochs {rows[0]['epoch']}-{rows[-1]['epoch']}: validation lesion Dice EMA "
        f"mean {e.mean():.4f} "
        f"(std {e.std():.4f}, max {e.max():.4f}, largest epoch-to-epoch jump {jumps(e):.3f}); live "
        "mean "
        f"{live.mean():.4f} (std {live.std():.4f}, max {live.max():.4f}, largest "
        f"jump {jumps(live):.3f})"
    )


def missed_kinds(codes: np.ndarray, truth: np.ndarray) -> str:
    """What the default rule's missed lesions (Dice < 0.1) look like: an empty mask, and whether
    every lesion pixel sits at the lowest output code (no threshold can bring those back)."""
    lesion = truth.reshape(len(truth), -1).any(1)
    empty = floor = elsewhere = 0
    lowest = int(codes.min())
    for c, t in zip(codes[lesion], truth[lesion]):
        p = c > 0
        if dice(p, t) >= 0.1:
            continue
        if not p.any():
            empty += 1
            floor += int(c[t].max() == lowest)
        else:
            elsewhere += 1
    return (
        f"{empty} empty masks ({floor} of them with every lesion pixel at the lowest "
        f"code, {lowest}), "
        f"{elsewhere} marked mostly elsewhere"
    )


def _cells(f: dict) -> str:
    return (
        f"{f['dice_all']:.4f} / {f['dice_lesion']:.4f} | {f['normal_marked']} of {f['n_normal']} | "
        f"{f['missed']} of {f['n_lesion']}"
    )


def main(runs: list[str]) -> None:
    torch.set_num_threads(1)
    arrays = load_busi(resolve_busi_root(None), (128, 128))
    for run in map(Path, runs):
        model, ckpt = load_checkpoint_model(run / "train" / "best.pt")
        full = split_codes(model, arrays, read_split(run / "train" / "split.json"))
        data = {name: (codes, truth, labels) for name, (codes, truth, labels, _) in full.items()}
        scale = full["val"][3]
        found = search_rules(*data["val"], scale, RuleSearch())
        chosen, grid = found.rule, found.grid
        no_margin = search_rules(*data["val"], scale, RuleSearch(level=0.0)).rule
        no_peak = search_rules(*data["val"], scale, RuleSearch(peak_logits=(None,), level=0.0)).rule
        print(
            f"## {run.name} (best.pt: epoch {ckpt['epoch']}, EMA {bool(ckpt.get('ema'))}; output "
            f"scale {scale:.5f})"
        )
        curve = ema_curve(run)
        if curve:
            print(curve)
        print(
            "| rule | val Dice (all / lesion) | val normals marked | val missed | "
            "test Dice (all / lesion) | test normals marked | test missed |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for st in found.steps:
            print(
                f"* step to the best {st.stage} rule, {st.candidate.describe()}: validation "
                "all-image Dice "
                f"{st.gain:+.4f}, bootstrap P(gain > "
                f"0) {st.p_gain:.3f}: {'taken' if st.taken else 'not taken'}"
            )
        shown = [DEFAULT_RULE, chosen, no_margin, no_peak] + [
            r for r, _ in sorted(grid, key=lambda g: -g[1]["dice_all"])[:4]
        ]
        seen = set()
        for r in shown:
            if r in seen:
                continue
            seen.add(r)
            logits = ([f"logit > {r.logit_threshold(scale):.2f}"] if r.min_code else []) + (
                [f"peak logit > {r.peak_logit(scale):.2f}"] if r.min_peak is not None else []
            )
            name = r.describe() + (f" ({', '.join(logits)})" if logits else "")
            mark = (
                " **(chosen on val)**"
                if r == chosen
                else " (default)"
                if r == DEFAULT_RULE
                else " (best on val without the margin)"
                if r == no_margin
                else " (best on val without a peak rule)"
                if r == no_peak
                else ""
            )
            v, t = (rule_figures(r.apply(c), tr, lb) for c, tr, lb in (data["val"], data["test"]))
            print(f"| {name}{mark} | {_cells(v)} | {_cells(t)} |")
        for name, (c, tr, _) in data.items():
            print(f"* {name} missed lesions under the default rule: {missed_kinds(c, tr)}")
        print()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
