"""TLS 1.3 over the serial link (docs/PROTOCOL.md, :mod:`qdev.core.tlsserial`): a real
``qdev-device serve --serial`` on a pty, a host paired through the TLS identities, and a third
party on the wire that taps, replays, forges and speaks without pairing."""

from __future__ import annotations

import time

import numpy as np
import pytest

from qdev.core import tls
from qdev.core.link import Channel, LinkError, SerialLink, pack_payload
from qdev.core.protocol import FrameParser, MsgType, encode
from qdev.core.tlsserial import CID_BYTES
from qdev.host.client import DeviceClient, connect
from qdev.host.local import LocalDevice
from tests.device.helpers import DEV_PUB, SHIPPED, client_and_fake_device, golden_masks
from tests.linkfaults import PtyPair

pytestmark = pytest.mark.device_env

GOLD_PX = np.load(SHIPPED["KV260"] / "golden_pixels.npy")
CARRIER = (
    MsgType.TLS_RECORD,
    MsgType.TLS_ACK,
    MsgType.TLS_RESET,
)  # what TLS over serial puts on the wire


@pytest.fixture()
def pty():
    p = PtyPair(bytes_per_s=92160)  # 921600 baud, 8N1
    yield p
    p.close()


def _frames(data: bytes) -> list:
    return FrameParser().feed(bytes(data))


def _recv_plain(ch: Channel, timeout: float):  # noqa: ANN202
    """The next message that is not a carrier frame (what is left of a refused TLS connection
    may still be on the wire)."""
    end = time.monotonic() + timeout
    while True:
        m = ch.recv(max(0.01, end - time.monotonic()))
        if m.type not in CARRIER:
            return m


def _handshakes(c: DeviceClient) -> dict:
    return c.stats()["link"]["handshakes"]


def test_paired_host_gets_tls_and_a_wiretap_sees_only_carrier_frames(tmp_path, pty):
    with LocalDevice(tmp_path / "store", trusted=[DEV_PUB], serial=pty.dev_path, tcp=False):
        connect(pty.host_path, timeout=20.0).close()  # the device is up and serving
        pty.record = True
        t0 = time.monotonic()
        c = connect(pty.host_path, timeout=20.0)
        t_connect = time.monotonic() - t0
        try:
            assert c.hello["role"] == "operator" and c.device_name == "local-store"
            assert c.flash(SHIPPED["KV260"], [DEV_PUB])["activated"]
            rep = c.infer(7, GOLD_PX[1])
            st = c.stats()["link"]
        finally:
            c.close()
        pty.record = False
    assert np.array_equal(rep.mask.reshape(-1), golden_masks(SHIPPED["KV260"])[1].reshape(-1))
    sent, got = _frames(pty.tapped["to_device"]), _frames(pty.tapped["to_host"])
    assert sent and got and all(f.type in CARRIER for f in sent + got)
    assert st["tls"] == "TLS 1.3 over serial" and st["handshakes"]["completed"] == 2
    # what crossed the wire holds neither the frame's pixels nor the mask in the clear
    assert GOLD_PX[1].tobytes()[:64] not in bytes(pty.tapped["to_device"])
    assert np.packbits(rep.mask.reshape(-1)).tobytes()[:64] not in bytes(pty.tapped["to_host"])
    assert t_connect < 2.0  # TLS handshake + HELLO at 921600 baud


def test_a_replayed_session_or_hello_never_touches_the_live_one(tmp_path, pty):
    """Item 8 of the round-two attacks: a recording of a whole earlier session (its handshake,
    its INFER) and a replayed ClientHello alone, injected while the paired host's session runs:
    nothing of them runs, they die as failed handshakes, and the live session goes on."""
    with LocalDevice(tmp_path / "store", trusted=[DEV_PUB], serial=pty.dev_path, tcp=False):
        pty.record = True
        c = connect(pty.host_path, timeout=20.0)
        try:
            c.flash(SHIPPED["KV260"], [DEV_PUB])
            c.infer(1, GOLD_PX[0])
        finally:
            c.close()
        pty.record = False
        recorded = bytes(pty.tapped["to_device"])
        hello = next(
            f for f in _frames(recorded) if f.type == MsgType.TLS_RECORD
        )  # the ClientHello
        c = connect(pty.host_path, timeout=20.0)
        try:
            frames0, hs0 = c.stats()["frames"], _handshakes(c)
            pty.inject_to_device(encode(hello.type, hello.seq, hello.payload))
            time.sleep(0.5)
            assert c.infer(2, GOLD_PX[2]).error is None  # the live session is unaffected
            pty.inject_to_device(recorded)
            time.sleep(1.0)
            assert c.infer(3, GOLD_PX[3]).error is None
            frames1, hs1 = c.stats()["frames"], _handshakes(c)
        finally:
            c.close()
    assert frames1 == frames0 + 2  # only the live host's two frames ran
    assert hs1["completed"] == hs0["completed"]  # no second session came up


