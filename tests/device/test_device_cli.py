"""``qdev-device`` (python -m qdev.device): one-line errors with exit 2, local install and info."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.device.helpers import DEV_PUB, SHIPPED

pytestmark = pytest.mark.device_env


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "qdev.device",
            *args,
            *(["--dev-key"] if args[0] in ("install", "info") else []),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_install_then_info(tmp_path):
    store = tmp_path / "store"
    r = _run(
        "install",
        str(SHIPPED["KV260"]),
        "--store",
        str(store),
        "--trust",
        str(DEV_PUB),
        "--backend",
        "software",
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["activated"] and res["self_test"]["ok"]
    r = _run("info", "--store", str(store), "--backend", "software")
    info = json.loads(r.stdout)
    assert info["bundle_id"] == res["bundle_id"] and info["backend"] == "software"
    assert info["power"]["kind"] == "estimated"


def test_errors_are_one_line_exit_2(tmp_path):
    r = _run("serve", "--store", str(tmp_path / "s"))
    assert r.returncode == 2 and r.stderr.strip().endswith(
        "qdev-device: serve needs --tcp HOST:PORT and/or --serial PORT"
    )
    bad = tmp_path / "bad"
    shutil.copytree(SHIPPED["KV260"], bad)
    (bad / "manifest.json.sig").unlink()
    r = _run("install", str(bad), "--store", str(tmp_path / "s"), "--trust", str(DEV_PUB))
    assert r.returncode == 2 and "unsigned bundle" in r.stderr and "Traceback" not in r.stderr
    r = _run("serve", "--store", str(tmp_path / "s"), "--tcp", "nonsense")
    assert r.returncode == 2 and "expected HOST:PORT" in r.stderr


def test_the_development_key_needs_an_explicit_flag(tmp_path):
    store = tmp_path / "store"
    r = subprocess.run(
        [sys.executable, "-m", "qdev.device", "trust", str(DEV_PUB), "--store", str(store)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "development key" in r.stderr and "--dev-key" in r.stderr
    assert not list((store / "trusted").glob("*.pub"))
    r = _run(
        "install",
        str(SHIPPED["KV260"]),
        "--store",
        str(store),
        "--trust",
        str(DEV_PUB),
        "--backend",
        "software",
    )
    assert r.returncode == 0 and "WARNING: --dev-key" in r.stderr
    info = json.loads(_run("info", "--store", str(store)).stdout)
    assert info["dev_key"] is True and "development key" in info["warning"]
    # started without the flag, the same store no longer trusts it: the bundle it signed is not used
    r = subprocess.run(
        [sys.executable, "-m", "qdev.device", "info", "--store", str(store)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    info = json.loads(r.stdout)
    assert info["bundle_id"] is None and info["degraded"] and info["dev_key"] is False


def test_board_is_a_checked_choice(tmp_path):
    """`serve --board KV-260` is refused at once with the choices (it used to fail only at flash);
    any case of a real name is taken as the board's own spelling."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "qdev.device",
            "serve",
            "--board",
            "KV-260",
            "--store",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "unknown board 'KV-260'" in r.stderr and "Pynq-Z2" in r.stderr
    r = _run("info", "--board", "kv260", "--store", str(tmp_path / "s2"))
    assert r.returncode == 0 and json.loads(r.stdout)["board"] == "KV260"


def test_serve_on_ipv6_loopback(tmp_path):
    """`--tcp [::1]:0` serves on the IPv6 loopback (it could not be given before) and a host
    reaches it as tcp://[::1]:PORT."""
    import socket as _socket

    if not _socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        _socket.create_server(("::1", 0), family=_socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    from qdev.core.link import open_link, parse_tcp
    from qdev.core.protocol import MsgType

    assert parse_tcp("tcp://[::1]:7968") == ("::1", 7968) and parse_tcp("[::1]") is None
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qdev.device",
            "serve",
            "--store",
            str(tmp_path / "s"),
            "--tcp",
            "[::1]:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = p.stdout.readline().strip()
        assert line.startswith("listening on tcp://[::1]:"), line
        from qdev.core.link import Channel

        ch = Channel(open_link(line.split("listening on ")[1]))
        ch.send(MsgType.HELLO, {"client": "t", "protocol": 2})
        assert ch.recv(10.0).type == MsgType.HELLO_ACK
        ch.close()
    finally:
        p.terminate()
        p.wait(10)


def test_trust_and_open_failures_of_the_store_are_one_line(tmp_path):
    """`trust` into a store that cannot take the file, and any command on a store whose folders
    cannot be made, end with one `qdev-device:` line and exit 2 (they were raw OSError
    tracebacks)."""
    store = tmp_path / "s"
    (store / "trusted" / "qdev-dev.pub").mkdir(
        parents=True
    )  # the copy's destination cannot be written
    r = _run("trust", str(DEV_PUB), "--store", str(store), "--dev-key")
    assert (
        r.returncode == 2 and "Traceback" not in r.stderr and "cannot add qdev-dev.pub" in r.stderr
    ), r.stderr
    bad = tmp_path / "b"
    bad.mkdir()
    (bad / "trusted").write_text("a file where a folder must be")
    r = _run("info", "--store", str(bad))
    assert (
        r.returncode == 2 and "Traceback" not in r.stderr and "cannot open the store" in r.stderr
    ), r.stderr


def test_a_probe_the_board_cannot_read_is_refused_before_listening(tmp_path):
    """`serve --probe` used to print `listening on tcp://...` and only then fail on the probe."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "qdev.device",
            "serve",
            "--store",
            str(tmp_path / "s"),
            "--tcp",
            "0",
            "--probe",
            str(tmp_path / "no-such.mp4"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "listening" not in r.stdout and "--probe" in r.stderr


def test_the_board_environment_reads_video_and_dicom_probes():
    """OpenCV (headless) and pydicom are in the board's requirements: the README's
    `serve --probe video:0` and DICOM cines need them on the board, not only on the host."""
    import cv2  # noqa: F401
    import pydicom  # noqa: F401


def test_each_subcommand_lists_only_its_own_options():
    """`trust`, `identity` and `pair` listed --board/--backend/--power/--threads they never use."""
    for cmd, absent in (("trust", "--backend"), ("identity", "--board"), ("pair", "--threads")):
        r = subprocess.run(
            [sys.executable, "-m", "qdev.device", cmd, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0 and "--store" in r.stdout and absent not in r.stdout, (
            cmd,
            r.stdout,
        )
    r = subprocess.run(
        [sys.executable, "-m", "qdev.device", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "--backend" in r.stdout and "default auto" in r.stdout
