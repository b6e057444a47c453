"""Host-side behaviour without a device: the file-source read-ahead of host/stream.py (frames in
order and complete, a failing source fails the session, an early stop stops the reader), the
client as a context manager, the energy wording, and the workstation-extras message."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from qdev.core.probe.sources import ProbeFrame
from qdev.host.stream import _Prefetch


class _Source:
    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at = n, fail_at

    def frames(self):  # noqa: ANN201
        for i in range(self.n):
            if i == self.fail_at:
                raise OSError("disk went away")
            img = np.full((20, 30), i, np.uint8)
            yield ProbeFrame(i, img, i / 30, time.time(), (img > 100).astype(np.uint8))


def test_prefetch_keeps_order_and_converts():
    p = _Prefetch(_Source(25), 16, 16, 4)
    got = []
    while (item := p.get()) is not None:
        fr, px, truth = item
        got.append(fr.index)
        assert px.shape == (16, 16) and int(px[0, 0]) == fr.index and truth.shape == (16, 16)
    assert got == list(range(25))


def test_prefetch_failure_reaches_the_consumer():
    p = _Prefetch(_Source(10, fail_at=3), 8, 8, 2)
    assert [p.get()[0].index for _ in range(3)] == [0, 1, 2]
    with pytest.raises(OSError, match="disk went away"):
        p.get()


def test_prefetch_stops_when_closed_early():
    p = _Prefetch(_Source(10_000), 8, 8, 2)
    p.get()
    p.close()
    p.t.join(timeout=2)
    assert not p.t.is_alive() and threading.active_count() >= 1


def test_device_client_is_a_context_manager():
    from qdev.host.client import DeviceClient

    closed = []

    class _Ch:
        def close(self) -> None:
            closed.append(True)

    c = DeviceClient.__new__(DeviceClient)
    c.ch = _Ch()
    with c as same:
        assert same is c
    assert closed == [True]


def test_energy_lines_say_what_they_describe():
    """A CPU backend's energy figure is this computer's time times the board's power: the terminal
    says so instead of a bare `[estimated]`."""
    from qdev.host.cli.device import energy_label

    for backend in ("software", "onnx"):
        s = energy_label(backend, "estimated", "KV260")
        assert "CPU time" in s and "KV260" in s and "no real system" in s
    assert energy_label("pynq", "measured", "KV260").startswith("measured on the device")


def test_a_workstation_command_on_a_host_only_install_names_the_extra():
    """`qdev train/export/compile` on `pip install qdev[host]` ended in a ModuleNotFoundError
    traceback; now one line names the extra to install, exit 2. Other missing modules still
    raise."""
    import click
    from click.testing import CliRunner

    from qdev.host.cli import QdevGroup

    @click.group(cls=QdevGroup)
    def g() -> None:
        pass

    @g.command("train")
    def train() -> None:
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    @g.command("other")
    def other() -> None:
        raise ModuleNotFoundError("No module named 'nosuch'", name="nosuch")

    r = CliRunner().invoke(g, ["train"])
    assert r.exit_code == 2 and "'qdev train' needs the workstation extras" in r.output
    assert "pip install 'qdev[workstation]'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(g, ["other"])
    assert isinstance(r.exception, ModuleNotFoundError)


def test_a_user_re_signs_a_shipped_bundle_and_a_device_trusting_only_their_key_installs_it(
    tmp_path,
):
    """Following "Deploy and measure" with one's own key (`qdev keys generate`, `qdev-device trust`)
    could not flash the shipped bundles (signed by the development key) nor re-sign them; now
    `qdev bundle sign` verifies the bundle and signs a copy with the user's key."""
    import json
    import subprocess
    import sys

    from click.testing import CliRunner

    from qdev import assets
    from qdev.host.cli import cli

    keys = tmp_path / "keys"
    r = CliRunner().invoke(cli, ["keys", "generate", "--out", str(keys)])
    assert r.exit_code == 0, r.output
    key = next(keys.glob("*.key"))
    pub = next(keys.glob("*.pub"))
    out = tmp_path / "mine"
    r = CliRunner().invoke(
        cli,
        [
            "bundle",
            "sign",
            str(assets.shipped_bundle("KV260")),
            "--key",
            str(key),
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert (out / "manifest.json").read_bytes() == (
        assets.shipped_bundle("KV260") / "manifest.json"
    ).read_bytes()
    r = CliRunner().invoke(cli, ["bundle", "verify", str(out), "--trusted", str(pub)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        cli, ["bundle", "verify", str(out)]
    )  # not by the development key any more
    assert r.exit_code == 2
    r = CliRunner().invoke(
        cli,
        [
            "bundle",
            "sign",
            str(assets.shipped_bundle("KV260")),
            "--key",
            str(key),
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 2 and "exists" in r.output  # nothing overwritten
    store = tmp_path / "store"
    qd = [sys.executable, "-m", "qdev.device"]
    assert (
        subprocess.run(
            [*qd, "trust", str(pub), "--store", str(store)], capture_output=True
        ).returncode
        == 0
    )
    r = subprocess.run(
        [*qd, "install", str(out), "--store", str(store), "--backend", "software"],
        capture_output=True,
        text=True,
        timeout=300,
    )  # no --dev-key: only the user's key
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["activated"]


def test_error_codes_become_typed_exceptions():
    from qdev.host.client import (
        DeviceError,
        DeviceForbidden,
        DeviceInternalError,
        DeviceRefused,
        DeviceRequestError,
        DeviceStorageError,
        device_error,
    )

    cases = {
        "bad_request": DeviceRequestError,
        "forbidden": DeviceForbidden,
        "unpaired": DeviceForbidden,
        "storage": DeviceStorageError,
        "internal": DeviceInternalError,
        "StoreError": DeviceRefused,
    }
    for code, cls in cases.items():
        e = device_error({"message": "m", "code": code})
        assert (
            type(e) is cls
            and isinstance(e, DeviceError)
            and e.code == code
            and str(e) == "device: m"
        )
