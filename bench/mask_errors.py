"""Where a run's test Dice goes: per-image Dice buckets on lesion images, and whether keeping only
the largest connected component of each mask (nnU-Net-style post-processing) helps, on the
validation and the test split of the run's own split file.

Usage: .venv/bin/python bench/mask_errors.py RUN [RUN ...]     (e.g. runs/bench-float-w16-s0)
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qdev.training.data import load_busi, read_split, resolve_busi_root  # noqa: E402
from qdev.device.masks import dice  # noqa: E402
from qdev.training.checkpoint import load_checkpoint_model  # noqa: E402


def largest_component(p: np.ndarray) -> np.ndarray:
    n, lab, stats, _ = cv2.connectedComponentsWithStats(p.astype(np.uint8), connectivity=8)
    if n <= 2:
        return p
    return lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def main(runs: list[str]) -> None:
    torch.set_num_threads(1)
    arrays = load_busi(resolve_busi_root(None), (128, 128))
    print("| run | split | lesion images | Dice (lesion) | largest component only | Dice < 0.1 | 0.1-0.5 | >= 0.5 (mean) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        model, _ = load_checkpoint_model(Path(run) / "train" / "best.pt")
        model.eval()
        for split in ("val", "test"):
            idx = read_split(Path(run) / "train" / "split.json").indices(arrays, split)
            x = torch.from_numpy(arrays.images[idx]).float().div_(255).unsqueeze(1)
            with torch.no_grad():
                logits = torch.cat([model(x[i : i + 32]) for i in range(0, len(x), 32)])
            pred, truth = (logits[:, 0] > 0).numpy(), arrays.masks[idx] > 0
            lesion = truth.reshape(len(truth), -1).any(1)
            d = np.array([dice(p, t) for p, t in zip(pred[lesion], truth[lesion])])
            lc = np.mean([dice(largest_component(p), t) for p, t in zip(pred[lesion], truth[lesion])])
            print(f"| {Path(run).name} | {split} | {lesion.sum()} | {d.mean():.4f} | {lc:.4f} | {(d < 0.1).sum()} | "
                  f"{((d >= 0.1) & (d < 0.5)).sum()} | {(d >= 0.5).sum()} ({d[d >= 0.5].mean():.3f}) |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
