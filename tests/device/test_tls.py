"""Mutually authenticated TLS 1.3 on the TCP link: a paired operator flashes and streams, a paired
viewer streams but may not flash, an unpaired host or one with another certificate gets a
handshake failure and nothing else."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from qdev.core.link import LinkError
from qdev.host.client import DeviceError, connect
from tests.device.helpers import DEV_PUB, SHIPPED

pytestmark = pytest.mark.device_env


def _qd(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "qdev.device", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture()
def tls_device(tmp_path, monkeypatch):
    from qdev.core.tls import make_identity

    monkeypatch.setenv("QDEV_HOME", str(tmp_path / "host"))
    store = tmp_path / "store"
    _qd("install", str(SHIPPED["KV260"]), "--store", str(store), "--trust", str(DEV_PUB), "--backend", "software",
        "--dev-key")
    _, host_cert = make_identity(tmp_path / "host" / "tls", "host", "test-host")
    device_cert = _qd("identity", "--store", str(store))
    proc = subprocess.Popen([sys.executable, "-m", "qdev.device", "serve", "--store", str(store), "--backend",
                             "software", "--dev-key", "--tls", "127.0.0.1:0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    port = None
    for line in proc.stdout:
        m = re.search(r"tls://[\d.]+:\d+", line)
        port = m.group(0) if m else port
        if line.startswith("ready:"):
            break
    yield {"store": store, "port": port, "host_cert": host_cert, "device_cert": device_cert, "tmp": tmp_path}
    proc.terminate()
    proc.wait(10)


def _pin_device(env: dict) -> None:
    dst = env["tmp"] / "host" / "tls" / "devices"
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(env["device_cert"], dst / "board.pem")


def test_unpaired_host_gets_a_handshake_failure(tls_device):
    _pin_device(tls_device)  # the host trusts the device, but the device does not know the host
    with pytest.raises(LinkError, match="TLS handshake failed|closed by the peer|receive failed|send failed"):
        connect(tls_device["port"], timeout=5.0).info()


def test_operator_flashes_and_streams_viewer_only_streams(tls_device):
    _pin_device(tls_device)
    _qd("pair", str(tls_device["host_cert"]), "--role", "viewer", "--store", str(tls_device["store"]))
    px = np.load(SHIPPED["KV260"] / "golden_pixels.npy")
    c = connect(tls_device["port"], timeout=10.0)  # pairing is read per connection: no restart needed
    try:
        reps = list(c.stream(((i, px[i]) for i in range(len(px))), window=2))
        assert [r.error for r in reps] == [None] * len(px), c.info()
        with pytest.raises(DeviceError, match="needs the operator role"):
            c.rollback()
    finally:
        c.close()
    _qd("pair", str(tls_device["host_cert"]), "--role", "operator", "--store", str(tls_device["store"]))
    c = connect(tls_device["port"], timeout=10.0)
    try:
        assert c.flash(SHIPPED["KV260"], [DEV_PUB])["activated"]
    finally:
        c.close()


def test_a_host_with_another_certificate_is_refused(tls_device, tmp_path):
    from qdev.core.tls import make_identity

    _pin_device(tls_device)
    _qd("pair", str(tls_device["host_cert"]), "--role", "operator", "--store", str(tls_device["store"]))
    # same name, new key: a different certificate
    for f in (tmp_path / "host" / "tls").glob("host.*"):
        f.unlink()
    make_identity(tmp_path / "host" / "tls", "host", "test-host")
    with pytest.raises(LinkError):
        connect(tls_device["port"], timeout=5.0).info()


def test_a_device_with_another_certificate_is_refused(tls_device, tmp_path):
    from qdev.core.tls import make_identity

    _qd("pair", str(tls_device["host_cert"]), "--role", "operator", "--store", str(tls_device["store"]))
    _, other = make_identity(tmp_path / "impostor", "device", "qdev-device")
    dst = tmp_path / "host" / "tls" / "devices"
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(other, dst / "board.pem")  # the host pinned another device
    with pytest.raises(LinkError, match="TLS handshake failed"):
        connect(tls_device["port"], timeout=5.0)
