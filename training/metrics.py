"""Segmentation metrics on binary masks (prediction = logit > 0), accumulated per image.

Call :meth:`SegMetrics.update` per batch, then :meth:`aggregate`; :meth:`reset` to reuse.
Per image: Dice and IoU with smooth 1e-5 (an empty prediction on an empty mask scores 1) and
pixel accuracy. Aggregates: mean over all images, over lesion images (non-empty ground truth),
and per class.
"""

from __future__ import annotations

import numpy as np
import torch

from qdev.core.masks import SMOOTH  # the Dice of qdev.core.masks, batched on tensors here
from qdev.training.data.busi import CLASSES

__all__ = ["SegMetrics"]


class SegMetrics:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._dice: list[np.ndarray] = []
        self._iou: list[np.ndarray] = []
        self._acc: list[np.ndarray] = []
        self._lesion: list[np.ndarray] = []
        self._label: list[np.ndarray] = []

    @torch.no_grad()
    def update(self, logits: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> None:
        self.update_masks(logits > 0, target, labels)

    @torch.no_grad()
    def update_masks(self, masks: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> None:
        """The same, for predicted masks made by another rule (core/maskrule.py)."""
        pred = (masks > 0).flatten(1).float()
        tgt = (target > 0.5).flatten(1).float()
        inter = (pred * tgt).sum(1)
        ps, ts = pred.sum(1), tgt.sum(1)
        self._dice.append(((2 * inter + SMOOTH) / (ps + ts + SMOOTH)).cpu().numpy())
        self._iou.append(((inter + SMOOTH) / (ps + ts - inter + SMOOTH)).cpu().numpy())
        self._acc.append((pred == tgt).float().mean(1).cpu().numpy())
        self._lesion.append((ts > 0).cpu().numpy())
        self._label.append(labels.cpu().numpy())

    def aggregate(self) -> dict:
        if not self._dice:
            return {}
        dice, iou, acc = (np.concatenate(x) for x in (self._dice, self._iou, self._acc))
        lesion, label = np.concatenate(self._lesion), np.concatenate(self._label)
        out = {
            "n_images": int(len(dice)),
            "n_lesion_images": int(lesion.sum()),
            "dice": float(dice.mean()),
            "dice_lesion": float(dice[lesion].mean()) if lesion.any() else float("nan"),
            "iou": float(iou.mean()),
            "iou_lesion": float(iou[lesion].mean()) if lesion.any() else float("nan"),
            "pixel_acc": float(acc.mean()),
            "per_class": {},
        }
        for k, c in enumerate(CLASSES):
            sel = label == k
            if sel.any():
                out["per_class"][c] = {
                    "n": int(sel.sum()),
                    "dice": float(dice[sel].mean()),
                    "iou": float(iou[sel].mean()),
                    "pixel_acc": float(acc[sel].mean()),
                }
        return out
