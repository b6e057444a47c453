"""Should a new run replace the shipped default? The choice is made on validation, as before
(all-image Dice under each run's own mask rule), but with a margin (``training/select.py``): the
best candidate replaces the default only where a paired bootstrap over the validation images
finds its gain above 0 in at least 1 - 0.05/k of resamples, k the number of runs it was picked
from (95% for one). Picking the highest of many noisy validation scores otherwise ships the
luckiest draw, not the better network (the winner's curse).

Also prints, for information and never used for the choice, each run's test figures, and how well
the validation score ranks the runs' test scores (Spearman's rho over the runs given): the
evidence for how much a validation difference between two runs means.

Usage: .venv/bin/python bench/select_default.py [--default models/quantunet-w8] RUN [RUN ...]
       .venv/bin/python bench/select_default.py --check RUN [OTHER ...]   (exit 0 only if RUN is
         the best by validation of the runs given, the pool it was picked from, and replaces the
         default at that pool's margin; bench/ship_default.sh asks this before it ships another
         network)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from qdev.training.checkpoint import load_checkpoint_model
from qdev.training.data import load_busi, read_split, resolve_busi_root
from qdev.training.mask_rule import run_mask_rule
from qdev.training.postprocess import model_codes, paired_bootstrap, per_image_dice, rule_figures
from qdev.training.runs import RunFolder
from qdev.training.select import choose_default

LEVEL, RESAMPLES = 0.95, 2000


def per_image(run: Path, arrays) -> dict:  # noqa: ANN001 - BusiArrays
    """Per-image Dice on val and test under the run's recorded rule, and its figures."""
    model, _ = load_checkpoint_model(run / "train" / "best.pt")
    rule, _ = run_mask_rule(RunFolder(run))
    split = read_split(run / "train" / "split.json")
    out = {"rule": rule.describe()}
    for name in ("val", "test"):
        idx = split.indices(arrays, name)
        masks = rule.apply(model_codes(model, arrays.images[idx])[0])
        truth = arrays.masks[idx] > 0
        d = per_image_dice(masks, truth)
        out[name] = {
            "ids": [arrays.ids[i] for i in idx],
            "d": d,
            **rule_figures(masks, truth, arrays.labels[idx], d),
        }
    return out


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--default", type=Path, default=Path("models/quantunet-w8"))
    ap.add_argument(
        "--check",
        action="store_true",
        help="exit 1 unless the first run given is the best and replaces the default",
    )
    a = ap.parse_args()
    torch.set_num_threads(1)
    arrays = load_busi(resolve_busi_root(None), (128, 128))
    base = per_image(a.default, arrays)
    rows = []
    for run in a.runs:
        f = per_image(run, arrays)
        if f["val"]["ids"] != base["val"]["ids"]:
            raise SystemExit(f"{run}: another validation split than the default's; not comparable")
        gain = f["val"]["d"] - base["val"]["d"]
        rows.append((run.name, f, float(gain.mean()), paired_bootstrap(gain, RESAMPLES)))
    rows.sort(key=lambda r: -r[1]["val"]["dice_all"])
    print(
        "| run | rule | val Dice all (lesion) | gain over default, P(gain > 0) | test Dice all "
        "(lesion) | "
        "test normals marked | test missed |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, f, g, p in [(f"{a.default.name} (default)", base, 0.0, float("nan")), *rows]:
        v, t = f["val"], f["test"]
        print(
            f"| {name} | {f['rule']} | {v['dice_all']:.4f} ({v['dice_lesion']:.4f}) "
            f"| {g:+.4f}, {p:.3f} | "
            f"{t['dice_all']:.4f} ({t['dice_lesion']:.4f}) | {t['normal_marked']}/{t['n_normal']} "
            "| "
            f"{t['missed']}/{t['n_lesion']} |"
        )
    everyone = [base, *(r[1] for r in rows)]
    for key in (
        ("dice_all", "dice_lesion") if len(everyone) >= 4 else ()
    ):  # a rank over fewer says nothing
        rho = spearman([f["val"][key] for f in everyone], [f["test"][key] for f in everyone])
        print(
            f"\nSpearman rho, validation against test {key} over the {len(everyone)} "
            f"runs: {rho:+.2f}"
        )
    c = choose_default(
        {r[0]: r[1]["val"]["dice_all"] for r in rows},
        {r[0]: r[1]["val"]["d"] - base["val"]["d"] for r in rows},
        LEVEL,
        RESAMPLES,
    )
    verdict = "replaces the default" if c.replaces else "does not replace the default"
    print(
        f"\nbest by validation: {c.best}, all-image Dice {c.gain:+.4f} over the default, bootstrap "
        f"P(gain > 0) {c.p_gain:.3f} (margin {c.level:.3f}: {LEVEL} corrected for {c.candidates} "
        f"candidate{'s' if c.candidates > 1 else ''}): {verdict}"
    )
    if a.check and (c.best != a.runs[0].name or not c.replaces):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
