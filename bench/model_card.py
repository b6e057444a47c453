"""The README's table of the shipped model against earlier ones, from their run folders.

For each run: its figures on the validation and test splits under the mask rule it ships with
(``postprocess/rule.json``, as recorded: not searched again; code > 0 where it has none) and with
the network's own masks (code > 0), the two failure modes (normal scans with any marked pixel,
lesion images with Dice < 0.1), its average widths and its model bits against its float twin's
(from ``evaluate/metrics.json``). A column equal to one already shown (the same network's own masks
under two labels) is left out. Reads the checkpoints; writes nothing.

Usage: .venv/bin/python bench/model_card.py LABEL=RUN [LABEL=RUN ...]
  e.g. bench/model_card.py "default=models/quantunet-w8" "previous default=runs/prev-default"
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from qdev.core.maskrule import DEFAULT_RULE
from qdev.training.checkpoint import load_checkpoint_model
from qdev.training.data import load_busi, read_split, resolve_busi_root
from qdev.training.mask_rule import run_mask_rule
from qdev.training.postprocess import model_codes, rule_figures
from qdev.training.runs import RunFolder

ROWS = (
    "rule",
    "validation Dice, all images / lesion images",
    "test Dice, all images / lesion images",
    "normal test scans marked with a lesion",
    "lesion test images missed (Dice < 0.1)",
    "average bits, weights / activations",
    "model bits",
)


def card(run: Path, arrays) -> dict[str, list[str]]:  # noqa: ANN001 - BusiArrays
    """Two columns (as deployed, the network's own) of the rows in ``ROWS``."""
    model, _ = load_checkpoint_model(run / "train" / "best.pt")
    split = read_split(run / "train" / "split.json")
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    rules = {"as deployed": run_mask_rule(RunFolder(run))[0], "logit > 0": DEFAULT_RULE}
    figs: dict[str, dict[str, dict]] = {k: {} for k in rules}
    for name in ("val", "test"):
        idx = split.indices(arrays, name)
        codes, _ = model_codes(model, arrays.images[idx])
        for k, r in rules.items():
            figs[k][name] = rule_figures(r.apply(codes), arrays.masks[idx] > 0, arrays.labels[idx])
    b = metrics["bits"]
    bits = f"{b['avg_weight_bits']:.2f} / {b['avg_act_bits']:.2f}"
    size = f"{b['model_bits'] / 1e6:.2f} M ({metrics['compression_vs_float']:.2f}× fewer)"
    cols = {}
    for k, r in rules.items():
        v, t = figs[k]["val"], figs[k]["test"]
        cols[k] = [
            r.describe(),
            f"{v['dice_all']:.3f} / {v['dice_lesion']:.3f}",
            f"{t['dice_all']:.3f} / {t['dice_lesion']:.3f}",
            f"{t['normal_marked']} of {t['n_normal']} "
            f"({100 * t['normal_marked'] / t['n_normal']:.0f}%)",
            f"{t['missed']} of {t['n_lesion']}",
            bits,
            size,
        ]
    return cols


def main(args: list[str]) -> None:
    torch.set_num_threads(1)
    arrays = load_busi(resolve_busi_root(None), (128, 128))
    header, columns = ["| |"], []
    for arg in args:
        label, _, run = arg.partition("=")
        if not run:
            sys.exit(f"bench/model_card.py: {arg!r}: expected LABEL=RUN")
        for k, col in card(Path(run), arrays).items():
            if col in columns:  # the same network's own masks, already shown under another label
                continue
            header.append(f" {label}, {k} |")
            columns.append(col)
    print("".join(header))
    print("|---|" + "---:|" * len(columns))
    for i, row in enumerate(ROWS):
        print(f"| {row} | " + " | ".join(c[i] for c in columns) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
