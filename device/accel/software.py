"""The ``software`` backend: a bundle's integer model on the board's CPU, bit-exact
(the executor itself is :mod:`qdev.core.software`, shared with the host's ``qdev bench``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qdev.core.intmodel import IntModel
from qdev.core.software import SoftwareExecutor
from qdev.device.accel.backend import Accelerator, Backend, register_backend

__all__ = ["SoftwareAccelerator"]


class SoftwareAccelerator(Accelerator):
    """The ``software`` backend: a bundle's integer model on the CPU, bit-exact."""

    name = "software"

    def __init__(self, bundle_dir: Path, manifest: dict) -> None:
        self._bind(manifest)
        self.executor = SoftwareExecutor(IntModel.load(Path(bundle_dir) / "intmodel.npz"))

    def run(self, pixels: np.ndarray) -> np.ndarray:
        return self.executor.run(pixels)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "executor": "numpy, integer-model plan",
            "exact": {"proven": True, "steps": self.executor.plan.describe()["kinds"]},
        }


def _probe(bundle_dir: Path, manifest: dict) -> str | None:
    if "intmodel.npz" not in manifest.get("files", {}):
        return "the bundle has no integer model (intmodel.npz)"
    return None


register_backend(Backend("software", 10, _probe, SoftwareAccelerator))
