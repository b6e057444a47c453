"""Does serving OpenIGTLink slow a session? Streams the same frames through a local device with
`--igtl` off and on (a reference-library C++ client connected and reading everything), in
alternating rounds, and prints each round's frames/s, the medians and their ratio (target >= 0.95).

Usage: .venv/bin/python bench/igtl.py [--frames 300] [--rounds 3] [--probe files]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO.parent))
sys.path.insert(0, str(REPO))  # tests.netutil


def _crc_figures() -> None:
    """The body CRC of a 640x480 frame: fastcrc (qdev's) against pyigtl's crcmod table."""
    import os
    import timeit

    from pyigtl.messages import CRC64

    from qdev.core.igtl import crc64

    body = os.urandom(640 * 480)
    assert crc64(body) == CRC64(body)
    fast = min(timeit.repeat(lambda: crc64(body), number=50, repeat=3)) / 50
    slow = min(timeit.repeat(lambda: CRC64(body), number=5, repeat=3)) / 5
    print(
        f"CRC-64 of a 640x480 frame: {fast * 1e6:.1f} us (fastcrc) vs {slow * 1e3:.2f} ms "
        "(pyigtl's "
        "crcmod)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--probe",
        default="files",
        help="files: unpaced 480x640 PNG frames made here (the session runs as fast as it can); "
        "or any --probe spec (a live one is paced and hides the cost)",
    )
    a = ap.parse_args()
    from qdev.core.probe.sources import open_probe
    from qdev.host.client import connect
    from qdev.host.local import LocalDevice, default_bundle, default_trusted
    from qdev.host.session import read_session
    from qdev.host.stream import StreamConfig, stream_to_session
    from tests.netutil import free_port

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        recv = tmp / "receive"
        subprocess.run(
            [
                "g++",
                "-O2",
                "-o",
                str(recv),
                str(REPO / "tests/host/igtl_cpp/receive.cxx"),
                "-I/usr/include/openigtlink",
                "-lOpenIGTLink",
            ],
            check=True,
        )
        if a.probe == "files":
            import numpy as np
            from PIL import Image

            (tmp / "frames").mkdir()
            rng = np.random.default_rng(0)
            for i in range(a.frames):
                Image.fromarray(rng.integers(0, 256, (480, 640), dtype=np.uint8)).save(
                    tmp / "frames" / f"f{i:04d}.png", compress_level=1
                )
            a.probe = str(tmp / "frames")
        fps: dict[str, list[float]] = {"off": [], "on": []}
        with LocalDevice(tmp / "store", backend="auto") as dev, connect(dev.port) as c:
            c.flash(default_bundle("KV260"), default_trusted())
            backend = c.info().get("backend")
            for r in range(a.rounds):
                for mode in ("off", "on"):
                    out = tmp / f"{mode}{r}"
                    port = free_port()
                    proc = None
                    if mode == "on":
                        proc = subprocess.Popen(
                            [str(recv), "127.0.0.1", str(port), str(a.frames), "quiet"],
                            stdout=subprocess.DEVNULL,
                        )
                    cfg = StreamConfig(
                        max_frames=a.frames,
                        out=out,
                        igtl=f"127.0.0.1:{port}" if mode == "on" else None,
                        igtl_wait=30.0,
                    )
                    stream_to_session(c, open_probe(a.probe), cfg)
                    if proc is not None:
                        proc.wait(60)
                    m, _ = read_session(out)
                    fps[mode].append(m["summary"]["fps"])
                    extra = ""
                    if mode == "on":
                        st = m["igtl"]
                        extra = (
                            f"  (sent {st['per_client'][0]['sent']}, "
                            f"skipped {st['frames_skipped']})"
                        )
                    print(
                        f"round {r + 1} igtl {mode:3s}: {m['summary']['fps']:7.1f} frames/s{extra}",
                        flush=True,
                    )
    off, on = statistics.median(fps["off"]), statistics.median(fps["on"])
    _crc_figures()
    print(f"\nbackend {backend}, {a.frames} frames x {a.rounds} rounds each, alternating")
    print(
        f"median frames/s: igtl off {off:.1f}, on {on:.1f}; on/off = {on / off:.3f} (target >= "
        "0.95)"
    )


if __name__ == "__main__":
    main()
