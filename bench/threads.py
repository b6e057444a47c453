"""BLAS threads under load: the software backend on the shipped model, pinned to 1 thread vs
left to OpenBLAS's default (one per core), side by side, while ``--load`` busy processes keep the
cores occupied (as a shared board CPU or a busy workstation would).

    .venv/bin/python bench/threads.py [--frames 40] [--load 3]

Each setting runs in its own fresh interpreter (OpenBLAS reads its thread count at start), one
after the other, both under the same load; the spinners are stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
from qdev import assets
from qdev.core.threads import pin_threads
n = sys.argv[1]
info = pin_threads(int(n)) if n != "default" else None
import numpy as np
from qdev.core.intmodel import IntModel
from qdev.core.software import SoftwareExecutor
ex = SoftwareExecutor(IntModel.load(assets.shipped_bundle("KV260") / "intmodel.npz"))
_, h, w, _ = ex.model.input["shape"]
px = np.random.default_rng(0).integers(0, 256, (1, h, w), dtype=np.uint8)
ex.run(px)
frames = int(sys.argv[2])
t0 = time.perf_counter()
for _ in range(frames):
    ex.run(px)
secs = time.perf_counter() - t0
from threadpoolctl import threadpool_info
print(json.dumps({"threads": n, "fps": frames / secs, "ms": 1e3 * secs / frames,
                  "pools": [p["num_threads"] for p in threadpool_info()]}))
"""


def _spin(stop) -> None:  # noqa: ANN001
    x = 0
    while not stop.is_set():
        x += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--load", type=int, default=3, help="busy processes beside the measurement")
    a = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    stop = mp.Event()
    spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(a.load)]
    for p in spinners:
        p.start()
    time.sleep(1.0)
    try:
        load1 = os.getloadavg()[0]
        rows = []
        for setting in ("1", "default"):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, setting, str(a.frames)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            rows.append(json.loads(out.stdout))
    finally:
        stop.set()
        for p in spinners:
            p.join(2)
    cpus = len(os.sched_getaffinity(0))
    print(
        f"software backend, shipped KV260 model, {a.frames} frames each, {a.load} busy processes "
        "on "
        f"{cpus} CPUs (load average {load1:.1f} at the start)"
    )
    for r in rows:
        label = "pinned to 1 thread" if r["threads"] == "1" else "OpenBLAS default"
        print(
            f"  {label:<20} BLAS pools {r['pools']}: {r['fps']:.2f} frames/s ({r['ms']:.1f} "
            "ms/frame)"
        )
    print(f"  pinned / default: {rows[0]['fps'] / rows[1]['fps']:.2f}x")


if __name__ == "__main__":
    main()
