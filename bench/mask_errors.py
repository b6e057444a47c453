"""Where a run's test Dice goes: per-image Dice buckets on lesion images, and whether keeping only
the largest connected component of each mask (nnU-Net-style post-processing) or averaging the logits
of the scan and its mirror image (test-time flip, the accelerator run twice) helps, on the
validation and the test split of the run's own split file. A second table looks at the missed
lesions (Dice < 0.1): their true area against the found lesions' (is resolution what misses them?)
and whether the network drew nothing or drew a blob somewhere else. Given several runs, a third
counts the lesion images missed by at least k of them: the same hard scans each time, or each
run's own misses.

Usage: .venv/bin/python bench/mask_errors.py RUN [RUN ...]     (e.g. runs/bench-float-w16-s0)
       .venv/bin/python bench/mask_errors.py --gallery missed.png RUN ...
         (also draws the first run's missed validation lesions: the scan, the true outline in
          magenta, the network's mask in cyan)
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qdev.training.data import load_busi, read_split, resolve_busi_root  # noqa: E402
from qdev.training.data.dedup import find_duplicates  # noqa: E402
from qdev.core.masks import dice  # noqa: E402
from qdev.training.checkpoint import load_checkpoint_model  # noqa: E402


def largest_component(p: np.ndarray) -> np.ndarray:
    n, lab, stats, _ = cv2.connectedComponentsWithStats(p.astype(np.uint8), connectivity=8)
    if n <= 2:
        return p
    return lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def draw_missed(
    images: np.ndarray,
    pred: np.ndarray,
    truth: np.ndarray,
    d: np.ndarray,
    title: str,
    out: Path,
    limit: int = 12,
) -> None:
    """The missed lesions (Dice < 0.1) as a grid of overlays, written to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    idx = np.flatnonzero(d < 0.1)[:limit]
    cols = 4
    rows = max(1, -(-len(idx) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.8 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, idx):
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        ax.imshow(np.ma.masked_where(~pred[i], pred[i]), cmap=ListedColormap(["cyan"]), alpha=0.45)
        ax.contour(truth[i].astype(float), levels=[0.5], colors="magenta", linewidths=1.2)
        ax.set_title(f"Dice {d[i]:.2f}, {int(truth[i].sum())} px true", fontsize=8)
    if not len(idx):
        axes.flat[0].text(0.5, 0.5, "no missed lesion", ha="center", va="center")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"\nmissed lesions drawn: {out}")


def main(runs: list[str], gallery: Path | None = None) -> None:
    torch.set_num_threads(1)
    arrays = load_busi(resolve_busi_root(None), (128, 128))
    print(
        "| run | split | lesion images | Dice (lesion) | largest component only | flip-averaged "
        "(missed) | Dice < 0.1 | 0.1-0.5 | >= 0.5 (mean) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    anatomy = []
    missed_by: dict[str, dict[str, int]] = {"val": {}, "test": {}}  # image id -> runs that miss it
    group_of = np.array(find_duplicates(arrays).group_of)  # near-copies of one scan: one group
    for run in runs:
        model, _ = load_checkpoint_model(Path(run) / "train" / "best.pt")
        model.eval()
        for split in ("val", "test"):
            idx = read_split(Path(run) / "train" / "split.json").indices(arrays, split)
            x = torch.from_numpy(arrays.images[idx]).float().div_(255).unsqueeze(1)
            with torch.no_grad():
                logits = torch.cat([model(x[i : i + 32]) for i in range(0, len(x), 32)])
                mirrored = torch.cat(
                    [model(x[i : i + 32].flip(-1)) for i in range(0, len(x), 32)]
                ).flip(-1)
            pred, truth = (logits[:, 0] > 0).numpy(), arrays.masks[idx] > 0
            lesion = truth.reshape(len(truth), -1).any(1)
            d = np.array([dice(p, t) for p, t in zip(pred[lesion], truth[lesion])])
            lc = np.mean(
                [dice(largest_component(p), t) for p, t in zip(pred[lesion], truth[lesion])]
            )
            flipped = ((logits[:, 0] + mirrored[:, 0]) > 0).numpy()
            fd = np.array([dice(p, t) for p, t in zip(flipped[lesion], truth[lesion])])
            print(
                f"| {Path(run).name} | {split} | {lesion.sum()} | {d.mean():.4f} | {lc:.4f} | "
                f"{fd.mean():.4f} ({(fd < 0.1).sum()}) | {(d < 0.1).sum()} | "
                f"{((d >= 0.1) & (d < 0.5)).sum()} | {(d >= 0.5).sum()} "
                f"({d[d >= 0.5].mean():.3f}) |"
            )
            for i in np.asarray(idx)[lesion][d < 0.1]:
                missed_by[split][arrays.ids[i]] = missed_by[split].get(arrays.ids[i], 0) + 1
            anatomy.append(
                (
                    Path(run).name,
                    split,
                    *missed_anatomy(pred[lesion], truth[lesion], d),
                    len(set(group_of[idx][lesion][d < 0.1].tolist())),
                )
            )
            if gallery is not None and run == runs[0] and split == "val":
                draw_missed(
                    arrays.images[idx][lesion],
                    pred[lesion],
                    truth[lesion],
                    d,
                    f"{Path(run).name}: missed validation lesions (magenta: truth, cyan: network)",
                    gallery,
                )
    side = pred.shape[-1]
    print(
        f"\n| run | split | missed | true area of missed: median (range), px at {side}x{side} | "
        "true area of found: median | missed with nothing drawn | missed with a blob elsewhere | "
        "distinct scans among the missed (duplicate groups) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in anatomy:
        print("| " + " | ".join(map(str, row)) + " |")
    if len(runs) > 1:
        print_missed_overlap(missed_by, len(runs))


def print_missed_overlap(missed_by: dict[str, dict[str, int]], n_runs: int) -> None:
    """How many lesion images are missed by how many of the runs: the same hard images every time,
    or each run's own misses?"""
    print(
        f"\n| split | lesion images missed by at least k of the {n_runs} runs: k = "
        + " | ".join(str(k) for k in range(1, n_runs + 1))
        + " |"
    )
    print("|---|" + "---:|" * n_runs)
    for split, counts in missed_by.items():
        c = np.array(list(counts.values()) or [0])
        print(
            f"| {split} | "
            + " | ".join(str(int((c >= k).sum())) for k in range(1, n_runs + 1))
            + " |"
        )


def missed_anatomy(pred: np.ndarray, truth: np.ndarray, d: np.ndarray) -> tuple:
    """(missed count, their true area as 'median (min-max)', found lesions' median area, missed with
    an empty mask, missed with pixels drawn that (nearly) miss the lesion), over lesion images."""
    area = truth.reshape(len(truth), -1).sum(1)
    drawn = pred.reshape(len(pred), -1).sum(1)
    m = d < 0.1
    if not m.any():
        return 0, "-", f"{np.median(area):.0f}", 0, 0
    missed = f"{np.median(area[m]):.0f} ({area[m].min()}-{area[m].max()})"
    found = f"{np.median(area[~m]):.0f}" if (~m).any() else "-"
    return int(m.sum()), missed, found, int((drawn[m] == 0).sum()), int((drawn[m] > 0).sum())


if __name__ == "__main__":
    args = sys.argv[1:]
    out = None
    if args[:1] == ["--gallery"]:
        if len(args) < 2:
            sys.exit(__doc__)
        out, args = Path(args[1]), args[2:]
    if not args:
        sys.exit(__doc__)
    main(args, out)
