"""The link over a UART: a pty pair limited to 921600 baud 8N1 (92,160 bytes/s each way), with the
protocol-v2 codings negotiated (RLE masks, JPEG display frames, zlib input frames) and without
them (the uncoded forms, as protocol v1 sent), side by side in one run:

* ``device:`` mode: the device segments its own phantom probe; the host watches. Frames/s the
  host receives, bytes per LIVE push, and the rate the link alone would allow.
* host mode (lossless frames: WebP's prediction, else zlib, else raw): the host streams frames (the
  shipped bundle's BUSI golden frames, and a phantom
  cine) to the device and gets masks back. Frames/s, bytes per frame each way.

    .venv/bin/python bench/uart.py [--seconds 12] [--frames 60] [--quality 40]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qdev import assets  # noqa: E402
from qdev.core.link import open_link  # noqa: E402
from qdev.host.client import DeviceClient, live_frame  # noqa: E402
from qdev.host.local import LocalDevice  # noqa: E402
from tests.linkfaults import PtyPair  # noqa: E402

RATE = 92160.0
BUNDLE = assets.shipped_bundle("KV260")


def client(port: str, coded: bool) -> DeviceClient:
    c = DeviceClient(open_link(port), timeout=30.0)
    c.coding = coded
    c.handshake()
    return c


def _probe_frames(folder: Path, size: tuple[int, int], n: int) -> str:
    """``n`` frames of a phantom cine at ``size`` (w, h) as PNG files: a probe of the issue's
    size."""
    from PIL import Image

    from qdev.core.probe.phantom import phantom_image

    folder.mkdir(parents=True, exist_ok=True)
    distinct = [Image.fromarray(phantom_image(i, "mixed", size[1], size[0])[0]) for i in range(24)]
    for i in range(n):  # the device reads them faster than the link carries: enough for both runs
        distinct[i % len(distinct)].save(folder / f"f{i:05d}.png", compress_level=1)
    return str(folder / "*.png")


def device_mode(
    tmp: Path,
    seconds: float,
    quality: int,
    size: tuple[int, int] | None = None,
    backend: str = "software",
    display_max: int = 0,
) -> dict:
    out = {}
    pty = PtyPair(RATE)
    probe = (
        "phantom"
        if size is None
        else _probe_frames(tmp / "probe", size, int((seconds * 2 + 20) * 120))
    )
    try:
        with LocalDevice(
            tmp / "store-dev",
            serial=pty.dev_path,
            tcp=False,
            extra=["--probe", probe],
            backend=backend,
        ):
            c = client(pty.host_path, True)
            c.flash(BUNDLE, assets.dev_public_keys())
            c.close()
            for coded in (False, True):
                c = client(pty.host_path, coded)
                n, t0, first = 0, time.monotonic(), None
                for msg in c.watch(
                    jpeg_quality=quality if coded else None, display_max=display_max
                ):
                    live_frame(msg)  # decodes, CRC-checks the mask
                    if first is None:  # count from the first push on: bytes and time of n pushes
                        first, n0, b0 = msg.meta["frame_id"], time.monotonic(), c.ch.bytes_in
                        continue
                    n += 1
                    if time.monotonic() - t0 > seconds:
                        break
                el, per = (
                    time.monotonic() - n0,
                    (c.ch.bytes_in - b0) / max(n, 1),
                )  # whole frames, sealed
                c.close()
                out["coded" if coded else "uncoded"] = {
                    "fps": n / el,
                    "bytes": per,
                    "link_fps": RATE / per,
                }
    finally:
        pty.close()
    return out


def host_mode(tmp: Path, frames: int) -> dict:
    from qdev.core.codecs import FRAME_CODECS, encode_frame
    from qdev.core.probe.phantom import PhantomCine, PhantomConfig
    from qdev.core.preprocess import to_model_input

    gold = np.load(BUNDLE / "golden_pixels.npy").reshape(-1, 128, 128)
    cine = [to_model_input(f.image, 128, 128) for f in PhantomCine(PhantomConfig(seed=3), 16)]
    sources = {"BUSI golden frames": gold, "phantom cine": np.stack(cine)}
    out = {}
    pty = PtyPair(RATE)
    try:
        with LocalDevice(tmp / "store-host", serial=pty.dev_path, tcp=False):
            c = client(pty.host_path, True)
            c.flash(BUNDLE, assets.dev_public_keys())
            c.close()
            for name, px in sources.items():
                zr = np.mean([len(encode_frame(p, FRAME_CODECS)[1]) for p in px]) / px[0].size
                for coded in (False, True):
                    c = client(pty.host_path, coded)
                    t0 = time.monotonic()
                    reps = list(
                        c.stream(
                            ((i, px[i % len(px)]) for i in range(frames)), window=3, timeout=30.0
                        )
                    )
                    el = time.monotonic() - t0
                    c.close()
                    ok = sum(r.error is None for r in reps)
                    out[(name, coded)] = {"fps": ok / el, "ok": ok, "zlib_ratio": zr}
    finally:
        pty.close()
    return out


def lossless_sizes() -> dict[str, float]:
    """Mean coded size / raw of the BUSI golden frames for the lossless coders considered."""
    import io
    import zlib

    from PIL import Image

    from qdev.core.codecs import encode_frame

    gold = np.load(BUNDLE / "golden_pixels.npy").reshape(-1, 128, 128)

    def png(a: np.ndarray) -> int:
        b = io.BytesIO()
        Image.fromarray(a, "L").save(b, "PNG", optimize=True)
        return len(b.getvalue())

    coders = {
        "zlib -9": lambda a: len(zlib.compress(a.tobytes(), 9)),
        "PNG (optimize)": png,
        "WebP lossless (the link's)": lambda a: len(encode_frame(a, ["webp"])[1]),
    }
    try:
        import jpeg_ls  # pyjpegls, where installed (the host's DICOM codecs)

        coders["JPEG-LS"] = lambda a: len(jpeg_ls.encode(a))
    except ImportError:
        pass
    return {k: float(np.mean([f(a) for a in gold])) / gold[0].size for k, f in coders.items()}


def link_setup(tries: int = 5) -> dict:
    """Opening the link and the HELLO over the 921600-baud pty, ``tries`` times on one running
    device: seconds (median) and the bytes each way (TLS 1.3 over serial: handshake + HELLO)."""
    pty = PtyPair(RATE)
    times, sent, got = [], [], []
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            LocalDevice(Path(tmp) / "store", serial=pty.dev_path, tcp=False),
        ):
            client(pty.host_path, True).close()  # the device is up and serving
            for _ in range(tries):
                t0 = time.monotonic()
                c = client(pty.host_path, True)
                times.append(time.monotonic() - t0)
                carrier = getattr(c.ch.link, "carrier", None)
                sent.append(carrier.bytes_out if carrier else c.ch.bytes_out)
                got.append(carrier.bytes_in if carrier else c.ch.bytes_in)
                c.close()
    finally:
        pty.close()
    return {
        "s": float(np.median(times)),
        "max_s": max(times),
        "to_device": int(np.median(sent)),
        "to_host": int(np.median(got)),
        "tries": tries,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--quality", type=int, default=40)
    ap.add_argument(
        "--probe-size",
        default=None,
        metavar="WxH",
        help="device: mode with a file probe of this size (e.g. 640x480) instead of the phantom",
    )
    ap.add_argument(
        "--backend", default="software", help="the device's backend (auto: the fastest here)"
    )
    ap.add_argument("--device-only", action="store_true", help="skip the host-mode runs")
    ap.add_argument(
        "--display-size",
        type=int,
        default=0,
        help="device: mode's display frame: the probe's own, longer side at most this (0: the "
        "model "
        "input)",
    )
    a = ap.parse_args()
    from qdev.core.threads import pin_threads

    pin_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        size = tuple(int(v) for v in a.probe_size.split("x")) if a.probe_size else None
        d = device_mode(Path(tmp), a.seconds, a.quality, size, a.backend, a.display_size)
        h = {} if a.device_only else host_mode(Path(tmp), a.frames)
    hs = link_setup()
    print(
        "link set-up over the 921600-baud pty (open, security handshake, HELLO; median "
        f"of {hs['tries']}): "
        f"{hs['s']:.3f} s (max {hs['max_s']:.3f}), {hs['to_device']:,} bytes to the device, "
        f"{hs['to_host']:,} to the host\n"
    )
    what = f"{a.probe_size} file probe" if a.probe_size else "phantom probe"
    shown = (
        f"display {a.display_size} px longest side"
        if a.display_size
        else "display = the model input"
    )
    print(
        f"device: mode over a 921600-baud pty ({what} on the device, {a.backend} backend, JPEG "
        "quality "
        f"{a.quality}, {shown}):"
    )
    print(
        "| coding | frames/s received | bytes per push | link-bound frames/s "
        "|\n|---|---:|---:|---:|"
    )
    for k in ("uncoded", "coded"):
        r = d[k]
        print(f"| {k} | {r['fps']:.1f} | {r['bytes']:,.0f} | {r['link_fps']:.1f} |")
    if not h:
        return
    print("\nhost mode over the same pty (window 3):")
    print(
        "| source | coded size / raw (WebP lossless) | uncoded frames/s | coded frames/s | ratio "
        "|\n|---|---:|---:|---:|---:|"
    )
    for name in ("BUSI golden frames", "phantom cine"):
        u, c = h[(name, False)], h[(name, True)]
        print(
            f"| {name} | {c['zlib_ratio']:.2f} | {u['fps']:.2f} | {c['fps']:.2f} "
            f"| {c['fps'] / u['fps']:.2f} |"
        )
    print(
        "\nlossless coders on the BUSI golden frames (coded / raw): "
        + ", ".join(f"{k} {v:.2f}" for k, v in lossless_sizes().items())
    )


if __name__ == "__main__":
    main()
