"""Execute a QONNX/FINN graph with qonnx's reference executor (numpy + qonnx; no torch).

Used by the export's verification and by every compile step that checks a graph against the
QONNX model, so the compile path never imports torch or the trainer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["qonnx_forward"]


def qonnx_forward(model, x: np.ndarray) -> np.ndarray:  # noqa: ANN001  (ModelWrapper | path)
    """Run ``model`` (a ModelWrapper or an ONNX path) image by image; returns [N, ...] outputs."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    m = model if isinstance(model, ModelWrapper) else ModelWrapper(str(Path(model)))
    iname, oname = m.graph.input[0].name, m.graph.output[0].name
    return np.concatenate([execute_onnx(m, {iname: x[i : i + 1]})[oname] for i in range(len(x))])
