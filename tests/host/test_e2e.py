"""End to end: a device runtime in its own process, reached over TCP loopback, over a pty pair
(with and without a 921600-baud rate limit) and through a fault-injecting proxy."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from qdev.core.link import LinkError
from qdev.host.cli import cli
from qdev.host.client import DeviceClient, connect
from qdev.host.local import LocalDevice, default_bundle, default_trusted
from tests.device.helpers import golden_masks
from tests.linkfaults import FaultProxy, PtyPair

BUNDLE = default_bundle("KV260")
GOLD_PX = np.load(BUNDLE / "golden_pixels.npy").reshape(-1, 128, 128)
GOLD_MASK = golden_masks(BUNDLE)  # the golden codes through the bundle's mask rule


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    with LocalDevice(tmp_path_factory.mktemp("dev") / "store") as dev:
        c = connect(dev.port)
        res = c.flash(BUNDLE, default_trusted())
        c.close()
        assert res["activated"]
        yield dev


def _png_folder(folder, n: int, hw: tuple[int, int], stem: str, seed: int):  # noqa: ANN001, ANN202
    """``n`` random grayscale PNGs ``<stem>NN.png`` of size ``hw`` in a new ``folder``."""
    import numpy as np
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, hw, dtype=np.uint8)).save(
            folder / f"{stem}{i:02d}.png"
        )
    return folder


def _run(*args: str):
    r = CliRunner().invoke(cli, list(args))
    return r


def test_cli_info_stream_report_over_tcp(device, tmp_path):
    r = _run("-p", device.port, "info", "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["backend"] == "software" and info["store"]["active_bundle"]["board"] == "KV260"
    assert info["power_now"]["kind"] == "estimated"
    # what the shipped bundle's build verified, from its signed manifest
    man = json.loads((BUNDLE / "manifest.json").read_text())["verification"]
    want = man.get("modes_run") or ["python"]
    assert info["store"]["active_bundle"]["verified"]["modes"] == want
    r = _run("-p", device.port, "info")
    assert r.exit_code == 0 and f"verified {', '.join(want)}" in r.output
    sess = tmp_path / "s1"
    r = _run(
        "-p",
        device.port,
        "stream",
        "--probe",
        "phantom",
        "--frames",
        "12",
        "--no-view",
        "--out",
        str(sess),
    )
    assert r.exit_code == 0, r.output
    rows = (sess / "frames.csv").read_text().splitlines()
    assert len(rows) == 13 and all(",ok," in x for x in rows[1:])
    man = json.loads((sess / "manifest.json").read_text())
    assert man["counts"]["ok"] == 12 and man["device"]["bundle_id"]
    r = _run("report", str(sess), "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)["sessions"][0]
    assert (
        rep["frames"]["ok"] == 12
        and rep["rtt_ms"]["p50"] > 0
        and rep["energy_mj_per_frame"]["kind"] == "estimated"
    )
    assert any("only 12 frames" in w for w in rep["warnings"])
    for f in (
        "latency_cdf.png",
        "latency_timeline.png",
        "power_timeline.png",
        "energy_per_frame.png",
        "report.html",
    ):
        assert (sess / "report" / f).stat().st_size > 1000, f
    assert "data:image/png;base64," in (sess / "report" / "report.html").read_text()


def test_stream_image_folder_lossless_and_masks_bit_exact(device, tmp_path):
    from PIL import Image

    for i, px in enumerate(GOLD_PX):
        Image.fromarray(px).save(tmp_path / f"f{i}.png")
    c = connect(device.port)
    try:
        reps = list(c.stream(((i, GOLD_PX[i]) for i in range(len(GOLD_PX))), window=3))
    finally:
        c.close()
    assert [r.frame_id for r in reps] == list(range(len(GOLD_PX)))
    for r in reps:
        assert r.error is None and np.array_equal(r.mask, GOLD_MASK[r.frame_id])


@pytest.mark.parametrize("rate", [None, 92160.0], ids=["pty", "pty-921600baud"])
def test_flash_and_stream_over_a_pty(tmp_path, rate):
    pty = PtyPair(rate)
    try:
        with LocalDevice(tmp_path / "store", serial=pty.dev_path, tcp=False):
            c = connect(pty.host_path, timeout=30.0)
            try:
                res = c.flash(BUNDLE, default_trusted())
                assert res["activated"] and res["self_test"]["ok"]
                reps = list(
                    c.stream(((i, GOLD_PX[i % 4]) for i in range(6)), window=2, timeout=30.0)
                )
            finally:
                c.close()
    finally:
        pty.close()
    assert all(r.error is None and np.array_equal(r.mask, GOLD_MASK[r.frame_id % 4]) for r in reps)


def test_fault_injection_no_silent_corruption_every_loss_counted(device):
    host, port = device.port[len("tcp://") :].split(":")
    proxy = FaultProxy((host, int(port)), seed=3, flip=0.03, drop=0.02, stall=0.02)
    n, ok, lost = 80, 0, 0
    try:
        c = DeviceClient(
            __import__("qdev.core.link", fromlist=["open_link"]).open_link(proxy.port), timeout=3.0
        )
        for _ in range(5):  # the handshake itself may be hit by a fault
            try:
                c.handshake(timeout=3.0)
                break
            except LinkError:
                continue
        seen = []
        for r in c.stream(((i, GOLD_PX[i % 4]) for i in range(n)), window=4, timeout=1.5):
            seen.append(r.frame_id)
            if r.error is None:
                ok += 1
                assert np.array_equal(r.mask, GOLD_MASK[r.frame_id % 4]), (
                    f"frame {r.frame_id} silently wrong"
                )
            else:
                lost += 1
        c.close()
    finally:
        proxy.close()
    assert sorted(seen) == list(range(n)) and ok + lost == n
    assert sum(proxy.counts.values()) > 0 and ok > n // 2


def test_disconnect_then_reconnect_and_resumed_flash(device):
    import hashlib
    import zlib

    from qdev.core.bundle import pack_bundle
    from qdev.core.protocol import MsgType

    host, port = device.port[len("tcp://") :].split(":")
    proxy = FaultProxy((host, int(port)), seed=1, flip=0, drop=0, stall=0, disconnect=1.0)
    try:
        with pytest.raises(LinkError):
            connect(proxy.port, timeout=2.0)  # the proxy cuts every link at the first chunk
    finally:
        proxy.close()
    # an upload cut half-way resumes from the device's offset on the next connection
    data = pack_bundle(default_bundle("ZCU104"))
    sha = hashlib.sha256(data).hexdigest()
    c = connect(device.port)
    b = default_bundle("ZCU104")
    c.request(
        MsgType.FLASH_BEGIN,
        {
            "sha256": sha,
            "size": len(data),
            "manifest": (b / "manifest.json").read_text(),
            "signature": (b / "manifest.json.sig").read_text(),
        },
    )
    half = data[: len(data) // 2]
    c.request(MsgType.FLASH_CHUNK, {"offset": 0, "crc": zlib.crc32(half)}, half)
    c.close()
    c = connect(device.port)
    first = []
    try:
        res = c.flash(
            default_bundle("ZCU104"), default_trusted(), progress=lambda d, t: first.append(d)
        )
        assert first[0] == len(data) // 2 and res["activated"]
        assert c.info()["store"]["active_bundle"]["board"] == "ZCU104"
        assert c.rollback()["activated"] and c.info()["store"]["active_bundle"]["board"] == "KV260"
    finally:
        c.close()


def test_user_errors_are_one_line_exit_2(device, tmp_path, monkeypatch):
    monkeypatch.delenv("QDEV_PORT", raising=False)
    r = _run("info")
    assert r.exit_code == 2 and "qdev: no device port" in r.output
    bad = tmp_path / "bad"
    shutil.copytree(BUNDLE, bad)
    (bad / "golden_codes.npy").write_bytes(b"tampered")
    r = _run("-p", device.port, "flash", str(bad))
    assert r.exit_code == 2 and "does not match its sha256" in r.output
    r = _run("-p", device.port, "stream", "--probe", str(tmp_path / "none.mp4"), "--no-view")
    assert r.exit_code == 2 and "qdev: --probe" in r.output
    r = _run("-p", "tcp://127.0.0.1:1", "info")
    assert r.exit_code == 2 and "cannot connect" in r.output
    r = _run("report", str(tmp_path))
    assert r.exit_code == 2 and "not a qdev session" in r.output
    out = tmp_path / "exists"
    out.mkdir()
    r = _run(
        "-p",
        device.port,
        "stream",
        "--probe",
        "phantom",
        "--frames",
        "2",
        "--no-view",
        "--out",
        str(out),
    )
    assert r.exit_code == 2 and "already exists" in r.output and not list(out.iterdir())


def test_demo_on_a_fresh_machine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = _run("demo", "--probe", "phantom", "--frames", "8", "--out", str(tmp_path / "demo"))
    assert r.exit_code == 0, r.output
    assert "self-test passed" in r.output and "8 frames ok" in r.output
    assert (tmp_path / "demo" / "report" / "report.html").is_file()


def test_on_device_probe_watched_by_host_with_bounded_logs(tmp_path):
    store = tmp_path / "store"
    extra = ["--probe", "phantom", "--log-max-bytes", "1500", "--log-keep", "2"]
    with LocalDevice(store, extra=extra) as dev:
        c = connect(dev.port)
        assert c.flash(BUNDLE, default_trusted())["activated"]
        c.close()
        r = _run(
            "-p",
            dev.port,
            "stream",
            "--probe",
            "device:phantom",
            "--frames",
            "25",
            "--no-view",
            "--out",
            str(tmp_path / "sess"),
        )
        assert r.exit_code == 0, r.output
        lines = [x for x in r.stdout.splitlines() if x.startswith("frame ")]
        assert len(lines) == 25 and "(estimated)" in lines[0]
        c = connect(dev.port)
        live = c.stats()["live"]
        c.close()
        assert live["source"] == "phantom:0" and live["frame_id"] >= 24
    logs = sorted((store / "logs").glob("live-*.csv"))
    assert 1 <= len(logs) <= 2 and all(p.stat().st_size < 1500 + 200 for p in logs)
    assert logs[0].read_text().startswith("frame_id,")


def test_ports_bench_and_saved_overlay_video(device, tmp_path):
    r = _run("ports", "--json")
    assert r.exit_code == 0, r.output
    assert isinstance(json.loads(r.stdout)["ports"], list)
    r = _run("-p", device.port, "bench", "--frames", "12", "--json")
    assert r.exit_code == 0, r.output
    b = json.loads(r.stdout)
    assert b["device"]["frames"] == 12 and b["device"]["fps"] > 0 and b["host_cpu"]["fps"] > 0
    # both sides state the BLAS threads they ran with (default 1), and the pools really hold it
    assert b["device"]["threads"] == 1 and b["host_cpu"]["threads"] == 1
    assert b["host_cpu"]["blas"] and all(p["threads"] == 1 for p in b["host_cpu"]["blas"])
    video = tmp_path / "overlay.mp4"
    r = _run(
        "-p",
        device.port,
        "stream",
        "--probe",
        "phantom",
        "--frames",
        "6",
        "--no-view",
        "--save",
        str(video),
        "--out",
        str(tmp_path / "s"),
    )
    assert r.exit_code == 0, r.output
    import cv2

    cap = cv2.VideoCapture(str(video))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 6


def test_ctrl_c_ends_cleanly_with_logs_flushed(device, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "sess"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qdev.host.cli",
            "-p",
            device.port,
            "stream",
            "--probe",
            "phantom",
            "--no-view",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        f = out / "frames.csv"
        if f.is_file() and len(f.read_text().splitlines()) > 5:
            break
        time.sleep(0.2)
    os.kill(p.pid, signal.SIGINT)
    stdout, stderr = p.communicate(timeout=30)
    man = json.loads((out / "manifest.json").read_text())
    rows = (out / "frames.csv").read_text().splitlines()
    assert man["summary"]["interrupted"] is True and man["counts"]["ok"] == len(rows) - 1 >= 5, (
        stderr
    )
    assert "Traceback" not in stderr


def test_live_source_newest_frame_wins_and_drops_are_counted(device, tmp_path):
    from qdev.core.probe.sources import open_probe
    from qdev.host.session import SessionWriter
    from qdev.host.stream import StreamConfig, run_stream

    from qdev.core.probe.sources import ProbeFrame, ProbeSource

    class FastLive(ProbeSource):
        """A live source faster than any device here: pre-rendered phantom frames at 400 frames/s
        (the phantom renders at about the device's rate on an idle machine, so it dropped nothing
        there: a flaky test, found when this VM was idle)."""

        live, fps, name = True, 400.0, "fast-live"

        def __init__(self) -> None:
            import itertools

            self.images = [f.image for f in itertools.islice(open_probe("phantom").frames(), 8)]

        def frames(self):  # noqa: ANN202
            i = 0
            while True:
                yield ProbeFrame(i, self.images[i % len(self.images)], i / self.fps, time.time())
                i += 1

    import time

    c = connect(device.port)
    try:
        w = SessionWriter(tmp_path / "s", {"source": "phantom"})
        # the source produces at 400 frames/s, faster than the device (one window slot): frames
        # are skipped, not queued
        summ = run_stream(c, FastLive(), StreamConfig(fps=400.0, window=1, max_frames=15), w)
        w.close()
    finally:
        c.close()
    assert summ.frames_ok == 15 and summ.lost == 0 and summ.dropped > 0
    ids = [
        int(x.split(",")[0]) for x in (tmp_path / "s" / "frames.csv").read_text().splitlines()[1:]
    ]
    # later frames, not a backlog: the ids skip exactly the frames counted as dropped (at most)
    assert ids == sorted(ids) and 14 < ids[-1] - ids[0] <= 14 + summ.dropped


def test_report_compare_two_sessions(device, tmp_path):
    for name in ("a", "b"):
        r = _run(
            "-p",
            device.port,
            "stream",
            "--probe",
            "phantom:1",
            "--frames",
            "5",
            "--no-view",
            "--out",
            str(tmp_path / name),
            "--no-report",
        )
        assert r.exit_code == 0, r.output
    r = _run(
        "report",
        str(tmp_path / "a"),
        "--compare",
        str(tmp_path / "b"),
        "--out",
        str(tmp_path / "rep"),
        "--json",
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [s["frames"]["ok"] for s in doc["sessions"]] == [5, 5]
    html = (tmp_path / "rep" / "report.html").read_text()
    assert html.count("<section>") == 2 and (tmp_path / "rep" / "latency_cdf.png").is_file()


@pytest.mark.busi
def test_demo_on_busi_reproduces_the_evaluated_dice(busi_path, tmp_path, monkeypatch):
    """Through the whole deployment path (bundle, flash, link, device runtime, software backend),
    the shipped model's masks on the BUSI test split score exactly the Dice `qdev evaluate`
    measured in PyTorch: the accelerator is bit-exact, the preprocessing is training's, and the
    mask rule the bundle carries is the one evaluate applied (chosen on validation)."""
    from qdev.host.report import summarise

    monkeypatch.setenv("QDEV_BUSI", str(busi_path))
    out = tmp_path / "demo"
    r = _run("demo", "--probe", "busi", "--frames", "1000", "--out", str(out))
    assert r.exit_code == 0, r.output
    s = summarise(out)
    evaluated = json.loads(
        (BUNDLE.parents[2] / "models" / "quantunet-w8" / "evaluate" / "metrics.json").read_text()
    )
    rule = {
        k: evaluated["mask_rule"][k]
        for k in ("min_code", "min_area", "min_peak")
        if evaluated["mask_rule"].get(k) is not None
    }  # min_peak only where the rule has one
    from qdev.core.maskrule import MaskRule

    assert (
        MaskRule.from_manifest(
            json.loads((BUNDLE / "manifest.json").read_text()).get("mask_rule")
        ).to_dict()
        == rule
    )
    assert s["frames"]["ok"] == evaluated["metrics"]["n_images"] == s["dice_vs_truth"]["n"]
    assert abs(s["dice_vs_truth"]["mean"] - evaluated["metrics"]["dice"]) < 1e-4


@pytest.mark.parametrize(
    "opt, value, needle",
    [
        ("--fps", "-1", "--fps -1.0: must be a positive number"),
        ("--fps", "0", "--fps 0.0: must be a positive number"),
        ("--timeout", "0", "--timeout 0.0: must be a positive number of seconds"),
        ("--window", "0", "--window 0: must be >= 1"),
        ("--frames", "0", "--frames 0: must be >= 1"),
    ],
)
def test_stream_settings_are_checked_before_connecting(opt, value, needle, tmp_path):
    # the port answers nothing: the check must come first, with one line and exit 2
    r = _run(
        "-p",
        "tcp://127.0.0.1:9",
        "stream",
        "--probe",
        "phantom",
        "--no-view",
        opt,
        value,
        "--out",
        str(tmp_path / "s"),
    )
    assert r.exit_code == 2 and r.output.strip() == f"qdev: {needle}"
    assert not (tmp_path / "s").exists()


def test_device_mode_with_a_file_probe_ends_by_itself_and_waits_for_a_bundle(tmp_path):
    """`serve --probe FILES` started before any bundle is flashed waits (it used to drop the
    whole source, one frame per 0.2 s); once flashed, it segments every frame, and a watching
    `qdev stream --probe device:...` ends by itself at the end of the source, exit 0 (it used to
    hang until killed)."""
    import time as _time

    folder = _png_folder(tmp_path / "cine", 12, (96, 120), "f", seed=3)
    store = tmp_path / "store"
    with LocalDevice(store, extra=["--probe", str(folder / "*.png")]) as dev:
        _time.sleep(1.5)  # no bundle yet: the device must not use the source up
        c = connect(dev.port)
        assert c.flash(BUNDLE, default_trusted())["activated"]
        c.close()
        t0 = _time.monotonic()
        r = _run(
            "-p",
            dev.port,
            "stream",
            "--probe",
            "device:cine",
            "--no-view",
            "--out",
            str(tmp_path / "sess"),
        )
        assert r.exit_code == 0, r.output
        assert _time.monotonic() - t0 < 60
        assert "the device's source ended: 12 frames segmented on the device" in r.stdout, r.stdout
        # and the session folder is the same as host mode's (it wrote none before)
        from qdev.host.report import summarise
        from qdev.host.session import read_masks, read_session

        m, rows = read_session(tmp_path / "sess")
        # every frame the device segmented was either received here or counted as skipped by this
        # viewer (the device moves on while a viewer is busy)
        first = int(rows[0]["frame_id"])
        assert len(rows) + m["summary"]["skipped_by_viewer"] + first == 12 and all(
            x["status"] == "ok" for x in rows
        )
        assert (
            len(read_masks(tmp_path / "sess", m)) == len(rows)
            and m["summary"]["ended_by_device"]["frames"] == 12
        )
        assert (tmp_path / "sess" / "frames.parquet").is_file() and (
            tmp_path / "sess" / "gallery"
        ).is_dir()
        assert summarise(tmp_path / "sess")["frames"]["ok"] == len(rows) and "session: " in r.stdout
        # device:SOURCE names the device's own probe: another one is refused in one line
        r = _run(
            "-p",
            dev.port,
            "stream",
            "--probe",
            "device:video:7",
            "--no-view",
            "--out",
            str(tmp_path / "s2"),
        )
        assert (
            r.exit_code == 2
            and "this device segments its own probe" in r.output
            and "Traceback" not in r.output
        )
        assert not (tmp_path / "s2").exists()


def test_demo_finds_busi_by_the_one_rule_and_never_falls_back_silently(tmp_path, monkeypatch):
    """A wrong QDEV_BUSI or --data is an error naming it (QDEV_BUSI=no-such-dir used to fall back
    to the phantom without a word); a pack is refused with the reason (it holds no images)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QDEV_BUSI", str(tmp_path / "no-such-dir"))
    r = _run("demo", "--frames", "2", "--out", str(tmp_path / "d1"))
    assert r.exit_code == 2 and "QDEV_BUSI=" in r.output and "no such folder" in r.output
    monkeypatch.delenv("QDEV_BUSI")
    r = _run(
        "demo", "--data", str(tmp_path / "nope"), "--frames", "2", "--out", str(tmp_path / "d2")
    )
    assert r.exit_code == 2 and "nope: no such folder" in r.output
    pack = tmp_path / "busi.npz"
    pack.write_bytes(b"not really")
    r = _run(
        "demo",
        "--data",
        str(pack),
        "--probe",
        "busi",
        "--frames",
        "2",
        "--out",
        str(tmp_path / "d3"),
    )
    assert r.exit_code == 2 and "pack holds no source images" in r.output
    assert (
        not (tmp_path / "d1").exists()
        and not (tmp_path / "d2").exists()
        and not (tmp_path / "d3").exists()
    )


