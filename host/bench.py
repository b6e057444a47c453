"""``qdev bench``: throughput/latency against a device (like FINN's ``throughput_test``) and
the same bundle on the host CPU as a reference."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from qdev.core.threads import DEFAULT_THREADS, pin_threads
from qdev.host.client import DeviceClient
from qdev.host.stats import percentiles

__all__ = ["bench_device", "bench_host_cpu"]


def _frames(h: int, w: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w), dtype=np.uint8) for _ in range(n)]


def bench_device(client: DeviceClient, frames: int, window: int) -> dict:
    info = client.info()
    io = info["io"]
    px = _frames(int(io["height"]), int(io["width"]), 8)
    rtt, dev = [], []
    lost = 0
    t0 = time.perf_counter()
    for rep in client.stream(((i, px[i % len(px)]) for i in range(frames)), window):
        if rep.error:
            lost += 1
            continue
        rtt.append((rep.t_received - rep.t_sent) * 1e3)
        dev.append(rep.meta["device_ms"])
    secs = time.perf_counter() - t0
    return {
        "backend": info.get("backend"),
        "threads": info.get("threads"),
        "frames": len(rtt),
        "lost": lost,
        "seconds": secs,
        "fps": len(rtt) / secs,
        "device_fps": 1e3 / float(np.mean(dev)) if dev else 0.0,
        "rtt_ms": percentiles(rtt),
    }


def bench_host_cpu(bundle: Path, frames: int, threads: int = DEFAULT_THREADS) -> dict:
    """The bundle's integer model on this CPU (the software executor), BLAS pinned to
    ``threads``."""
    from qdev.core.intmodel import IntModel
    from qdev.core.software import SoftwareExecutor

    pinned = pin_threads(threads)
    ex = SoftwareExecutor(IntModel.load(Path(bundle) / "intmodel.npz"))
    _, h, w, _ = ex.model.input["shape"]
    px = _frames(h, w, 8)
    ex.run(px[0][None])  # warm-up
    t0 = time.perf_counter()
    for i in range(frames):
        ex.run(px[i % len(px)][None])
    secs = time.perf_counter() - t0
    return {
        "frames": frames,
        "seconds": secs,
        "fps": frames / secs,
        "threads": pinned["threads"],
        "blas": pinned["pools"],
    }
