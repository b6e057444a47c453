"""The two failure modes of a run's masks, and post-processing rules for them, chosen on the
validation split only, then reported on test:

* false lesions on normal scans: the share of normal images with any marked pixel;
* missed lesions: lesion images whose Dice is below 0.1.

Rules tried (all of them computable on the board's CPU from the accelerator's output codes):
``min_area A`` (a mask with fewer than A pixels is cleared: an image-level lesion-presence rule)
and a logit threshold (mask = logit > t instead of > 0). The rule kept is the one with the best
validation all-image Dice (the lesion Dice, normals scoring 1 when left empty). Also prints the
EMA-versus-live validation curve statistics of the run's log when it has an EMA.

Usage: .venv/bin/python bench/postprocess.py RUN [RUN ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from qdev.device.masks import dice
from qdev.device.preprocess import to_unit_float
from qdev.training.checkpoint import load_checkpoint_model
from qdev.training.data import load_busi, read_split, resolve_busi_root

AREAS = (0, 10, 25, 50, 100, 150, 200, 300)
THRESHOLDS = (0.0, 0.5, 1.0, 2.0)


def _logits(model, x: np.ndarray) -> np.ndarray:  # noqa: ANN001
    t = torch.from_numpy(to_unit_float(x)).unsqueeze(1)
    with torch.no_grad():
        return torch.cat([model(t[i : i + 32]) for i in range(0, len(t), 32)])[:, 0].numpy()


def figures(pred: np.ndarray, truth: np.ndarray, labels: np.ndarray) -> dict:
    lesion = truth.reshape(len(truth), -1).any(1)
    d = np.array([dice(p, t) for p, t in zip(pred, truth)])
    normal = labels == 2
    return {"dice_all": float(d.mean()), "dice_lesion": float(d[lesion].mean()),
            "normal_marked": float(pred[normal].reshape(normal.sum(), -1).any(1).mean()) if normal.any() else None,
            "n_normal": int(normal.sum()), "missed": int((d[lesion] < 0.1).sum()), "n_lesion": int(lesion.sum())}


def apply_rule(logits: np.ndarray, t: float, area: int) -> np.ndarray:
    pred = logits > t
    keep = pred.reshape(len(pred), -1).sum(1) >= max(area, 1)
    return pred & keep[:, None, None]


def ema_curve(run: Path) -> str | None:
    log = [json.loads(x) for x in (run / "train" / "log.jsonl").read_text().splitlines()]
    rows = [r for r in log if "val_live" in r and r.get("bits_frozen", True)]
    if not rows:
        return None
    e = np.array([r["val"]["dice_lesion"] for r in rows])
    live = np.array([r["val_live"]["dice_lesion"] for r in rows])
    jumps = lambda a: float(np.abs(np.diff(a)).max()) if len(a) > 1 else 0.0  # noqa: E731
    return (f"frozen epochs {rows[0]['epoch']}-{rows[-1]['epoch']}: validation lesion Dice EMA mean {e.mean():.4f} "
            f"(std {e.std():.4f}, max {e.max():.4f}, largest epoch-to-epoch jump {jumps(e):.3f}); live mean "
            f"{live.mean():.4f} (std {live.std():.4f}, max {live.max():.4f}, largest jump {jumps(live):.3f})")


def main(runs: list[str]) -> None:
    torch.set_num_threads(1)
    arrays = load_busi(resolve_busi_root(None), (128, 128))
    for run in map(Path, runs):
        model, ckpt = load_checkpoint_model(run / "train" / "best.pt")
        split = read_split(run / "train" / "split.json")
        data = {}
        for name in ("val", "test"):
            idx = split.indices(arrays, name)
            data[name] = (_logits(model, arrays.images[idx]), arrays.masks[idx] > 0, arrays.labels[idx])
        print(f"## {run.name} (best.pt: epoch {ckpt['epoch']}, EMA {bool(ckpt.get('ema'))})")
        curve = ema_curve(run)
        if curve:
            print(curve)
        print("| rule | val Dice (all) | val Dice (lesion) | val normals marked | val missed | "
              "test Dice (all) | test Dice (lesion) | test normals marked | test missed |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        results = []
        for t in THRESHOLDS:
            for a in AREAS:
                f = {k: figures(apply_rule(lg, t, a), tr, lb) for k, (lg, tr, lb) in data.items()}
                results.append(((t, a), f))
        best = max(results, key=lambda r: r[1]["val"]["dice_all"])
        for (t, a), f in results:
            if (t, a) == (0.0, 0) or (t, a) == best[0] or (t == 0.0) or (a == 0):
                v, s = f["val"], f["test"]
                mark = " **(chosen on val)**" if (t, a) == best[0] else ""
                print(f"| logit > {t:g}, min area {a}{mark} | {v['dice_all']:.4f} | {v['dice_lesion']:.4f} | "
                      f"{v['normal_marked']:.0%} of {v['n_normal']} | {v['missed']} of {v['n_lesion']} | "
                      f"{s['dice_all']:.4f} | {s['dice_lesion']:.4f} | {s['normal_marked']:.0%} of {s['n_normal']} | "
                      f"{s['missed']} of {s['n_lesion']} |")
        print()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
