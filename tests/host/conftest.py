"""Fixtures of the host tests that need a running device."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def flashed_device(tmp_path_factory):
    """A device runtime in its own process on TCP loopback, the shipped KV260 bundle active."""
    from qdev.host.client import connect
    from qdev.host.local import LocalDevice, default_bundle, default_trusted

    with LocalDevice(tmp_path_factory.mktemp("dev") / "store") as dev:
        with connect(dev.port) as c:
            assert c.flash(default_bundle("KV260"), default_trusted())["activated"]
        yield dev
