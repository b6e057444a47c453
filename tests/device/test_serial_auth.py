"""The serial link's authentication (protocol version 2, docs/PROTOCOL.md): a real
``qdev-device serve --serial`` on a pty, a host paired through the TLS identities, and a third
party on the wire that taps, replays, forges and speaks without pairing."""

from __future__ import annotations

import time

import numpy as np
import pytest

from qdev.core import tls
from qdev.core.link import Channel, LinkError, SerialLink
from qdev.core.protocol import SEALED, FrameParser, MsgType, encode
from qdev.core.link import pack_payload
from qdev.host.client import DeviceClient, DeviceError, connect
from qdev.host.local import LocalDevice
from tests.device.helpers import DEV_PUB, SHIPPED, golden_masks
from tests.linkfaults import PtyPair

pytestmark = pytest.mark.device_env

GOLD_PX = np.load(SHIPPED["KV260"] / "golden_pixels.npy")


@pytest.fixture()
def pty():
    p = PtyPair()
    yield p
    p.close()


def _frames(data: bytes) -> list:
    return FrameParser().feed(bytes(data))


def _stats_frames(c: DeviceClient) -> tuple[int, dict]:
    st = c.stats()
    return st["frames"], st["link"]


def test_paired_host_gets_sealed_frames_and_a_wiretap_sees_no_pixels(tmp_path, pty):
    with LocalDevice(tmp_path / "store", trusted=[DEV_PUB], serial=pty.dev_path, tcp=False):
        c = connect(pty.host_path, timeout=20.0)
        try:
            assert c.hello["auth"]["role"] == "operator" and c.device_name == "local-store"
            assert c.flash(SHIPPED["KV260"], [DEV_PUB])["activated"]
            pty.record = True
            rep = c.infer(7, GOLD_PX[1])
            pty.record = False
        finally:
            c.close()
    assert np.array_equal(rep.mask.reshape(-1), golden_masks(SHIPPED["KV260"])[1].reshape(-1))
    sent, got = _frames(pty.tapped["to_device"]), _frames(pty.tapped["to_host"])
    assert sent and got and all(f.type & SEALED for f in sent + got)
    # what crossed the wire holds neither the frame's pixels nor the mask in the clear
    assert GOLD_PX[1].tobytes()[:64] not in bytes(pty.tapped["to_device"])
    assert np.packbits(rep.mask.reshape(-1)).tobytes()[:64] not in bytes(pty.tapped["to_host"])


def test_replayed_and_forged_serial_frames_are_dropped_and_counted(tmp_path, pty):
    with LocalDevice(tmp_path / "store", trusted=[DEV_PUB], serial=pty.dev_path, tcp=False):
        c = connect(pty.host_path, timeout=20.0)
        try:
            assert c.flash(SHIPPED["KV260"], [DEV_PUB])["activated"]
            pty.record = True
            c.infer(1, GOLD_PX[0])
            pty.record = False
            recorded = bytes(pty.tapped["to_device"])
            n0, link0 = _stats_frames(c)
            # 1. the same sealed INFER again, in the same session: the replay counter refuses it
            pty.inject_to_device(recorded)
            time.sleep(0.5)
            n1, link1 = _stats_frames(c)
            assert n1 == n0 and link1["replayed"] == link0["replayed"] + 1
            # 2. a forged frame: the sealed payload altered, both CRCs made right again
            fr = _frames(recorded)[0]
            bad = bytearray(fr.payload)
            bad[5] ^= 0x40
            pty.inject_to_device(encode(fr.type, fr.seq + 1000, bytes(bad)))
            time.sleep(0.5)
            n2, link2 = _stats_frames(c)
            assert n2 == n1 and link2["auth_failed"] == link1["auth_failed"] + 1
        finally:
            c.close()
        # 3. a new session (new nonces): the old recording is worthless
        c = connect(pty.host_path, timeout=20.0)
        try:
            pty.inject_to_device(recorded)
            time.sleep(0.5)
            n3, link3 = _stats_frames(c)
            assert n3 == n2  # no frame was run
            assert link3["auth_failed"] >= 1
            assert c.infer(2, GOLD_PX[2]).error is None  # the real host is unaffected
        finally:
            c.close()


