"""Software accelerator throughput on one core, beside onnxruntime (single thread) on the same
network's QCDQ export, measured side by side in one run.

Usage: .venv/bin/python bench/device_software.py [--bundle bitstreams/KV260/quantunet-w8]
       [--qonnx models/quantunet-w8/export/model.qonnx.onnx] [--seconds 10]

Both run the shipped default model on its golden frames (batch 1). The software accelerator's
output codes must equal the bundle's golden codes; onnxruntime's (graph optimisation disabled,
which TOOLCHAIN-FACTS found necessary for bit-exactness) are compared and reported.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def rate(fn, seconds: float) -> float:  # noqa: ANN001
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", default="bitstreams/KV260/quantunet-w8")
    ap.add_argument("--qonnx", default="models/quantunet-w8/export/model.qonnx.onnx")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    from device.accel.intmodel import IntModel
    from device.accel.software import SoftwareExecutor

    b = Path(args.bundle)
    ex = SoftwareExecutor(IntModel.load(b / "intmodel.npz"))
    px = np.load(b / "golden_pixels.npy")
    codes = np.load(b / "golden_codes.npy")
    exact = np.array_equal(ex.run(px), codes)
    sw = rate(lambda: ex.run(px[:1]), args.seconds)

    import onnxruntime as ort
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.qonnx_to_qcdq import QuantToQCDQ

    m = ModelWrapper(args.qonnx).transform(QuantToQCDQ())
    tmp = Path(tempfile.mkdtemp()) / "qcdq.onnx"
    m.save(str(tmp))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(tmp), so, providers=["CPUExecutionProvider"])
    iname = sess.get_inputs()[0].name
    x = (px.astype(np.float32) / 255.0)[:, None]
    scale = float(IntModel.load(b / "intmodel.npz").output_scale)
    ort_codes = np.concatenate([np.round(sess.run(None, {iname: x[i : i + 1]})[0] / scale) for i in range(len(x))])
    ort_exact = np.array_equal(ort_codes.transpose(0, 2, 3, 1).astype(np.int64), codes.astype(np.int64))
    ort_rate = rate(lambda: sess.run(None, {iname: x[:1]}), args.seconds)
    print(f"frames: {px.shape[1]}x{px.shape[2]}, batch 1, one thread each, {args.seconds:.0f} s per measurement")
    print("| executor | frames/s | bit-exact vs bundle golden |")
    print("|---|---:|---|")
    print(f"| qdev software accelerator (numpy, float32 BLAS) | {sw:.1f} | {exact} |")
    print(f"| onnxruntime {ort.__version__} QCDQ, ORT_DISABLE_ALL | {ort_rate:.1f} | {ort_exact} |")
    print(f"ratio software / onnxruntime: {sw / ort_rate:.2f}")


if __name__ == "__main__":
    main()
