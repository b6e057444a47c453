"""Keep only the largest connected component of each mask (8-connected): does it fix missed lesions?

Most BUSI images hold one lesion, and most missed test lesions of the shipped runs are "marked
mostly elsewhere" (bench/postprocess.py), so a classic single-lesion rule is worth measuring before
building it into the device's mask rule. Prints, per run and split, the figures of the network's
masks at code > 0 and code > 15, as they are and with only the largest component kept.
Reads the checkpoints; writes nothing.

Usage: .venv/bin/python bench/largest_component.py RUN [RUN ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from qdev.training.checkpoint import load_checkpoint_model
from qdev.training.data import load_busi, read_split, resolve_busi_root
from qdev.training.postprocess import model_codes, rule_figures


def largest_component(masks: np.ndarray) -> np.ndarray:
    """bool masks [N, H, W] -> the same with only each mask's largest 8-connected component."""
    out = np.zeros_like(masks)
    for i, m in enumerate(masks):
        n, cc, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
        if n > 1:
            out[i] = cc == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return out


def _fmt(f: dict) -> str:
    return (f"Dice all {f['dice_all']:.4f} / lesion {f['dice_lesion']:.4f}, normals {f['normal_marked']} of "
            f"{f['n_normal']}, missed {f['missed']} of {f['n_lesion']}")


def main(runs: list[str]) -> None:
    torch.set_num_threads(1)
    arrays = load_busi(resolve_busi_root(None), (128, 128))
    for run in map(Path, runs):
        model, _ = load_checkpoint_model(run / "train" / "best.pt")
        split = read_split(run / "train" / "split.json")
        for name in ("val", "test"):
            idx = split.indices(arrays, name)
            codes, _ = model_codes(model, arrays.images[idx])
            truth, labels = arrays.masks[idx] > 0, arrays.labels[idx]
            for thr in (0, 15):
                m = codes > thr
                print(f"{run.name} {name} code > {thr}: as is: {_fmt(rule_figures(m, truth, labels))}; "
                      f"largest component: {_fmt(rule_figures(largest_component(m), truth, labels))}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
