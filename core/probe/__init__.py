"""Probe frame sources shared by the host tool and the on-board runtime (numpy only)."""

from __future__ import annotations

from qdev.core.probe.phantom import Lesion, PhantomCine, PhantomConfig, PhantomFrame, phantom_image

__all__ = ["Lesion", "PhantomCine", "PhantomConfig", "PhantomFrame", "phantom_image"]
