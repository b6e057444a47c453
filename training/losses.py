"""The paper's loss: BCE + Dice (smooth 1e-5) + lambda * bit width (section 5.1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "DICE_MODES",
    "LossParts",
    "dice_loss",
    "image_dice_loss",
    "segmentation_loss",
    "total_loss",
    "weighted_bce",
]

SMOOTH = 1e-5
IMAGE_SMOOTH = 1.0  # per image, so a lesion of a few pixels still has a finite, useful gradient


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


def image_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, smooth: float = IMAGE_SMOOTH
) -> torch.Tensor:
    """1 - mean soft Dice of the batch's lesion images, each image on its own.

    The batch Dice is dominated by large lesions: missing a small one changes it a little. The
    metric, lesion Dice, is a mean over images, where a missed lesion costs a whole image; this
    loss matches it. Normal scans (empty truth) are left to the BCE: their Dice is 0 or 1 and its
    gradient is useless. A batch with no lesion image gives 0.
    """
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    lesion = t.amax(1) > 0
    if not bool(lesion.any()):
        return logits.sum() * 0.0
    p, t = p[lesion], t[lesion]
    dice = (2.0 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)
    return 1.0 - dice.mean()


DICE_MODES = {"batch": dice_loss, "image": image_dice_loss}


def weighted_bce(
    logits: torch.Tensor, target: torch.Tensor, normal_weight: float = 1.0
) -> torch.Tensor:
    """BCE on logits, each image's mean weighted by ``normal_weight`` where its truth is empty.

    With weight 1 this is the paper's BCE (the mean over every pixel of the batch). With weight
    w > 1, an image with no lesion (a normal scan) counts w times in the batch's weighted mean of
    per-image BCEs, so a false lesion on a normal scan costs w times more; the weights are
    normalised, so the loss keeps its scale.
    """
    if normal_weight == 1.0:
        return F.binary_cross_entropy_with_logits(logits, target)
    per_image = (
        F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)
    )
    empty = target.flatten(1).amax(1) <= 0
    w = torch.where(empty, torch.full_like(per_image, normal_weight), torch.ones_like(per_image))
    return (w * per_image).sum() / w.sum()


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, normal_weight: float = 1.0, dice: str = "batch"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(BCE, Dice loss). BCE on logits is the paper's BCE on sigmoid outputs, computed stably.

    ``dice``: ``batch`` (the paper's) or ``image`` (:func:`image_dice_loss`).
    """
    return weighted_bce(logits, target, normal_weight), DICE_MODES[dice](logits, target)


def total_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    bits: torch.Tensor | None,
    lam: float,
    normal_weight: float = 1.0,
    dice_mode: str = "batch",
) -> LossParts:
    """BCE + Dice + lam * bits (``bits`` None for the float baseline); see
    :func:`segmentation_loss`."""
    bce, dice = segmentation_loss(logits, target, normal_weight, dice_mode)
    b = bits if bits is not None else torch.zeros((), device=logits.device)
    return LossParts(bce + dice + lam * b, bce, dice, b)