def test_frames_log_and_report_name_each_frames_file(device, tmp_path):
    """frames.csv / frames.parquet have a `source` column (the frame's own file for a file
    source), and the report's gallery captions name the file."""
    from qdev.host.session import read_session

    folder = _png_folder(tmp_path / "imgs", 5, (64, 80), "scan_", seed=1)
    out = tmp_path / "s"
    r = _run(
        "-p",
        device.port,
        "stream",
        "--probe",
        str(folder / "*.png"),
        "--no-view",
        "--out",
        str(out),
    )
    assert r.exit_code == 0, r.output
    _, rows = read_session(out)
    assert sorted(r_["source"] for r_ in rows) == [f"scan_{i:02d}.png" for i in range(5)]
    assert _run("report", str(out)).exit_code == 0
    page = (out / "report" / "report.html").read_text()
    assert "(scan_0" in page and ".png)" in page


def test_device_mode_shows_the_probe_s_own_frame_reduced_for_the_link_and_says_so(tmp_path):
    """device: mode displays the probe's own frame (it used to be the 128x128 model input): a
    640x480 probe arrives as 320x240 under --display-size 320 (aspect kept) and as itself under
    --display-size 640; the mask maps back onto it, and the session's HUD label says when the
    view is reduced."""
    from qdev.core.codecs import fit_display
    from qdev.host.client import live_frame

    folder = tmp_path / "cine"
    folder.mkdir()
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (480, 640), dtype=np.uint8)).save(folder / f"f{i}.png")
    with LocalDevice(tmp_path / "store", extra=["--probe", str(folder / "*.png")]) as dev:
        c = connect(dev.port)
        assert c.flash(BUNDLE, default_trusted())["activated"]
        sizes = []
        for limit in (320, 640):
            msg = next(iter(c.watch(jpeg_quality=60, display_max=limit)))
            mask, px = live_frame(msg)
            sizes.append((px.shape, mask.shape, msg.meta["probe_w"], msg.meta["probe_h"]))
        c.close()
    assert sizes[0] == ((240, 320), (128, 128), 640, 480) and sizes[1] == (
        (480, 640),
        (128, 128),
        640,
        480,
    )
    assert fit_display(np.zeros((100, 50), np.uint8), 64).shape == (64, 32)


