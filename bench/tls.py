"""End-to-end frames/s over mutually authenticated TLS 1.3 against plain TCP, side by side:
one ``qdev-device serve`` (software backend) with a loopback TCP listener and a TLS listener,
the same frames streamed through each, alternating, ``--rounds`` times.

    .venv/bin/python bench/tls.py [--frames 120] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics as st
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from qdev import assets
from qdev.host.client import connect


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    bundle = assets.shipped_bundle("KV260")
    px = np.load(bundle / "golden_pixels.npy")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["QDEV_HOME"] = str(Path(tmp) / "host")
        from qdev.core.tls import make_identity, pair_host

        store = Path(tmp) / "store"
        run = [sys.executable, "-m", "qdev.device"]
        subprocess.run(
            [
                *run,
                "install",
                str(bundle),
                "--store",
                str(store),
                "--backend",
                "software",
                "--dev-key",
                *sum((["--trust", str(k)] for k in assets.dev_public_keys()), []),
            ],
            check=True,
            capture_output=True,
        )
        _, host_cert = make_identity(Path(tmp) / "host" / "tls", "host", "bench")
        pair_host(store, host_cert, "operator")
        dev_cert = subprocess.run(
            [*run, "identity", "--store", str(store)], check=True, capture_output=True, text=True
        ).stdout.strip()
        (Path(tmp) / "host" / "tls" / "devices").mkdir(parents=True)
        (Path(tmp) / "host" / "tls" / "devices" / "board.pem").write_text(
            Path(dev_cert).read_text()
        )
        proc = subprocess.Popen(
            [
                *run,
                "serve",
                "--store",
                str(store),
                "--backend",
                "software",
                "--dev-key",
                "--tcp",
                "127.0.0.1:0",
                "--tls",
                "127.0.0.1:0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        ports = {}
        for line in proc.stdout:
            for scheme in ("tcp", "tls"):
                m = re.search(rf"{scheme}://[\d.]+:\d+", line)
                if m:
                    ports[scheme] = m.group(0)
            if line.startswith("ready:"):
                break
        fps = {"tcp": [], "tls": []}
        try:
            for _ in range(a.rounds):
                for scheme in ("tcp", "tls"):
                    c = connect(ports[scheme], timeout=30.0)
                    t0 = time.perf_counter()
                    reps = list(c.stream(((i, px[i % len(px)]) for i in range(a.frames)), window=4))
                    secs = time.perf_counter() - t0
                    c.close()
                    assert all(r.error is None for r in reps)
                    fps[scheme].append(a.frames / secs)
        finally:
            proc.terminate()
            proc.wait(10)
    for scheme in ("tcp", "tls"):
        print(
            f"{scheme.upper():<4} frames/s: {', '.join(f'{v:.2f}' for v in fps[scheme])} "
            f"(median {st.median(fps[scheme]):.2f})"
        )
    print(f"TLS / TCP (medians): {st.median(fps['tls']) / st.median(fps['tcp']):.3f}")


if __name__ == "__main__":
    main()
