"""The paper's loss: BCE + Dice (smooth 1e-5) + lambda * bit width (section 5.1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["LossParts", "dice_loss", "segmentation_loss", "total_loss"]

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


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(BCE, Dice loss). BCE on logits is the paper's BCE on sigmoid outputs, computed stably."""
    return F.binary_cross_entropy_with_logits(logits, target), dice_loss(logits, target)


def total_loss(
    logits: torch.Tensor, target: torch.Tensor, bits: torch.Tensor | None, lam: float
) -> LossParts:
    """BCE + Dice + lam * bits (``bits`` None for the float baseline)."""
    bce, dice = segmentation_loss(logits, target)
    b = bits if bits is not None else torch.zeros((), device=logits.device)
    return LossParts(bce + dice + lam * b, bce, dice, b)
