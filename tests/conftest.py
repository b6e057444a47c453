"""Shared fixtures. Importable in both environments: no torch / training import at module level."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _seed_and_isolate(tmp_path_factory, monkeypatch):
    """Fixed seeds; a per-session cache dir so tests never touch ~/.cache."""
    random.seed(0)
    np.random.seed(0)
    cache = tmp_path_factory.getbasetemp() / "qdev-cache"
    monkeypatch.setenv("QDEV_CACHE", str(cache))
    # pairing (host identity, pinned devices) per test, never in ~/.qdev
    monkeypatch.setenv("QDEV_HOME", str(tmp_path_factory.mktemp("qdev-home")))
    yield


def busi_location() -> Path | None:
    env = os.environ.get("QDEV_BUSI")
    cands = [Path(env)] if env else []
    cands.append(REPO.parent / "shared" / "data" / "busi")
    for c in cands:
        if (c / "Dataset_BUSI_with_GT").is_dir() or (c / "benign").is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def busi_path() -> Path:
    loc = busi_location()
    if loc is None:
        pytest.skip("real BUSI copy absent (neither $QDEV_BUSI nor ../shared/data/busi)")
    return loc


@pytest.fixture(scope="session")
def phantom_busi(tmp_path_factory) -> Path:
    """A small BUSI-layout phantom dataset with planted near-duplicates (session-wide)."""
    from qdev.training.data.synth import write_phantom_busi

    return write_phantom_busi(tmp_path_factory.mktemp("phantom") / "busi", (18, 12, 6), (96, 120))
