"""Device benchmarks, each measured side by side in one run:

1. software accelerator frames/s on one core beside onnxruntime (single thread) on the same
   network's QCDQ export;
2. the serve loop's throughput (pipelined ECHO messages of one 128x128 frame, 16 KiB, through
   ``qdev-device serve``) over TCP loopback and over a pty pair, as a ratio of the raw link's
   throughput (the same payloads echoed by a bare process over the same kind of link).

Usage: bench/device.sh (= .venv/bin/python bench/device_bench.py) [--bundle bitstreams/KV260/quantunet-w8]
       [--qonnx models/quantunet-w8/export/model.qonnx.onnx] [--seconds 10] [--skip-accel] [--skip-link]

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


def link_bench(payload: int, tcp_count: int, pty_count: int, window: int, uart_count: int = 24) -> list[tuple]:
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
        p = subprocess.Popen([sys.executable, "-c", RAW_ECHO_TCP], stdout=subprocess.PIPE, text=True)
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
    for rate, count, name in ((None, pty_count, "pty pair (os.openpty + relay)"),
                              (92160.0, uart_count, "pty pair at 921600 baud")):
        pty = PtyPair(rate)
        p = subprocess.Popen([sys.executable, "-c", RAW_ECHO_SERIAL, pty.dev_path], stdout=subprocess.PIPE, text=True)
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
    args = ap.parse_args()
    if not args.skip_link:
        rows = link_bench(16384, 3000, 600, args.window)
        print(f"serve-loop throughput: pipelined ECHO of 16 KiB payloads, {args.window} in flight, round trip")
        print("| link | raw echo MB/s | qdev serve loop MB/s | ratio | protocol overhead |")
        print("|---|---:|---:|---:|---:|")
        for name, raw, proto in rows:
            print(f"| {name} | {raw / 1e6:.3f} | {proto / 1e6:.3f} | {proto / raw:.2f} | {max(0.0, 1 - proto / raw) * 100:.1f}% |")
    if args.skip_accel:
        return
    from qdev.core.intmodel import IntModel
    from qdev.core.software import THRESHOLD_METHODS, SoftwareExecutor

    b = Path(args.bundle)
    px = np.load(b / "golden_pixels.npy")
    codes = np.load(b / "golden_codes.npy")
    # every threshold method of the executor, on the same frame, in alternating slices
    model = IntModel.load(b / "intmodel.npz")
    exs = {m: SoftwareExecutor(model, thresholds=m) for m in THRESHOLD_METHODS}
    rates = interleaved_rates({m: (lambda e=e: e.run(px[:1])) for m, e in exs.items()}, args.seconds)
    sw_rows = [(m, rates[m], np.array_equal(e.run(px), codes)) for m, e in exs.items()]
    sw = sw_rows[0][1]

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
    scale = float(model.output_scale)
    ort_codes = np.concatenate([np.round(sess.run(None, {iname: x[i : i + 1]})[0] / scale) for i in range(len(x))])
    ort_exact = np.array_equal(ort_codes.transpose(0, 2, 3, 1).astype(np.int64), codes.astype(np.int64))
    ort_rate = rate(lambda: sess.run(None, {iname: x[:1]}), args.seconds)
    print(f"frames: {px.shape[1]}x{px.shape[2]}, batch 1, one thread each, {args.seconds:.0f} s per measurement "
          f"(the software methods in {SLICES} alternating slices)")
    print("| executor | frames/s | bit-exact vs bundle golden |")
    print("|---|---:|---|")
    for method, fps, exact in sw_rows:
        print(f"| qdev software accelerator (numpy, float32 BLAS), thresholds: {method} | {fps:.1f} | {exact} |")
    print(f"| onnxruntime {ort.__version__} QCDQ, ORT_DISABLE_ALL | {ort_rate:.1f} | {ort_exact} |")
    print(f"ratio software ({sw_rows[0][0]}) / onnxruntime: {sw / ort_rate:.2f}")
    for method, fps, _ in sw_rows[1:]:
        print(f"ratio thresholds {sw_rows[0][0]} / {method}: {sw / fps:.2f}")


if __name__ == "__main__":
    main()
