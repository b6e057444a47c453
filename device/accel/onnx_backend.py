"""The ``onnx`` backend: a bundle's integer model lowered to an exact ONNX graph
(:mod:`qdev.core.onnx_lower`) and run by onnxruntime on the board's CPU, where onnxruntime
imports (aarch64 boards: KV260, ZCU104, Ultra96-V2; there is no armv7 wheel for the Pynq-Z2,
which keeps the numpy ``software`` backend). Chosen before ``software`` and after ``pynq``.

The lowering proves each step exact at load (accumulator bounds, every affine threshold checked
on every integer of its input's range) and the session runs with the fusions that would break
that turned off; the self-test then checks the bundle's golden codes as on every backend."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from qdev.core.intmodel import IntModel
from qdev.device.accel.backend import Accelerator, Backend, register_backend

__all__ = ["OnnxAccelerator"]


class OnnxAccelerator(Accelerator):
    """onnxruntime running the bundle's integer model, bit-exact."""

    name = "onnx"

    def __init__(self, bundle_dir: Path, manifest: dict) -> None:
        from qdev.core.onnx_lower import lower, make_session

        self._bind(manifest)
        self.model = IntModel.load(Path(bundle_dir) / "intmodel.npz")
        graph, self.lowering = lower(self.model)
        threads = int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
        self.session = make_session(graph, threads)
        self._in = self.session.get_inputs()[0].name

    def run(self, pixels: np.ndarray) -> np.ndarray:
        x = self.model.frames_nhwc(pixels).astype(np.uint8, copy=False)
        return self.session.run(None, {self._in: x})[0]

    def describe(self) -> dict:
        import onnxruntime as ort

        return {
            **super().describe(),
            "executor": f"onnxruntime {ort.__version__}, lowered integer model",
            "exact": {
                "proven": True,
                "steps": self.lowering["steps"],
                "disabled_optimizers": self.lowering["disabled_optimizers"],
            },
        }


def _probe(bundle_dir: Path, manifest: dict) -> str | None:
    if "intmodel.npz" not in manifest.get("files", {}):
        return "the bundle has no integer model (intmodel.npz)"
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"onnxruntime/onnx not installed ({exc.name})"
    return None


register_backend(Backend("onnx", 50, _probe, OnnxAccelerator))
