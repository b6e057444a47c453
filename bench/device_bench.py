"""Device benchmarks, each measured side by side in one run:

1. every executor of the bundle (the onnx backend, the numpy executor with each threshold
   method, the numpy executor of an earlier git revision) beside onnxruntime on the same
   network's QCDQ export (optimisations off and on), one thread each, in alternating slices;
2. the serve loop's throughput (pipelined ECHO messages of one 128x128 frame, 16 KiB, through
   ``qdev-device serve``) over TCP loopback and over a pty pair, as a ratio of the raw link's
   throughput (the same payloads echoed by a bare process over the same kind of link).

Usage: bench/device.sh (= .venv/bin/python bench/device_bench.py) [--bundle
    bitstreams/KV260/quantunet-w8]
       [--qonnx models/quantunet-w8/export/model.qonnx.onnx] [--seconds 10] [--skip-accel]
       [--skip-link]

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


SLICES = 10  # alternating slices the software methods are timed in


def interleaved_rates(fns: dict, seconds: float, rounds: int = SLICES) -> dict:  # noqa: ANN001
    """frames/s of each callable, measured in ``rounds`` alternating slices of ``seconds / rounds``
    each, so that a slow spell of a shared machine falls on all of them alike."""
    for fn in fns.values():
        fn()  # warm-up
    n = dict.fromkeys(fns, 0)
    spent = dict.fromkeys(fns, 0.0)
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds / rounds:
                fn()
                n[k] += 1
            spent[k] += time.perf_counter() - t0
    return {k: n[k] / spent[k] for k in fns}


def rate(fn, seconds: float) -> float:  # noqa: ANN001
    """calls/s of one callable over ``seconds`` (after one warm-up call)."""
    return interleaved_rates({"": fn}, seconds, rounds=1)[""]


RAW_ECHO_TCP = """
import socket, sys
s = socket.create_server(("127.0.0.1", 0)); print(s.getsockname()[1], flush=True)
c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while (d := c.recv(1 << 20)):
    c.sendall(d)
"""
RAW_ECHO_SERIAL = """
import serial, sys
p = serial.serial_for_url(sys.argv[1], baudrate=921600, timeout=0.05); print("ready", flush=True)
while True:
    d = p.read(max(1, p.in_waiting))
    if d:
        p.write(d)
