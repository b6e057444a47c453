"""End-to-end streaming benchmark of the default model, measured side by side in one run:

* the software backend's own frames/s (the same executor, in this process, one frame at a time);
* ``qdev stream`` end to end (probe file -> preprocessing -> link -> device runtime in its own
  process -> mask back -> per-frame log) over TCP loopback, and over a pty pair limited like a
  921600-baud UART, with round-trip percentiles;
* the raw link's echo throughput over the same kinds of link, to state the link-bound rate.

Usage: .venv/bin/python bench/stream.py [--frames 400] [--uart-frames 30] [--window 4]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _bench_device():  # noqa: ANN202 - bench/device_bench.py raw echo helpers
    spec = importlib.util.spec_from_file_location(
        "bench_device", REPO / "bench" / "device_bench.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _phantom_folder(folder: Path, n: int) -> Path:
    from PIL import Image

    from qdev.core.probe.phantom import PhantomCine, PhantomConfig

    folder.mkdir(parents=True)
    for fr in PhantomCine(PhantomConfig(height=256, width=256, seed=1), n):
        Image.fromarray(fr.image).save(folder / f"frame{fr.index:05d}.png")
    return folder


def _session(client, folder: Path, out: Path, window: int, frames: int, timeout: float) -> dict:  # noqa: ANN001
    from qdev.core.probe.sources import open_probe
    from qdev.host.report import summarise
    from qdev.host.session import SessionWriter
    from qdev.host.stream import StreamConfig, run_stream

    src = open_probe(str(folder))
    w = SessionWriter(out, {"source": src.describe(), "device": client.info()})
    summ = run_stream(client, src, StreamConfig(None, window, frames, timeout), w)
    w.close()
    s = summarise(out)
    s["wall_fps"] = summ.fps
    return s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--uart-frames", type=int, default=30)
    ap.add_argument("--window", type=int, default=4)
    args = ap.parse_args()
    from qdev.core.intmodel import IntModel
    from qdev.core.link import SerialLink, open_link
    from qdev.core.software import SoftwareExecutor
    from qdev.host.client import DeviceClient, connect
    from qdev.host.local import LocalDevice, default_bundle, default_trusted
    from tests.linkfaults import PtyPair

    bd = _bench_device()
    bundle = default_bundle("KV260")
    tmp = Path(tempfile.mkdtemp(prefix="qdev-bench-stream-"))
    folder = _phantom_folder(tmp / "frames", args.frames)
    from qdev.core.preprocess import to_model_input
    from qdev.core.probe.sources import open_probe

    px = [to_model_input(f.image, 128, 128) for f in open_probe(str(folder)).frames()]
    ex = SoftwareExecutor(IntModel.load(bundle / "intmodel.npz"))
    ex.run(px[0][None])
    t0 = time.perf_counter()
    for p in px:
        ex.run(p[None])
    backend_fps = len(px) / (time.perf_counter() - t0)
    rows = []
    # TCP loopback
    with LocalDevice(tmp / "store-tcp") as dev:
        c = connect(dev.port)
        c.flash(bundle, default_trusted())
        s = _session(c, folder, tmp / "s-tcp", args.window, args.frames, 30.0)
        c.close()
    import subprocess

    p = subprocess.Popen([sys.executable, "-c", bd.RAW_ECHO_TCP], stdout=subprocess.PIPE, text=True)
    link = open_link(f"tcp://127.0.0.1:{int(p.stdout.readline())}")
    raw = bd.raw_echo(link, 16384, 2000, args.window)
    link.close()
    p.kill()
    rows.append(("TCP loopback", s, raw))
    # pty limited to 921600 baud
    pty = PtyPair(92160.0)
    try:
        with LocalDevice(tmp / "store-uart", serial=pty.dev_path, tcp=False):
            c = DeviceClient(SerialLink(pty.host_path), timeout=120)
            c.handshake(timeout=60)
            t = time.perf_counter()
            c.flash(bundle, default_trusted())
            flash_s = time.perf_counter() - t
            s = _session(c, folder, tmp / "s-uart", args.window, args.uart_frames, 60.0)
            c.close()
        p = subprocess.Popen(
            [sys.executable, "-c", bd.RAW_ECHO_SERIAL, pty.dev_path],
            stdout=subprocess.PIPE,
            text=True,
        )
        p.stdout.readline()
        link = SerialLink(pty.host_path)
        raw = bd.raw_echo(link, 16384, 20, args.window)
        link.close()
        p.kill()
    finally:
        pty.close()
    rows.append((f"pty at 921600 baud (flash took {flash_s:.1f} s)", s, raw))
    print(
        f"default model {bundle.relative_to(REPO)}, 128x128 frames from 256x256 phantom PNGs, "
        f"window {args.window}"
    )
    print(f"software backend alone (this process, one thread): {backend_fps:.1f} frames/s")
    print(
        "device-only frames/s = 1000 / mean device ms of the same session (the backend inside the "
        "runtime)"
    )
    print(
        "| link | frames ok / lost | e2e frames/s | device-only frames/s | e2e / device-only | e2e "
        "/ backend alone "
        "| link-bound frames/s | RTT p50 ms | p90 | p99 | max | p99/p50 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, s, raw in rows:
        r, d = s["rtt_ms"], s["device_ms"]
        dev_fps = 1000.0 / d["mean"]
        bound = raw / 16384.0  # the raw link echoes this many 16 KiB frames per second each way
        print(
            f"| {name} | {s['frames']['ok']} / {s['frames']['lost'] + s['frames']['timeout']} "
            f"| {s['fps']:.1f} | "
            f"{dev_fps:.1f} | {s['fps'] / dev_fps:.2f} | {s['fps'] / backend_fps:.2f} "
            f"| {bound:.1f} "
            f"| {r['p50']:.1f} | "
            f"{r['p90']:.1f} | {r['p99']:.1f} | {r['max']:.1f} | {r['p99'] / r['p50']:.2f} |"
        )


if __name__ == "__main__":
    main()