def test_a_forged_record_breaks_only_its_connection_and_runs_nothing(tmp_path, pty):
    """A third party alters a record of the live connection (CRCs made right again). Numbered
    past what the device expects, it is dropped by the carrier's ordering (nothing changes).
    Numbered as the next one, it reaches TLS, which refuses it: that connection ends (the wire
    can always be jammed: denial of service, stated), nothing is run from it, and the host's next
    request connects again and runs once."""
    with LocalDevice(tmp_path / "store", trusted=[DEV_PUB], serial=pty.dev_path, tcp=False):
        c = connect(pty.host_path, timeout=20.0)
        try:
            c.flash(SHIPPED["KV260"], [DEV_PUB])
            frames0 = c.stats()["frames"]
            pty.record = True
            c.infer(1, GOLD_PX[0])
            pty.record = False
            fr = [f for f in _frames(pty.tapped["to_device"]) if f.type == MsgType.TLS_RECORD][-1]
            bad = bytearray(fr.payload)
            bad[CID_BYTES + 8] ^= 0x40
            pty.inject_to_device(
                encode(fr.type, fr.seq + 1000, bytes(bad))
            )  # out of order: dropped
            time.sleep(0.5)
            assert c.infer(2, GOLD_PX[1]).error is None and c.ch.link.reconnects == 0
            nxt = c.ch.link.carrier._tx[c.ch.link.cid].next  # the seq the device expects next
            pty.inject_to_device(encode(fr.type, nxt, bytes(bad)))
            time.sleep(0.5)
            assert c.infer(3, GOLD_PX[2]).error is None  # on a new connection: the forged one ended
            assert c.ch.link.reconnects == 1
            st = c.stats()
        finally:
            c.close()
    assert (
        st["frames"] == frames0 + 3
    )  # the three real frames, once each; nothing from the forgeries
    assert st["link"]["handshakes"]["completed"] == 2


def test_plain_frames_get_a_refusal_in_the_clear_and_run_nothing(tmp_path, pty):
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
            after = c.info()["store"]
            assert c.infer(1, GOLD_PX[0]).error is None
        finally:
            c.close()
    replies = [f for f in _frames(pty.tapped["to_host"]) if f.type not in CARRIER]
    assert {f.type for f in replies} == {MsgType.ERROR}  # refusals in the clear; nothing else
    assert all(b"TLS only" in f.payload for f in replies) and len(replies) == 2
    assert after == before  # the ROLLBACK did not run


def test_unpaired_host_is_refused_in_the_handshake(tmp_path, pty):
    store = tmp_path / "store"
    with LocalDevice(store, trusted=[DEV_PUB], serial=pty.dev_path, tcp=False, pair=False):
        # the host has pinned this device, but the device has not paired the host
        tls.pin_device(tls.device_identity(store)[1], "dev")
        t0 = time.monotonic()
        with pytest.raises(LinkError, match="TLS handshake failed"):
            connect(pty.host_path, timeout=10.0)
        assert time.monotonic() - t0 < 5.0  # refused, not timed out
        # a peer that does not even try TLS: plain HELLO, then WATCH
        ch = Channel(SerialLink(pty.host_path))
        try:
            ch.send(MsgType.HELLO, {"client": "intruder", "protocol": 2})
            r = _recv_plain(ch, 5.0)
            assert r.type == MsgType.ERROR and r.meta["code"] == "unauthenticated"
            assert "TLS only" in r.meta["message"]
            ch.send(MsgType.WATCH, {})
            r = _recv_plain(ch, 5.0)
            assert r.type == MsgType.ERROR
            with pytest.raises(LinkError):  # and no LIVE push follows
                _recv_plain(ch, 1.0)
        finally:
            ch.close()


def test_version_1_peers_get_a_clear_refusal(tmp_path, pty):
    with LocalDevice(tmp_path / "store", trusted=[DEV_PUB], serial=pty.dev_path, tcp=False):
        link = SerialLink(pty.host_path)
        try:
            p, frames = FrameParser(), []
            for _ in range(3):  # as any host does: bytes sent just after open may be flushed
                link.write(
                    encode(MsgType.HELLO, 0, pack_payload({"client": "qdev 0.x"}), version=1)
                )
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
    with client_and_fake_device() as (c, dev):
        seq = c.ch.send(MsgType.HELLO, {"client": "qdev", "protocol": 2})
        dev.sendall(
            encode(MsgType.HELLO_ACK, 0, pack_payload({"re": seq, "protocol": 1}), version=1)
        )
        with pytest.raises(LinkError, match="speaks qdev protocol 1"):
            c._wait(seq, 5.0)