"""


def raw_echo(link, payload: int, count: int, window: int) -> float:  # noqa: ANN001
    """Bytes/s of payloads echoed by a bare process, with ``window`` payloads in flight."""
    blob = bytes(range(256)) * (payload // 256)
    t0 = time.perf_counter()
    got, sent = 0, 0
    total = payload * count
    while got < total:
        while sent < count and sent * payload - got < window * payload:
            link.write(blob)
            sent += 1
        got += len(link.read(1.0))
    return total / (time.perf_counter() - t0)


def link_bench(
    payload: int, tcp_count: int, pty_count: int, window: int, uart_count: int = 24
) -> list[tuple]:
    import subprocess
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from qdev.core.link import SerialLink, open_link
    from qdev.host.client import DeviceClient
    from qdev.host.local import LocalDevice
    from tests.linkfaults import PtyPair

    rows = []
    store = Path(tempfile.mkdtemp()) / "store"
    # TCP loopback: one frame per message, and 16 frames per message (per-message cost amortised)
    for size, count in ((payload, tcp_count), (16 * payload, max(tcp_count // 16, 50))):
        p = subprocess.Popen(
            [sys.executable, "-c", RAW_ECHO_TCP], stdout=subprocess.PIPE, text=True
        )
        port = int(p.stdout.readline())
        link = open_link(f"tcp://127.0.0.1:{port}")
        raw = raw_echo(link, size, count, window)
        link.close()
        p.kill()
        with LocalDevice(store) as dev:
            c = DeviceClient(open_link(dev.port))
            c.handshake()
            proto = c.echo_throughput(size, count, window)["bytes_per_s"]
            c.close()
        rows.append((f"TCP loopback, {size >> 10} KiB messages", raw, proto))
    # pty pairs: unlimited, and limited like a 921600-baud UART (8N1: 92160 bytes/s each way)
    for rate, count, name in (
        (None, pty_count, "pty pair (os.openpty + relay)"),
        (92160.0, uart_count, "pty pair at 921600 baud"),
    ):
        pty = PtyPair(rate)
        p = subprocess.Popen(
            [sys.executable, "-c", RAW_ECHO_SERIAL, pty.dev_path], stdout=subprocess.PIPE, text=True
        )
        p.stdout.readline()
        link = SerialLink(pty.host_path)
        raw = raw_echo(link, payload, count, window)
        link.close()
        p.kill()
        p.wait()
        with LocalDevice(store, serial=pty.dev_path, tcp=False):
            c = DeviceClient(SerialLink(pty.host_path), timeout=60)
            c.handshake(timeout=60)
            proto = c.echo_throughput(payload, count, window)["bytes_per_s"]
            c.close()
        pty.close()
        rows.append((f"{name}, {payload >> 10} KiB messages", raw, proto))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", default="bitstreams/KV260/quantunet-w8")
    ap.add_argument("--qonnx", default="models/quantunet-w8/export/model.qonnx.onnx")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--skip-accel", action="store_true")
    ap.add_argument("--skip-link", action="store_true")
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument(
        "--baseline",
        default="5d9cade",
        help="git revision whose numpy executor is timed beside today's (empty: none)",
    )
    args = ap.parse_args()
    if not args.skip_link:
        rows = link_bench(16384, 3000, 600, args.window)
        print(
            f"serve-loop throughput: pipelined ECHO of 16 KiB payloads, {args.window} in flight, "
            "round trip"
        )
        print("| link | raw echo MB/s | qdev serve loop MB/s | ratio | protocol overhead |")
        print("|---|---:|---:|---:|---:|")
        for name, raw, proto in rows:
            print(
                f"| {name} | {raw / 1e6:.3f} | {proto / 1e6:.3f} | {proto / raw:.2f} "
                f"| {max(0.0, 1 - proto / raw) * 100:.1f}% |"
            )
    if args.skip_accel:
        return
    accel_bench(Path(args.bundle), Path(args.qonnx), args.seconds, args.baseline)


def _baseline_executor(rev: str):  # noqa: ANN202
    """The numpy executor as it was at git revision ``rev`` (loaded from git, for the side-by-side
    ratio; it imported the integer model from qdev.core.intmodel and its own helpers)."""
    import importlib.util
    import subprocess
    import sys

    src = subprocess.run(
        ["git", "show", f"{rev}:core/software.py"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout
    path = Path(tempfile.mkdtemp()) / "software_baseline.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("qdev_software_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.SoftwareExecutor


def accel_bench(b: Path, qonnx: Path, seconds: float, baseline: str | None) -> None:
    """Every executor of the same bundle, and onnxruntime's QCDQ model of the same network,
    timed in alternating slices in this one process (one thread each)."""
    import onnxruntime as ort
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.qonnx_to_qcdq import QuantToQCDQ

    from qdev.core.intmodel import IntModel, run_reference
    from qdev.core.onnx_lower import lower, make_session
    from qdev.core.software import THRESHOLD_METHODS, SoftwareExecutor

    px = np.load(b / "golden_pixels.npy")
    codes = np.load(b / "golden_codes.npy")
    model = IntModel.load(b / "intmodel.npz")
    one = px[:1]
    runs: dict = {}
    exact: dict = {}
    t0 = time.perf_counter()
    graph, info = lower(model)
    lower_s = time.perf_counter() - t0
    sess = make_session(graph, 1)
    runs["onnx backend (lowered integer model, onnxruntime)"] = lambda: sess.run(
        None, {"pixels": one[..., None]}
    )
    exact["onnx backend (lowered integer model, onnxruntime)"] = np.array_equal(
        sess.run(None, {"pixels": px[..., None]})[0], codes
    )
    for m in THRESHOLD_METHODS:
        ex = SoftwareExecutor(model, thresholds=m)
        key = f"numpy executor, thresholds {m}"
        runs[key] = lambda e=ex: e.run(one)
        exact[key] = np.array_equal(ex.run(px), codes)
    if baseline:
        old = _baseline_executor(baseline)(model)
        key = f"numpy executor as of {baseline} (before this plan)"
        runs[key] = lambda: old.run(one)
        exact[key] = np.array_equal(old.run(px), codes)
    q = ModelWrapper(str(qonnx)).transform(QuantToQCDQ())
    tmp = Path(tempfile.mkdtemp()) / "qcdq.onnx"
    q.save(str(tmp))
    x = (px.astype(np.float32) / 255.0)[:, None]
    scale = float(model.output_scale)
    for level, name in (
        (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "ORT_DISABLE_ALL"),
        (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "ORT_ENABLE_ALL"),
    ):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.graph_optimization_level = level
        qs = ort.InferenceSession(str(tmp), so, providers=["CPUExecutionProvider"])
        iname = qs.get_inputs()[0].name
        key = f"onnxruntime {ort.__version__} QCDQ model, {name}"
        runs[key] = lambda s=qs, n=iname: s.run(None, {n: x[:1]})
        got = np.concatenate(
            [np.round(qs.run(None, {iname: x[i : i + 1]})[0] / scale) for i in range(len(x))]
        )
        exact[key] = np.array_equal(
            got.transpose(0, 2, 3, 1).astype(np.int64), codes.astype(np.int64)
        )
    assert np.array_equal(run_reference(model, px), codes)
    qoff = f"onnxruntime {ort.__version__} QCDQ model, ORT_DISABLE_ALL"
    qall = f"onnxruntime {ort.__version__} QCDQ model, ORT_ENABLE_ALL"
    onnx_k = "onnx backend (lowered integer model, onnxruntime)"
    np_k = "numpy executor, thresholds affine"
    base_k = f"numpy executor as of {baseline} (before this plan)" if baseline else None
    # each comparison in its own group of alternating slices: an executor that keeps its work
    # arrays from frame to frame (as on the device, where one runs alone) is not charged for
    # the cache the others evicted between its slices
    groups = {
        "onnx backend vs onnxruntime's QCDQ model": [onnx_k, qoff, qall],
        "numpy executor vs its earlier revision": [np_k] + ([base_k] if base_k else []),
        "numpy threshold methods": [f"numpy executor, thresholds {m}" for m in THRESHOLD_METHODS],
    }
    print(
        f"frames: {px.shape[1]}x{px.shape[2]}, batch 1, one thread each; each group timed "
        f"in {SLICES} "
        f"alternating slices, {seconds:.0f} s per executor; lowering to ONNX took {lower_s:.2f} s "
        f"({info['nodes']} nodes)"
    )
    rates: dict = {}
    for title, keys in groups.items():
        r = interleaved_rates({k: runs[k] for k in keys}, seconds)
        rates[title] = r
        print(f"\n{title}\n| executor | frames/s | bit-exact vs bundle golden |\n|---|---:|---|")
        for k in keys:
            print(f"| {k} | {r[k]:.1f} | {exact[k]} |")
    g1, g2 = (
        rates["onnx backend vs onnxruntime's QCDQ model"],
        rates["numpy executor vs its earlier revision"],
    )
    print(
        f"\nratio onnx backend / onnxruntime QCDQ: {g1[onnx_k] / g1[qoff]:.2f} (ORT_DISABLE_ALL), "
        f"{g1[onnx_k] / g1[qall]:.2f} (ORT_ENABLE_ALL)"
    )
    if base_k:
        print(
            f"ratio numpy executor (affine) / numpy as of {baseline}: {g2[np_k] / g2[base_k]:.2f}"
        )


if __name__ == "__main__":
    main()
