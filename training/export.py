"""`qdev export runs/NAME`: Brevitas -> QONNX, cleaned, verified on a golden batch.

Verification: qonnx's ``execute_onnx`` runs the QONNX graph on each golden image and its output
is compared with the PyTorch model's. The output is an 8-bit quantized logit, so both sides are
divided by the output scale and the integer codes must be *equal*; the float difference is
reported too (expected ~1e-6: float32 op order differs between onnx execution and torch).
The golden batch is written once, in the layout the hardware takes (:mod:`qdev.core.golden`:
``golden_pixels.npy`` uint8 frames, ``golden_codes.npy`` int16 NHWC codes); every later stage
reads it as is.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from qdev.core.errors import QdevError
from qdev.core.golden import GoldenBatch, save_golden
from qdev.core.preprocess import to_unit_float
from qdev.training.postprocess import logit_codes
from qdev.training.qonnx_exec import qonnx_forward
from qdev.training.runs import RunFolder, atomic_write_text
from qdev.training.stages import StageRecord
from qdev.training.checkpoint import checkpoint_path, load_checkpoint_model

__all__ = ["export_run", "golden_batch"]

log = logging.getLogger(__name__)


def golden_batch(
    run: RunFolder, size: int, n: int = 4, data: str | None = None
) -> tuple[np.ndarray, str]:
    """``n`` test images (uint8 [n, H, W], the model's input pixels) from the run's data, else the
    phantom."""
    try:
        from qdev.training.data import open_run_data, read_split

        st = run.stage("train")
        arrays = open_run_data(st["config"], data, (size, size))
        split = read_split(run.path / "train" / "split.json")
        idx = split.indices(arrays, "test")
        # lesion images first (they exercise the output), then the rest, deterministic
        has = arrays.masks[idx].reshape(len(idx), -1).any(1)
        order = np.concatenate([idx[has], idx[~has]])[:n]
        imgs = arrays.images[order]
        source = "test split: " + ", ".join(arrays.ids[i] for i in order)
    except QdevError as exc:
        from qdev.core.probe.phantom import phantom_image

        log.warning("golden batch from the phantom (%s)", exc)
        imgs = np.stack([phantom_image(1000 + i, "mixed", size, size)[0] for i in range(n)])
        source = "phantom seeds 1000.."
    return np.ascontiguousarray(imgs, dtype=np.uint8), source


def _write_qonnx(model: torch.nn.Module, x1: np.ndarray, raw: Path, onnx_path: Path) -> None:
    """Brevitas' QONNX export of ``model`` (traced on ``x1``) to ``raw``, cleaned up by QONNX and
    saved as ``onnx_path``."""
    import contextlib
    import io

    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    chatter = io.StringIO()  # torch.onnx prints its progress to stdout: keep --json output clean
    with torch.no_grad(), contextlib.redirect_stdout(chatter):
        export_qonnx(model, torch.from_numpy(x1), export_path=str(raw))
    log.debug("torch.onnx: %s", chatter.getvalue())
    cleanup_model(ModelWrapper(str(raw))).save(str(onnx_path))
    raw.unlink()


def export_run(
    run_dir: Path, data: str | None = None, n_golden: int = 4, checkpoint: str = "best"
) -> dict:
    """Export ``train/<checkpoint>.pt`` (best or last) to ``export/model.qonnx.onnx`` and verify
    it."""
    run = RunFolder.existing(run_dir)
    ckpt_rel = checkpoint_path(checkpoint)  # best or last
    rec = StageRecord(
        run, "export", {"n_golden": n_golden, "checkpoint": checkpoint}, checkpoint=checkpoint
    )
    model, ckpt = load_checkpoint_model(rec.input(ckpt_rel))
    if ckpt["model_config"]["kind"] != "quant":
        raise QdevError(
            f"{run_dir}: a float model cannot be exported for FINN; train with --model quant"
        )
    size = int(ckpt["size"])
    edir = run.path / "export"
    edir.mkdir(parents=True, exist_ok=True)
    rec.begin()
    pixels, source = golden_batch(run, size, n_golden, data)
    x = to_unit_float(pixels)[:, None]  # what the float network sees (exact k/255)
    onnx_path = edir / "model.qonnx.onnx"
    _write_qonnx(model, x[:1], edir / "model.brevitas.onnx", onnx_path)
    with torch.no_grad():
        y_torch = model(torch.from_numpy(x)).numpy()
    y_onnx = qonnx_forward(onnx_path, x)
    scale = float(model.out.act_quant.scale())
    codes_t, codes_o = logit_codes(y_torch, scale), logit_codes(y_onnx, scale)
    equal = bool(np.array_equal(codes_t, codes_o))
    golden = GoldenBatch(
        pixels, np.ascontiguousarray(codes_t.transpose(0, 2, 3, 1)).astype(np.int16)
    )
    save_golden(edir, golden)  # the layout the hardware takes, read as is from here on
    report = {
        "checkpoint": checkpoint,
        "checkpoint_epoch": ckpt["epoch"],
        "golden_source": source,
        "n_golden": int(len(x)),
        "input_shape": list(x.shape[1:]),
        "output_scale": scale,
        "integer_outputs_equal": equal,
        "codes_differing": int((codes_t != codes_o).sum()),
        "max_abs_float_diff": float(np.abs(y_torch - y_onnx).max()),
        "float_tolerance_note": "float outputs differ only by float32 operation order; integer "
        "codes must be equal",
        "mask_pixels": int((codes_t > 0).sum()),
        "bits": ckpt.get("bits"),
        "node_counts": _op_counts(onnx_path),
    }
    atomic_write_text(edir / "verify.json", json.dumps(report, indent=1) + "\n")
    rec.finish(status="done" if equal else "failed")
    if not equal:
        raise QdevError(
            f"{onnx_path}: QONNX execution differs from PyTorch in {report['codes_differing']} "
            "output codes"
        )
    return report


def _op_counts(path: Path) -> dict[str, int]:
    import onnx

    counts: dict[str, int] = {}
    for n in onnx.load(str(path)).graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts
