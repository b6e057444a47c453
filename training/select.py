"""Whether a new run replaces the shipped default: the best candidate by validation, against the
default by a paired bootstrap over the validation images, at a margin corrected for the number of
candidates it was picked from.

Picking the highest of ``k`` noisy validation scores and then testing that one at the 95% level
tests it as if it had been the only candidate; the best of several draws clears an uncorrected
margin far more often than 5% of the time when none is better. The level here is Bonferroni's:
the winner must clear ``1 - (1 - level) / k``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qdev.training.postprocess import paired_bootstrap

__all__ = ["Choice", "choose_default", "corrected_level"]


def corrected_level(level: float, candidates: int) -> float:
    """The bootstrap level the best of ``candidates`` runs must clear (Bonferroni)."""
    if candidates < 1:
        raise ValueError("at least one candidate is needed")
    return 1.0 - (1.0 - level) / candidates


@dataclass(frozen=True)
class Choice:
    """The best candidate by validation score, its mean per-image gain over the default and the
    bootstrap probability of a gain above 0, the level it had to clear, and the verdict."""

    best: str
    gain: float
    p_gain: float
    level: float
    candidates: int

    @property
    def replaces(self) -> bool:
        return self.gain > 0 and self.p_gain >= self.level


def choose_default(
    scores: dict[str, float],
    gains: dict[str, np.ndarray],
    level: float = 0.95,
    resamples: int = 2000,
) -> Choice:
    """``scores``: each candidate's validation score (higher is better); ``gains``: its per-image
    validation Dice minus the default's, on the same images in the same order."""
    if not scores or set(scores) != set(gains):
        raise ValueError("every candidate needs a score and per-image gains")
    best = max(scores, key=lambda k: scores[k])
    g = np.asarray(gains[best], dtype=np.float64)
    return Choice(
        best=best,
        gain=float(g.mean()),
        p_gain=paired_bootstrap(g, resamples),
        level=corrected_level(level, len(scores)),
        candidates=len(scores),
    )
