"""How the mask-rule search itself fares, over many runs: each variant of the search is run on every
run's validation split (as `qdev postprocess` does), and the rule it picks is then scored on that
run's test split. Averaged over runs, this measures the search procedure rather than one network,
so a variant can be judged without choosing by one run's test figures.

Variants: the network's own masks (code > 0); the search as shipped (threshold and area, then a
peak step, each behind the 95% bootstrap margin); the search without its peak step; and the
search with no margin (the grid's best rule on validation).

Usage: .venv/bin/python bench/rule_search_variants.py RUN [RUN ...]
"""

from __future__ import annotations

import statistics as st
import sys
from pathlib import Path

import numpy as np
import torch

from qdev.core.maskrule import DEFAULT_RULE, MaskRule
from qdev.training.checkpoint import load_checkpoint_model
from qdev.training.data import load_busi, read_split, resolve_busi_root
from qdev.training.postprocess import RuleSearch, rule_figures, search_rules, split_codes

VARIANTS: dict[str, RuleSearch | None] = {
    "network's own (code > 0)": None,
    "search as shipped": RuleSearch(),
    "search without the peak step": RuleSearch(peak_logits=(None,)),
    "search without the margin": RuleSearch(level=0.0),
}


def run_rules(run: Path, arrays) -> dict[str, tuple[MaskRule, dict, dict]]:  # noqa: ANN001 - BusiArrays
    """variant -> (rule, validation figures, test figures) for one run."""
    model, _ = load_checkpoint_model(run / "train" / "best.pt")
    data = split_codes(model, arrays, read_split(run / "train" / "split.json"))
    out = {}
    for label, search in VARIANTS.items():
        rule = DEFAULT_RULE if search is None else search_rules(*data["val"], search).rule
        figs = [rule_figures(rule.apply(c), t, lab) for c, t, lab, _ in (data["val"], data["test"])]
        out[label] = (rule, *figs)
    return out


def _ms(xs: list[float]) -> str:
    return f"{st.mean(xs):.4f} ± {st.stdev(xs):.4f}" if len(xs) > 1 else f"{xs[0]:.4f}"


def main(runs: list[Path]) -> None:
    torch.set_num_threads(1)
    arrays = load_busi(resolve_busi_root(None), (128, 128))
    per_run = {r.name: run_rules(r, arrays) for r in runs}
    print(
        f"| variant ({len(runs)} runs) | val Dice all | test Dice all | test Dice lesion | "
        "test normals marked (all runs) | test lesions missed per run: mean (range) | runs with a "
        "peak rule |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label in VARIANTS:
        rows = [v[label] for v in per_run.values()]
        missed = [t["missed"] for _, _, t in rows]
        marked = sum(t["normal_marked"] for _, _, t in rows)
        n_normal = sum(t["n_normal"] for _, _, t in rows)
        print(
            f"| {label} | {_ms([v['dice_all'] for _, v, _ in rows])} "
            f"| {_ms([t['dice_all'] for _, _, t in rows])} | "
            f"{_ms([t['dice_lesion'] for _, _, t in rows])} | {marked} of {n_normal} "
            f"({100 * marked / n_normal:.0f}%) | "
            f"{np.mean(missed):.1f} ({min(missed)}-{max(missed)}) | "
            f"{sum(r.min_peak is not None for r, _, _ in rows)} |"
        )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main([Path(a) for a in sys.argv[1:]])
