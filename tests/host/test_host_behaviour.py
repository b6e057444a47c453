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
    traceback; now one line names the extra to install, exit 2. Other missing modules still raise."""
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
