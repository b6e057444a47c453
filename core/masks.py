"""Mask arithmetic shared by every stage: the Dice score (one definition for training's
validation, ``qdev evaluate``, the host's score of deployed masks, and the benches) and the
packing of masks for the link.

Dice with smoothing ``SMOOTH`` (1e-5, the paper's): ``(2|P&T| + s) / (|P| + |T| + s)``, so an
empty prediction of an empty truth scores 1 and any false lesion on an empty truth scores ~0.
:class:`qdev.training.metrics.SegMetrics` evaluates the same formula on torch tensors, batched.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SMOOTH", "dice"]

SMOOTH = 1e-5


def dice(pred: np.ndarray, truth: np.ndarray, smooth: float = SMOOTH) -> float:
    """Dice of two boolean masks of the same shape."""
    p, t = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if p.shape != t.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {t.shape}")
    return float(
        (2.0 * np.count_nonzero(p & t) + smooth)
        / (np.count_nonzero(p) + np.count_nonzero(t) + smooth)
    )
