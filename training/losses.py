"""The paper's loss: BCE + Dice (smooth 1e-5) + lambda * bit width (section 5.1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["LossParts", "dice_loss", "segmentation_loss", "total_loss", "weighted_bce"]

SMOOTH = 1e-5


@dataclass
class LossParts:
    total: torch.Tensor
    bce: torch.Tensor
    dice: torch.Tensor
    bits: torch.Tensor  # the average width (before lambda); 0 for float models

    def detached(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "bce", "dice", "bits")}


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = SMOOTH) -> torch.Tensor:
    """1 - soft Dice over the whole batch (the paper's formula on sigmoid probabilities)."""
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    return 1.0 - (2.0 * inter + smooth) / (p.sum() + target.sum() + smooth)


def weighted_bce(logits: torch.Tensor, target: torch.Tensor, normal_weight: float = 1.0) -> torch.Tensor:
    """BCE on logits, each image's mean weighted by ``normal_weight`` where its truth is empty.

    With weight 1 this is the paper's BCE (the mean over every pixel of the batch). With weight
    w > 1, an image with no lesion (a normal scan) counts w times in the batch's weighted mean of
    per-image BCEs, so a false lesion on a normal scan costs w times more; the weights are
    normalised, so the loss keeps its scale.
    """
    if normal_weight == 1.0:
        return F.binary_cross_entropy_with_logits(logits, target)
    per_image = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)
    empty = target.flatten(1).amax(1) <= 0
    w = torch.where(empty, torch.full_like(per_image, normal_weight), torch.ones_like(per_image))
    return (w * per_image).sum() / w.sum()


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor,
                      normal_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(BCE, Dice loss). BCE on logits is the paper's BCE on sigmoid outputs, computed stably."""
    return weighted_bce(logits, target, normal_weight), dice_loss(logits, target)


def total_loss(
    logits: torch.Tensor, target: torch.Tensor, bits: torch.Tensor | None, lam: float,
    normal_weight: float = 1.0,
) -> LossParts:
    """BCE + Dice + lam * bits (``bits`` None for the float baseline); see :func:`weighted_bce`."""
    bce, dice = segmentation_loss(logits, target, normal_weight)
    b = bits if bits is not None else torch.zeros((), device=logits.device)
    return LossParts(bce + dice + lam * b, bce, dice, b)
