"""The live view as a user sees it: the desktop window under a real X server (Xvfb), screenshotted;
the browser view in a real headless Chromium, screenshotted twice and checked against the session
log; the overlay on the probe's own frame at its own size."""

from __future__ import annotations

import csv
import importlib.metadata as md
import io
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.chromium import CHROMIUM, Browser

XVFB = shutil.which("Xvfb")
XDOTOOL = shutil.which("xdotool")


def _green(a: np.ndarray) -> np.ndarray:
    """Pixels of the contour colour (pure green, BGR/RGB alike) in an RGB screenshot."""
    return (a[..., 1] > 200) & (a[..., 0] < 80) & (a[..., 2] < 80)


# -- the composed overlay --------------------------------------------------------------------


def test_overlay_is_at_the_source_size_in_colour_with_the_mask_mapped_back():
    from qdev.host.view import Hud, compose

    h, w = 480, 640
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = 200  # a red frame: RGB in, so BGR out has it in channel 2
    mask = np.zeros((128, 128), np.uint8)
    mask[32:96, 64:128] = 1  # the right half of the model input, rows a quarter to three quarters
    img = compose(
        rgb, mask, Hud(3, 25.0, 12.0, 5.0, 1.5, 7.5, "measured", 0, 0, "abcd", 4096), fill=False
    )
    plain = compose(rgb, mask, None, fill=False)
    # the HUD is a band below the frame: the scan's own rows are untouched (nothing hides the skin
    # line)
    assert img.shape[0] > h and img.shape[1:] == (w, 3) and np.array_equal(img[:h], plain)
    assert (img[h:] > 240).all(axis=2).sum() > 50  # its white text is in the band
    assert img[400, 100, 2] == 200 and img[400, 100, 0] == 0  # colour kept, as BGR
    ys, xs = np.nonzero(_green(img[..., ::-1]))
    # the contour runs around the mask's place in the *source* frame: x 320..640, y 120..360
    assert xs.min() >= 300 and abs(int(ys.min()) - 120) <= 4 and abs(int(ys.max()) - 360) <= 4


def test_dicom_window_centre_width_is_applied_for_display_only():
    from qdev.host.view import display_bgr

    a = np.array([[0, 1000, 1500, 2000, 4000]], np.uint16)
    out = display_bgr(a, window=(1500.0, 1001.0))[..., 0][0]
    assert out.tolist() == [0, 0, 128, 255, 255]  # DICOM's linear VOI: centre -> mid grey
    full = display_bgr(a)[..., 0][0]
    assert full[0] == 0 and full[-1] == 255  # no window: the full range


def test_one_opencv_with_a_gui():
    """opencv-python (with highgui) and opencv-python-headless both provide cv2: exactly one."""
    have = set()
    for dist in (
        "opencv-python",
        "opencv-python-headless",
        "opencv-contrib-python",
        "opencv-contrib-python-headless",
    ):
        try:
            md.version(dist)
            have.add(dist)
        except md.PackageNotFoundError:
            pass
    assert have == {"opencv-python"}, have
    import cv2

    gui = [ln for ln in cv2.getBuildInformation().splitlines() if ln.strip().startswith("GUI:")]
    assert gui and "NONE" not in gui[0].upper(), gui


def test_view_spec_errors_are_one_line(tmp_path):
    from click.testing import CliRunner

    from qdev.host.cli import cli

    r = CliRunner().invoke(
        cli, ["-p", "tcp://127.0.0.1:9", "stream", "--probe", "phantom", "--view", "tv"]
    )
    assert r.exit_code == 2 and r.output.strip().splitlines()[-1].startswith(
        "qdev: --view tv: expected"
    )


# -- the desktop window, under Xvfb --------------------------------------------------------------


