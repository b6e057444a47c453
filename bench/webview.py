"""The browser live view, measured in a real headless Chromium (Debian's ``chromium``): frames
per second the page really displays (its own once-a-second reports to ``/viewer``), beside the
rate frames were published, for (1) the view alone, fed composed 640x480 overlays at a set rate,
and (2) a whole ``qdev stream`` of a phantom cine through a local device (software backend).
Also an MJPEG client (``/stream.mjpg``, read by Python) on the same publisher, side by side.

    .venv/bin/python bench/webview.py [--rate 25] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics as st
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def chromium(url: str, profile: Path) -> subprocess.Popen:
    exe = (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )
    if exe is None:
        sys.exit("bench/webview.py: needs chromium (apt-get install chromium)")
    return subprocess.Popen(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stats(url: str) -> dict:
    return json.loads(urllib.request.urlopen(url + "stats.json", timeout=5).read())


def mjpeg_count(url: str, stop: threading.Event, out: list) -> None:
    with urllib.request.urlopen(url + "stream.mjpg", timeout=10) as r:
        while not stop.is_set():
            line = r.readline()
            if line.startswith(b"Content-Length:"):
                n = int(line.split(b":")[1])
                r.readline()
                r.read(n)
                out.append(time.monotonic())


def rate(ts: list[float]) -> float:
    return (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 1 else 0.0


def view_alone(rate_hz: float, seconds: float, tmp: Path) -> dict:
    from qdev.core.probe.phantom import PhantomCine, PhantomConfig
    from qdev.host.view import Hud, compose
    from qdev.host.webview import WebView

    cine = PhantomCine(PhantomConfig(height=480, width=640, seed=1), 50)
    imgs = [
        (compose(f.image, f.mask, None), int(f.mask.sum())) for f in cine
    ]  # made before the clock runs
    web = WebView(port=0)
    br = chromium(web.url, tmp / "chr-a")
    mj: list[float] = []
    stop = threading.Event()
    try:
        time.sleep(3)  # the browser starts
        threading.Thread(target=mjpeg_count, args=(web.url, stop, mj), daemon=True).start()
        t0, n, pub = time.monotonic(), 0, []
        while time.monotonic() - t0 < seconds:
            img, area = imgs[n % len(imgs)]
            web.publish(
                img,
                Hud(n, rate_hz, 10.0, 5.0, 1.0, 5.0, "estimated", 0, 0, "bench", area).as_dict(),
            )
            pub.append(time.monotonic())
            n += 1
            time.sleep(max(0.0, t0 + n / rate_hz - time.monotonic()))
        time.sleep(1.2)
        rep = stats(web.url)["viewers"]
    finally:
        stop.set()
        br.kill()
        web.close()
    return {
        "published_fps": rate(pub),
        "page_fps": st.median(r[2] for r in rep[-5:]) if rep else 0.0,
        "mjpeg_fps": rate(mj[len(mj) // 5 :]),
    }


def whole_stream(rate_hz: float, frames: int, tmp: Path) -> dict:
    from qdev import assets
    from qdev.core.probe.sources import open_probe
    from qdev.host.client import connect
    from qdev.host.local import LocalDevice
    from qdev.host.stream import StreamConfig, stream_to_session

    with LocalDevice(tmp / "store") as dev:
        c = connect(dev.port)
        c.flash(assets.shipped_bundle("KV260"), assets.dev_public_keys())
        cfg = StreamConfig(fps=rate_hz, max_frames=frames, view="web:8799", out=tmp / "session")
        reports: list = []
        br = [None]

        def watch() -> None:
            time.sleep(1.0)
            br[0] = chromium("http://127.0.0.1:8799/", tmp / "chr-b")
            while True:
                try:
                    s = stats("http://127.0.0.1:8799/")
                except OSError:
                    return
                reports[:] = s["viewers"]
                if s["ended"]:
                    return
                time.sleep(0.5)

        t = threading.Thread(target=watch, daemon=True)
        t.start()
        _, summ = stream_to_session(c, open_probe("phantom:2"), cfg)
        c.close()
        if br[0] is not None:
            br[0].kill()
    steady = [r[2] for r in reports[2:]] or [0.0]
    return {
        "session_fps": summ.fps,
        "frames_ok": summ.frames_ok,
        "dropped": summ.dropped,
        "page_fps": st.median(steady),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=25.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--frames", type=int, default=300)
    a = ap.parse_args()
    from qdev.core.threads import pin_threads

    pin_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        r1 = view_alone(a.rate, a.seconds, Path(tmp))
        print(
            f"view alone, 640x480 overlays published at {r1['published_fps']:.1f} fps: page shows "
            f"{r1['page_fps']:.1f} fps (Chromium's own count); an MJPEG client beside it receives "
            f"{r1['mjpeg_fps']:.1f} fps"
        )
        r2 = whole_stream(a.rate, a.frames, Path(tmp))
        print(
            f"qdev stream, phantom cine paced at {a.rate:g} fps, {r2['frames_ok']} frames "
            f"ok, {r2['dropped']} "
            f"dropped: session {r2['session_fps']:.1f} fps, page shows {r2['page_fps']:.1f} fps"
        )


if __name__ == "__main__":
    main()
