"""Safe boot and a self-healing store: a damaged active bundle or state.json never stops
``qdev-device serve``; it falls back to the previous bundle when that one verifies and passes
its self-test, else serves with no bundle, says ``degraded`` and why, and can be flashed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.device.helpers import DEV_PUB, SHIPPED, copy_bundle, make_key, resign

pytestmark = pytest.mark.device_env


def _install(store, bundle, *trust) -> dict:  # noqa: ANN001
    args = [
        sys.executable,
        "-m",
        "qdev.device",
        "install",
        str(bundle),
        "--store",
        str(store),
        "--backend",
        "software",
        "--dev-key",
    ]
    for k in trust:
        args += ["--trust", str(k)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _two_bundles(tmp_path):  # noqa: ANN202
    """A store with the shipped bundle as previous and a re-signed copy (another id) as active."""
    store = tmp_path / "store"
    key, pub = make_key(tmp_path)
    first = _install(store, SHIPPED["KV260"], DEV_PUB, pub)
    second = resign(copy_bundle(tmp_path / "b2"), key, run_id="second")
    res = _install(store, second, DEV_PUB, pub)
    state = json.loads((store / "state.json").read_text())
    assert (
        res["activated"]
        and state["active"] == res["bundle_id"]
        and state["previous"] == first["bundle_id"]
    )
    return store, first["bundle_id"], res["bundle_id"]


def _flip_byte(path) -> None:  # noqa: ANN001
    b = bytearray(path.read_bytes())
    b[len(b) // 2] ^= 0x01
    path.write_bytes(bytes(b))


def _serve(store, serial=None):  # noqa: ANN001, ANN202
    from qdev.host.local import LocalDevice

    return LocalDevice(store, trusted=[], serial=serial, tcp=serial is None, extra=["--dev-key"])


def test_damaged_active_bundle_falls_back_to_the_previous(tmp_path):
    from qdev.host.client import connect

    store, first, second = _two_bundles(tmp_path)
    _flip_byte(store / "bundles" / second / "intmodel.npz")
    with _serve(store) as dev:
        c = connect(dev.port)
        try:
            hello, info = c.hello, c.info()
            assert hello["degraded"] and info["degraded"] and info["bundle_id"] == first
            assert any(second in why and "intmodel.npz" in why for why in info["degraded_reasons"])
            px = np.load(SHIPPED["KV260"] / "golden_pixels.npy")
            reps = list(c.stream(((i, px[i]) for i in range(len(px))), window=2))
            assert all(r.error is None for r in reps)
        finally:
            c.close()


def test_both_damaged_serves_with_no_bundle_and_can_be_flashed(tmp_path):
    from qdev.host.client import connect

    store, first, second = _two_bundles(tmp_path)
    _flip_byte(store / "bundles" / second / "intmodel.npz")
    _flip_byte(store / "bundles" / first / "golden_codes.npy")
    with _serve(store) as dev:
        c = connect(dev.port)
        try:
            info = c.info()
            assert info["degraded"] and info["bundle_id"] is None and info["backend"] is None
            reasons = info["degraded_reasons"]
            assert (
                len(reasons) == 3
                and "active bundle" in reasons[0]
                and "previous bundle" in reasons[1]
            )
            assert "serving with no bundle" in reasons[2]
            # the shipped bundle installs again over the link, and the device is healthy
            c2_res = c.flash(SHIPPED["KV260"], [DEV_PUB])
            assert c2_res["activated"] and c2_res["self_test"]["ok"]
            info = c.info()
            assert not info["degraded"] and info["bundle_id"] == c2_res["bundle_id"]
        finally:
            c.close()


def test_corrupt_state_json_is_moved_aside_and_a_bundle_can_be_activated(tmp_path):
    from qdev.host.client import connect

    store, first, second = _two_bundles(tmp_path)
    (store / "state.json").write_text('{"active": "' + second[:5])  # torn by a damaged disk
    with _serve(store) as dev:
        c = connect(dev.port)
        try:
            info = c.info()
            assert info["degraded"] and info["bundle_id"] is None
            assert "corrupted" in info["degraded_reasons"][0]
            assert set(info["store"]["installed"]) == {first, second}  # nothing was thrown away
            res = c.activate(second)
            assert res["activated"] and c.info()["bundle_id"] == second and not c.info()["degraded"]
        finally:
            c.close()
    assert list(store.glob("state.json.corrupt-*"))


def test_damaged_active_bundle_boot_over_the_serial_link(tmp_path):
    from qdev.host.client import connect
    from tests.linkfaults import PtyPair

    store, first, second = _two_bundles(tmp_path)
    _flip_byte(store / "bundles" / second / "manifest.json")
    pty = PtyPair()
    try:
        with _serve(store, serial=pty.dev_path):
            c = connect(pty.host_path, timeout=30.0)
            try:
                info = c.info()
                assert info["degraded"] and info["bundle_id"] == first
                px = np.load(SHIPPED["KV260"] / "golden_pixels.npy")
                rep = c.infer(0, px[0])
                assert rep.error is None and rep.meta["bundle_id"] == first
            finally:
                c.close()
    finally:
        pty.close()


def test_stale_uploads_and_staging_are_cleaned_at_start(tmp_path):
    from qdev.device.store import STALE_UPLOAD_S, BundleStore

    store = tmp_path / "s"
    BundleStore(store)
    stale, fresh = (
        store / "incoming" / ("a" * 64 + ".part"),
        store / "incoming" / ("b" * 64 + ".part"),
    )
    stale.write_bytes(b"x" * 10)
    fresh.write_bytes(b"y" * 10)
    old = time.time() - STALE_UPLOAD_S - 5
    os.utime(stale, (old, old))
    (store / "bundles" / ".staging-dead").mkdir()
    s = BundleStore(store)
    assert not stale.exists() and fresh.exists()  # a recent upload still resumes
    assert not (store / "bundles" / ".staging-dead").exists()
    assert any("stale upload" in r for r in s.recovered)


@pytest.mark.parametrize(
    "content",
    [
        "null",
        "[]",
        "5",
        '"x"',
        '{"active": 5}',
        '{"active": "zz"}',
        '{"active": "../../etc"}',
        '{"previous": {}}',
        '{"max_version": -1}',
        '{"max_version": true}',
        '{"active": null, "evil": 1}',
    ],
    ids=[
        "null",
        "list",
        "number",
        "string",
        "active-int",
        "active-not-hex",
        "active-path",
        "previous-object",
        "version-negative",
        "version-bool",
        "unknown-field",
    ],
)
def test_state_json_of_any_wrong_shape_is_moved_aside(tmp_path, content):
    """Valid JSON of the wrong shape used to stop `serve` with a traceback (null, [], 5,
    {"active": 5}) or start it unable to answer HELLO ({"active": "zz"}): now every one is moved
    aside like a torn file, the store opens with no bundle active and says why."""
    from qdev.device.store import BundleStore

    root = tmp_path / "store"
    BundleStore(root)
    (root / "state.json").write_text(content)
    s = BundleStore(root)
    assert s.state() == {"active": None, "previous": None}
    assert len(s.recovered) == 1 and "corrupted" in s.recovered[0]
    assert len(list(root.glob("state.json.corrupt-*"))) == 1


def test_a_wrong_shape_state_boots_degraded_and_answers(tmp_path):
    from qdev.host.client import connect

    store, first, second = _two_bundles(tmp_path)
    (store / "state.json").write_text('{"active": "zz"}')
    with _serve(store) as dev:
        c = connect(dev.port)
        try:
            assert c.hello["degraded"]
            info = c.info()
            assert (
                info["degraded"]
                and info["bundle_id"] is None
                and "corrupted" in info["degraded_reasons"][0]
            )
            assert c.activate(first)["activated"]
        finally:
            c.close()
