"""Kill the device process at random points of a flash, many times: afterwards the old or the
new bundle is active and passes its self-test, never a broken one. Also: garbage, oversized and
truncated frames against a live server, and the host-first handshake."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time

import numpy as np
import pytest

from qdev.core.bundle import verify_bundle
from qdev.core.link import LinkError
from qdev.core.protocol import MsgType, encode
from qdev.device.runtime import DeviceRuntime, RuntimeConfig
from qdev.host.client import connect
from qdev.host.local import LocalDevice
from tests.device.helpers import DEV_PUB, SHIPPED, raw_socket, read_frames

pytestmark = pytest.mark.device_env

KILLS = int(os.environ.get("QDEV_FLASH_KILLS", "20"))


def _flash_in_thread(port: str, bundle, done: list) -> threading.Thread:  # noqa: ANN001
    def go() -> None:
        try:
            c = connect(port, timeout=20.0)
            done.append(c.flash(bundle, [DEV_PUB], chunk=16 << 10))
            c.close()
        except (LinkError, Exception) as exc:  # the device dies under it: expected
            done.append(exc)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def test_kill_during_flash_always_leaves_a_working_bundle(tmp_path):
    store = tmp_path / "store"
    boards = ["KV260", "ZCU104"]
    rng = random.Random(7)
    # how long an uninterrupted flash takes here, to spread the kills over all of it
    with LocalDevice(store, trusted=[DEV_PUB]) as dev:
        t0 = time.monotonic()
        done: list = []
        _flash_in_thread(dev.port, SHIPPED["KV260"], done).join(60)
        full = time.monotonic() - t0
        assert isinstance(done[0], dict) and done[0]["activated"]
    outcomes = {"old": 0, "new": 0}
    active_board = "KV260"
    for i in range(KILLS):
        target = boards[(boards.index(active_board) + 1) % 2]
        dev = LocalDevice(store, trusted=[DEV_PUB])
        dev.start()
        done = []
        th = _flash_in_thread(dev.port, SHIPPED[target], done)
        time.sleep(rng.uniform(0.0, full * 1.1))
        os.kill(dev.proc.pid, signal.SIGKILL)
        dev.proc.wait()
        th.join(30)
        # what does a fresh start find?
        rt = DeviceRuntime(
            RuntimeConfig(store=str(store), backend="software", power="estimate", dev_key=True)
        )
        vb = rt.store.active()
        assert vb is not None, f"kill {i}: no active bundle"
        verify_bundle(vb.path, [DEV_PUB])
        assert rt.self_test(vb.path, vb.manifest)["ok"], (
            f"kill {i}: active bundle fails its self-test"
        )
        now = vb.manifest["board"]
        outcomes["new" if now == target else "old"] += 1
        active_board = now
        leftovers = [p.name for p in (store / "bundles").iterdir() if p.name.startswith(".staging")]
        assert not leftovers
    assert sum(outcomes.values()) == KILLS
    print(f"flash kills: {outcomes}")


def test_server_survives_garbage_oversize_and_truncation(tmp_path):
    from qdev.core.link import pack_payload

    with LocalDevice(tmp_path / "store", trusted=[DEV_PUB]) as dev:
        s = raw_socket(dev.port)
        # before HELLO: refused politely
        s.sendall(encode(MsgType.INFO, 1, pack_payload({})))
        (f,) = read_frames(s, 1)
        assert f.type == MsgType.ERROR and b"HELLO" in f.payload
        # garbage, a header claiming 1 GiB, a truncated frame, a bit-flipped frame, then HELLO
        rng = np.random.default_rng(0)
        s.sendall(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
        big = bytearray(encode(MsgType.INFER, 2, b"x" * 10))
        big[8:12] = (1 << 30).to_bytes(4, "little")  # header CRC now wrong too: dropped either way
        s.sendall(bytes(big))
        s.sendall(encode(MsgType.INFO, 3, pack_payload({}))[:20])
        flipped = bytearray(encode(MsgType.INFO, 4, pack_payload({})))
        flipped[-6] ^= 0x10
        s.sendall(bytes(flipped))
        s.sendall(encode(MsgType.HELLO, 5, pack_payload({"client": "test"})))
        frames = read_frames(s, 1)
        assert [fr.type for fr in frames] == [MsgType.HELLO_ACK]
        assert json.loads(frames[0].payload[4:].decode())["re"] == 5
        # a malformed request gets an ERROR and the session goes on
        s.sendall(encode(MsgType.INFER, 6, pack_payload({"h": 128})))
        s.sendall(encode(MsgType.STATS, 7, pack_payload({})))
        a, b = read_frames(s, 2)
        assert a.type == MsgType.ERROR and b.type == MsgType.STATS
        stats = json.loads(b.payload[4:].decode())
        assert stats["link"]["discarded_bytes"] > 5000
        # an overflowing number gets a malformed-request ERROR, not a dead session
        s.sendall(encode(MsgType.FLASH_BEGIN, 9, pack_payload({"sha256": "0" * 64, "size": 1e999})))
        s.sendall(encode(MsgType.INFO, 10, pack_payload({})))
        a, b = read_frames(s, 2)
        err = json.loads(a.payload[4:].decode())
        assert (
            a.type == MsgType.ERROR
            and err["code"] == "bad_request"
            and "size: must be an integer" in err["message"]
        )
        assert b.type == MsgType.INFO_REPLY
        # disconnect mid-frame: the server keeps serving others
        s.sendall(encode(MsgType.INFO, 8, pack_payload({}))[:10])
        s.close()
        c = connect(dev.port)
        assert c.info()["device_version"]
        c.close()


def test_a_handler_bug_or_disk_error_gets_an_error_reply_and_the_session_goes_on(tmp_path, caplog):
    """In-process: a handler that raises anything gets ERROR internal (traceback in the device log),
    an OSError from the store gets ERROR storage, and the next request is served."""
    from qdev.core.link import Message
    from qdev.device.runtime import server

    sent = []

    class FakeChannel:
        max_payload = 1 << 20

        def send(self, mtype, meta, blob=b"", plain=False, version=2):  # noqa: ANN001, ANN202
            sent.append((mtype, meta))

    from qdev.device.runtime.service import Counters

    class Rt:
        counters = Counters()

        def info(self):  # noqa: ANN202
            return {"ok": True}

        def power(self):  # noqa: ANN202
            raise ZeroDivisionError("a bug")

        def rollback(self):  # noqa: ANN202
            raise OSError(28, "No space left on device")

    sess = server.Session.__new__(server.Session)
    sess.rt, sess.ch, sess.hub, sess.hello, sess.watch, sess.upload = (
        Rt(),
        FakeChannel(),
        None,
        True,
        None,
        None,
    )
    sess.role = "operator"
    sess.ch.link = type("L", (), {"name": "test"})()
    with caplog.at_level("ERROR", logger="qdev.device"):
        sess.handle(Message(MsgType.POWER, 1, {}, b""))
        sess.handle(Message(MsgType.ROLLBACK, 2, {}, b""))
        sess.handle(Message(MsgType.INFO, 3, {}, b""))
    codes = [(t, m.get("code")) for t, m in sent]
    assert codes == [
        (MsgType.ERROR, "internal"),
        (MsgType.ERROR, "storage"),
        (MsgType.INFO_REPLY, None),
    ]
    assert "No space left on device" in sent[1][1]["message"]
    assert "ZeroDivisionError" in caplog.text and "Traceback" in caplog.text
    assert Rt.counters.snapshot()["errors"] == 2