def test_device_mode_over_a_pty_ends_by_itself_and_writes_its_folder(tmp_path):
    """The wearable on its own over a serial line: `qdev -p PTY stream --probe device:...` with a
    file probe on the device ends by itself when the source does, exit 0, and writes the session
    folder a host-mode session writes."""
    from qdev.host.session import read_masks, read_session

    folder = _png_folder(tmp_path / "cine", 8, (120, 160), "f", seed=5)
    pty = PtyPair(None)
    try:
        with LocalDevice(
            tmp_path / "store",
            serial=pty.dev_path,
            tcp=False,
            extra=["--probe", str(folder / "*.png")],
        ):
            c = connect(pty.host_path, timeout=30.0)
            try:
                assert c.flash(BUNDLE, default_trusted())["activated"]
            finally:
                c.close()
            r = _run(
                "-p",
                pty.host_path,
                "stream",
                "--probe",
                "device:cine",
                "--no-view",
                "--out",
                str(tmp_path / "s"),
            )
    finally:
        pty.close()
    assert r.exit_code == 0, r.output
    assert "the device's source ended: 8 frames segmented on the device" in r.stdout
    m, rows = read_session(tmp_path / "s")
    assert (
        rows
        and len(read_masks(tmp_path / "s", m)) == len(rows)
        and (tmp_path / "s" / "frames.parquet").is_file()
    )
    assert len(rows) + m["summary"]["skipped_by_viewer"] + int(rows[0]["frame_id"]) == 8
