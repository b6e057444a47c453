"""Summary statistics of per-frame figures, one definition for reports, benches and the CLI."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["percentiles"]


def percentiles(values: Iterable[float]) -> dict:
    """``{"n", "mean", "p50", "p90", "p99", "max"}`` of ``values``; ``{"n": 0}`` when empty (so a
    session or bench where no frame came back reports that, instead of failing)."""
    a = np.asarray([float(v) for v in values], dtype=float)
    if a.size == 0:
        return {"n": 0}
    return {
        "n": int(a.size),
        "mean": float(a.mean()),
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
    }
