"""Mutually authenticated TLS 1.3 on the TCP link: a paired operator flashes and streams, a paired
viewer streams but may not flash, an unpaired host or one with another certificate gets a
handshake failure and nothing else."""

from __future__ import annotations

import re
from pathlib import Path
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
    r = subprocess.run(
        [sys.executable, "-m", "qdev.device", *args], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def _serve_tls(store):  # noqa: ANN001, ANN202
    """A TLS-only device on a free loopback port: (process, tls://127.0.0.1:PORT)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qdev.device",
            "serve",
            "--store",
            str(store),
            "--backend",
            "software",
            "--dev-key",
            "--tls",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    port = None
    for line in proc.stdout:
        m = re.search(r"tls://[\d.]+:\d+", line)
        port = m.group(0) if m else port
        if line.startswith("ready:"):
            break
    return proc, port


@pytest.fixture()
def tls_device(tmp_path, monkeypatch):
    from qdev.core.tls import make_identity

    monkeypatch.setenv("QDEV_HOME", str(tmp_path / "host"))
    store = tmp_path / "store"
    _qd(
        "install",
        str(SHIPPED["KV260"]),
        "--store",
        str(store),
        "--trust",
        str(DEV_PUB),
        "--backend",
        "software",
        "--dev-key",
    )
    _, host_cert = make_identity(tmp_path / "host" / "tls", "host", "test-host")
    device_cert = _qd("identity", "--store", str(store))
    proc, port = _serve_tls(store)
    yield {
        "store": store,
        "port": port,
        "host_cert": host_cert,
        "device_cert": device_cert,
        "tmp": tmp_path,
    }
    proc.terminate()
    proc.wait(10)


def _pin_device(env: dict) -> None:
    dst = env["tmp"] / "host" / "tls" / "devices"
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(env["device_cert"], dst / "board.pem")


def test_unpaired_host_gets_a_handshake_failure(tls_device):
    _pin_device(tls_device)  # the host trusts the device, but the device does not know the host
    with pytest.raises(
        LinkError, match="TLS handshake failed|closed by the peer|receive failed|send failed"
    ):
        connect(tls_device["port"], timeout=5.0).info()


def test_operator_flashes_and_streams_viewer_only_streams(tls_device):
    _pin_device(tls_device)
    _qd(
        "pair",
        str(tls_device["host_cert"]),
        "--role",
        "viewer",
        "--store",
        str(tls_device["store"]),
    )
    px = np.load(SHIPPED["KV260"] / "golden_pixels.npy")
    c = connect(
        tls_device["port"], timeout=10.0
    )  # pairing is read per connection: no restart needed
    try:
        reps = list(c.stream(((i, px[i]) for i in range(len(px))), window=2))
        assert [r.error for r in reps] == [None] * len(px), c.info()
        with pytest.raises(DeviceError, match="needs the operator role") as err:
            c.rollback()
        from qdev.host.client import DeviceForbidden

        assert (
            isinstance(err.value, DeviceForbidden) and err.value.code == "forbidden"
        )  # typed, code kept
    finally:
        c.close()
    _qd(
        "pair",
        str(tls_device["host_cert"]),
        "--role",
        "operator",
        "--store",
        str(tls_device["store"]),
    )
    c = connect(tls_device["port"], timeout=10.0)
    try:
        assert c.flash(SHIPPED["KV260"], [DEV_PUB])["activated"]
    finally:
        c.close()


def test_a_host_with_another_certificate_is_refused(tls_device, tmp_path):
    from qdev.core.tls import make_identity

    _pin_device(tls_device)
    _qd(
        "pair",
        str(tls_device["host_cert"]),
        "--role",
        "operator",
        "--store",
        str(tls_device["store"]),
    )
    # same name, new key: a different certificate
    for f in (tmp_path / "host" / "tls").glob("host.*"):
        f.unlink()
    make_identity(tmp_path / "host" / "tls", "host", "test-host")
    with pytest.raises(LinkError):
        connect(tls_device["port"], timeout=5.0).info()


def test_a_device_with_another_certificate_is_refused(tls_device, tmp_path):
    from qdev.core.tls import make_identity

    _qd(
        "pair",
        str(tls_device["host_cert"]),
        "--role",
        "operator",
        "--store",
        str(tls_device["store"]),
    )
    _, other = make_identity(tmp_path / "impostor", "device", "qdev-device")
    dst = tmp_path / "host" / "tls" / "devices"
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(other, dst / "board.pem")  # the host pinned another device
    with pytest.raises(LinkError, match="TLS handshake failed"):
        connect(tls_device["port"], timeout=5.0)


def test_one_host_pairs_with_two_devices_and_each_says_the_role(tmp_path, monkeypatch):
    """Every device used to be CN=qdev-device: a host that pinned two of them failed the second
    handshake (CERTIFICATE_VERIFY_FAILED). Identities now have subjects of their own, pins are
    checked by fingerprint, and HELLO_ACK states the role the session got."""
    from qdev.core.tls import host_identity, pin_device

    monkeypatch.setenv("QDEV_HOME", str(tmp_path / "host"))
    _, host_cert = host_identity()
    procs = []
    try:
        ports = []
        for i, role in enumerate(("operator", "viewer")):
            store = tmp_path / f"store{i}"
            cert = _qd("identity", "--store", str(store))
            pin_device(Path(cert), f"board{i}")  # what `qdev pair CERT --name boardI` does
            _qd("pair", str(host_cert), "--role", role, "--store", str(store))
            proc, port = _serve_tls(store)
            procs.append(proc)
            ports.append((port, role))
        for port, role in ports:
            c = connect(port, timeout=10.0)
            try:
                assert c.hello["role"] == role and c.info()["device_version"]
            finally:
                c.close()
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


def test_two_hosts_of_one_hostname_keep_their_own_roles(tmp_path, monkeypatch):
    """A second host with the same hostname, paired as viewer, used to lock the first host (the
    operator) out (TLSV1_ALERT_UNKNOWN_CA: same subject). Each keeps its own role now."""
    from qdev.core.tls import host_identity, pin_device

    store = tmp_path / "store"
    device_cert = _qd("identity", "--store", str(store))
    homes = {}
    for who, role in (("a", "operator"), ("b", "viewer")):
        monkeypatch.setenv("QDEV_HOME", str(tmp_path / who))
        _, cert = host_identity()  # same hostname, own key and subject
        pin_device(Path(device_cert))
        _qd("pair", str(cert), "--role", role, "--store", str(store))
        homes[who] = role
    proc, port = _serve_tls(store)
    try:
        for who, role in homes.items():
            monkeypatch.setenv("QDEV_HOME", str(tmp_path / who))
            c = connect(port, timeout=10.0)
            try:
                assert c.hello["role"] == role
            finally:
                c.close()
    finally:
        proc.terminate()
        proc.wait(10)