def test_plain_frames_on_an_authenticated_session_are_refused(tmp_path, pty):
    with LocalDevice(tmp_path / "store", trusted=[DEV_PUB], serial=pty.dev_path, tcp=False):
        c = connect(pty.host_path, timeout=20.0)
        try:
            c.flash(SHIPPED["KV260"], [DEV_PUB])
            before = c.info()["store"]
            # a third party speaks plain protocol 2 on the same wire: ROLLBACK and WATCH
            pty.record = True
            pty.inject_to_device(encode(MsgType.ROLLBACK, 900, pack_payload({})))
            pty.inject_to_device(encode(MsgType.WATCH, 901, pack_payload({})))
            time.sleep(0.8)
            pty.record = False
            st = c.stats()
            assert st["link"]["unauthenticated"] == 2
            after = c.info()["store"]
        finally:
            c.close()
    replies = [f for f in _frames(pty.tapped["to_host"]) if not f.type & SEALED]
    assert {f.type for f in replies} == {MsgType.ERROR}  # refusals in the clear; nothing else
    assert all(b"unauthenticated" in f.payload for f in replies)
    assert after == before  # the ROLLBACK did not run
    assert all(f.type & ~SEALED != MsgType.LIVE for f in _frames(pty.tapped["to_host"]))  # nor the WATCH


def test_unpaired_host_is_refused_and_watches_nothing(tmp_path, pty):
    store = tmp_path / "store"
    with LocalDevice(store, trusted=[DEV_PUB], serial=pty.dev_path, tcp=False, pair=False):
        # the host has pinned this device, but the device has not paired the host
        tls.pin_device(tls.device_identity(store)[1], "dev")
        with pytest.raises(DeviceError, match="not paired"):
            connect(pty.host_path, timeout=10.0)
        # a peer that does not even try: plain HELLO, then WATCH
        ch = Channel(SerialLink(pty.host_path))
        try:
            ch.send(MsgType.HELLO, {"client": "intruder", "protocol": 2})
            r = ch.recv(5.0)
            assert r.type == MsgType.ERROR and r.meta["code"] == "unpaired"
            ch.send(MsgType.WATCH, {})
            r = ch.recv(5.0)
            assert r.type == MsgType.ERROR and r.meta["code"] == "no_hello"
            with pytest.raises(LinkError):  # and no LIVE push follows
                ch.recv(1.0)
        finally:
            ch.close()


def test_version_1_peers_get_a_clear_refusal(tmp_path, pty):
    with LocalDevice(tmp_path / "store", trusted=[DEV_PUB], serial=pty.dev_path, tcp=False):
        link = SerialLink(pty.host_path)
        try:
            p, frames = FrameParser(), []
            for _ in range(3):  # as any host does: bytes sent just after open may be flushed
                link.write(encode(MsgType.HELLO, 0, pack_payload({"client": "qdev 0.x"}), version=1))
                t0 = time.monotonic()
                while not frames and time.monotonic() - t0 < 2:
                    frames = p.feed(link.read(0.5))
                if frames:
                    break
        finally:
            link.close()
    f = frames[0]
    assert f.version == 1 and f.type == MsgType.ERROR
    assert b"protocol_version" in f.payload and b"speaks qdev protocol 2" in f.payload


def test_host_refuses_a_version_1_device():
    import socket

    from qdev.core.link import SocketLink

    srv = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(srv.getsockname())
    b, _ = srv.accept()
    srv.close()
    c = DeviceClient(SocketLink(a), timeout=5.0)
    try:
        seq = c.ch.send(MsgType.HELLO, {"client": "qdev", "protocol": 2})
        b.sendall(encode(MsgType.HELLO_ACK, 0, pack_payload({"re": seq, "protocol": 1}), version=1))
        with pytest.raises(LinkError, match="speaks qdev protocol 1"):
            c._wait(seq, 5.0)
    finally:
        c.close()
        b.close()