@pytest.fixture()
def xdisplay():
    if XVFB is None:
        pytest.skip("Xvfb not installed (apt-get install xvfb; .ci/run installs it)")
    r, w = os.pipe()
    proc = subprocess.Popen(
        [XVFB, "-displayfd", str(w), "-screen", "0", "1280x900x24", "-nolisten", "tcp"],
        pass_fds=(w,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(w)
    num = b""
    while not num.endswith(b"\n"):
        chunk = os.read(r, 16)
        if not chunk:
            break
        num += chunk
    os.close(r)
    yield f":{num.decode().strip()}"
    proc.terminate()
    proc.wait(10)


def _grab(display: str) -> np.ndarray:
    from PIL import ImageGrab

    return np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB"))


def test_desktop_window_opens_shows_the_overlay_and_q_closes_it(xdisplay, tmp_path):
    env = {**os.environ, "DISPLAY": xdisplay}
    out = tmp_path / "sess"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qdev.host.cli",
            "demo",
            "--probe",
            "phantom",
            "--frames",
            "2000",
            "--view",
            "window",
            "--out",
            str(out),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        shot, deadline = (
            None,
            time.time() + 240,
        )  # a loaded CI machine: device start, flash, first frames
        while time.time() < deadline:
            time.sleep(1.0)
            a = _grab(xdisplay)
            if _green(a).sum() > 50:  # the contour is on screen
                time.sleep(1.0)
                shot = _grab(xdisplay)
                break
        if shot is None:
            p.kill()
            raise AssertionError(
                f"no window with a contour appeared: {p.communicate(timeout=30)[1][-3000:]}"
            )
        from PIL import Image

        Image.fromarray(shot).save(tmp_path / "window.png")
        ys, xs = np.nonzero(_green(shot))
        # the window holds the 256x256 phantom frame, magnified 2x: the contour lies within it
        assert xs.max() - xs.min() < 520 and ys.max() - ys.min() < 520
        # the HUD's white text band is there too, above the contour's frame
        assert ((shot > 240).all(axis=2)).sum() > 200
        if XDOTOOL is None:
            pytest.skip("xdotool not installed: cannot press q")
        for _ in range(3):  # a key press can be lost while the window is busy: press again if so
            subprocess.run(
                [
                    XDOTOOL,
                    "search",
                    "--onlyvisible",
                    "--name",
                    "qdev live",
                    "windowfocus",
                    "--sync",
                    "key",
                    "q",
                ],
                env=env,
                timeout=30,
                capture_output=True,
            )
            try:
                p.wait(timeout=20)
                break
            except subprocess.TimeoutExpired:
                continue
        stdout, stderr = p.communicate(timeout=240)  # the report is written after the window closes
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, stderr
    assert "Traceback" not in stderr
    import json

    man = json.loads((out / "manifest.json").read_text())
    rows = (out / "frames.csv").read_text().splitlines()
    assert man["summary"]["interrupted"] is True  # closed by the user, before 2000 frames
    assert (
        man["counts"]["ok"] + man["counts"].get("lost", 0) == len(rows) - 1 >= 5
    )  # the log is complete


# -- the browser view, in headless Chromium ------------------------------------------------------


def test_browser_view_loads_updates_and_matches_the_session_log(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium not installed (apt-get install chromium; .ci/run installs it)")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "sess"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qdev.host.cli",
            "demo",
            "--probe",
            "phantom",
            "--frames",
            "2000",
            "--view",
            f"web:{port}",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        import json
        import urllib.request

        deadline = time.time() + 240
        while time.time() < deadline:
            try:
                if (
                    json.loads(urllib.request.urlopen(url + "stats.json", timeout=2).read())[
                        "frames"
                    ]
                    >= 5
                ):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        shots = []
        with Browser(tmp_path / "chr") as br:
            br.open(url)
            br.wait_for("Number(document.getElementById('shown').textContent) >= 1", timeout=120)
            seen = 0
            for i in range(2):
                if i:  # the next frame reached the page
                    br.wait_for(
                        f"Number(document.getElementById('shown').textContent) > {seen}",
                        timeout=120,
                    )
                seen = int(br.evaluate("document.getElementById('shown').textContent"))
                png = br.screenshot(tmp_path / f"page{i}.png")
                shots.append(
                    np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(png).convert("RGB"))
                )
            dom = br.dom()
            p.send_signal(
                __import__("signal").SIGINT
            )  # Ctrl-C: the session ends, its log is flushed
            # the page says so, and stops counting (it used to count the last frame again and again)
            br.wait_for(
                "document.getElementById('state').textContent === 'session ended'", timeout=120
            )
            time.sleep(1.0)  # a frame already on its way may still arrive; then nothing more
            shown_at_end = int(br.evaluate("document.getElementById('shown').textContent"))
            time.sleep(1.5)
            assert int(br.evaluate("document.getElementById('shown').textContent")) == shown_at_end
            br.screenshot(tmp_path / "page-ended.png")
    finally:
        if p.poll() is None:
            p.send_signal(__import__("signal").SIGINT)
        p.communicate(timeout=240)
    # the page drew the live frame with its contour, and the frame changed between the shots
    for a in (
        shots
    ):  # the contour, through JPEG and the browser's scaling: clearly green, not pure green
        a16 = a.astype(int)
        assert ((a16[..., 1] - np.maximum(a16[..., 0], a16[..., 2])) > 80).sum() > 200, (
            "no overlay on the page"
        )
    assert np.abs(shots[0].astype(int) - shots[1].astype(int)).sum() > 0
    frame_id = int(re.search(r'id="frame_id">(\d+)<', dom).group(1))
    area = int(re.search(r'id="area">(\d+) px<', dom).group(1))
    assert int(re.search(r'id="shown">(\d+)<', dom).group(1)) >= 1
    rows = {
        int(r["frame_id"]): r for r in csv.DictReader(io.StringIO((out / "frames.csv").read_text()))
    }
    assert rows[frame_id]["status"] == "ok" and int(rows[frame_id]["mask_area"]) == area
    # the table is the frame shown's own row of the log (it was one frame behind)
    rtt = float(re.search(r'id="rtt">([\d.]+) ms<', dom).group(1))
    dev = float(re.search(r'id="device">([\d.]+) ms<', dom).group(1))
    assert (
        abs(rtt - float(rows[frame_id]["rtt_ms"])) <= 0.51
        and abs(dev - float(rows[frame_id]["device_ms"])) <= 0.051
    )
    assert shown_at_end <= sum(r["status"] == "ok" for r in rows.values())


# -- through the CLI: a 640x480 cine keeps its size; device: mode feeds the browser view too -------


def test_saved_overlay_of_a_640x480_cine_is_640x480_in_colour(tmp_path):
    import cv2
    from click.testing import CliRunner

    from qdev.host.cli import cli
    from qdev.host.client import connect
    from qdev.host.local import LocalDevice, default_bundle, default_trusted

    cine = tmp_path / "cine.mp4"
    wr = cv2.VideoWriter(str(cine), cv2.VideoWriter_fourcc(*"mp4v"), 10, (640, 480))
    for i in range(8):
        f = np.full((480, 640, 3), (40, 90, 160), np.uint8)  # a brownish BGR frame
        cv2.circle(f, (320 + 10 * i, 240), 80, (230, 230, 230), -1)
        wr.write(f)
    wr.release()
    with LocalDevice(tmp_path / "store") as dev:
        c = connect(dev.port)
        c.flash(default_bundle("KV260"), default_trusted())
        c.close()
        r = CliRunner().invoke(
            cli,
            [
                "-p",
                dev.port,
                "stream",
                "--probe",
                str(cine),
                "--no-view",
                "--save",
                str(tmp_path / "o.mp4"),
                "--out",
                str(tmp_path / "s"),
                "--no-report",
            ],
        )
    assert r.exit_code == 0, r.output
    cap = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    ok, first = cap.read()
    assert (
        ok and first.shape[0] > 480 and first.shape[1:] == (640, 3)
    )  # the frame, and the HUD band below it
    corner = (
        first[5:40, 5:40].reshape(-1, 3).mean(axis=0)
    )  # the frame's top left: no HUD over it any more
    assert corner[2] > corner[0] + 60  # the frame's own colours (red over blue), not darkened


def test_device_mode_feeds_the_browser_view(tmp_path):
    import json
    import socket
    import sys
    import urllib.request

    from qdev.host.client import connect
    from qdev.host.local import LocalDevice, default_bundle, default_trusted

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with LocalDevice(tmp_path / "store", extra=["--probe", "phantom"]) as dev:
        c = connect(dev.port)
        c.flash(default_bundle("KV260"), default_trusted())
        c.close()
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "qdev.host.cli",
                "-p",
                dev.port,
                "stream",
                "--probe",
                "device:phantom",
                "--frames",
                "400",
                "--view",
                f"web:{port}",
                "--out",
                str(tmp_path / "s"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            url, doc, deadline = f"http://127.0.0.1:{port}/", None, time.time() + 240
            while time.time() < deadline:
                try:
                    doc = json.loads(urllib.request.urlopen(url + "stats.json", timeout=2).read())
                    if doc["frames"] >= 3:
                        break
                except OSError:
                    pass
                time.sleep(0.3)
            with urllib.request.urlopen(url + f"frame.jpg?after={doc['frames']}", timeout=10) as r:
                jpeg, fid = r.read(), int(r.headers["X-Frame-Id"])
        finally:
            p.kill()
            p.communicate(timeout=30)
    assert doc["hud"]["source"] == "device:phantom" and fid > 0
    from PIL import Image

    # the probe's own frame (the device's phantom is 256x256, within --display-size 320), not the
    # 128x128 model input the device used to send
    assert Image.open(io.BytesIO(jpeg)).size == (256, 256)
