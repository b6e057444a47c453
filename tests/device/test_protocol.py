"""Frame encoding/parsing: round trips, resync after garbage, CRC errors never delivered, bounded
lengths, and a property-based fuzz of the parser (runs in both environments)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdev.core.protocol import HEADER, Frame, FrameParser, MsgType, encode

pytestmark = pytest.mark.device_env


def test_round_trip_byte_by_byte():
    frames = [
        encode(MsgType.HELLO, 1, b"qdev"),
        encode(MsgType.INFER, 2, bytes(range(256)) * 64),
        encode(7, 2**32 - 1),
    ]
    p = FrameParser()
    got = []
    for b in b"".join(frames):
        got += p.feed(bytes([b]))
    assert got == [
        Frame(MsgType.HELLO, 1, b"qdev"),
        Frame(MsgType.INFER, 2, bytes(range(256)) * 64),
        Frame(7, 2**32 - 1, b""),
    ]
    assert p.buffered == 0 and p.stats.discarded_bytes == 0


def test_resync_after_garbage_and_partial_magic():
    p = FrameParser()
    data = (
        b"\x00\xffQQD garbage Q"
        + encode(MsgType.STATS, 9, b"x")
        + b"QD\x01"
        + encode(MsgType.STATS, 10, b"y")
    )
    got = p.feed(data)
    assert [f.seq for f in got] == [9, 10] and p.stats.discarded_bytes > 0


def test_bit_flip_in_payload_or_header_is_dropped_not_delivered():
    good = encode(MsgType.INFER, 5, b"pixels" * 100)
    for pos in (1, 4, 9, 13, HEADER + 3, len(good) - 2):
        bad = bytearray(good)
        bad[pos] ^= 0x10
        p = FrameParser()
        got = p.feed(bytes(bad) + encode(MsgType.INFER, 6, b"ok"))
        assert got == [Frame(MsgType.INFER, 6, b"ok")], pos


def test_oversized_length_is_refused_without_waiting():
    p = FrameParser(max_payload=1024)
    with pytest.raises(ValueError, match="exceeds the limit"):
        encode(MsgType.INFER, 1, bytes(2048), max_payload=1024)
    big = encode(MsgType.INFER, 1, bytes(2048))
    got = p.feed(big[:HEADER] + encode(MsgType.INFO, 2))
    assert got == [Frame(MsgType.INFO, 2, b"")] and p.stats.oversize == 1


def test_truncated_frame_waits_for_the_rest():
    f = encode(MsgType.INFER, 3, b"abc" * 50)
    p = FrameParser()
    assert p.feed(f[:-5]) == [] and p.buffered == len(f) - 5
    assert p.feed(f[-5:]) == [Frame(MsgType.INFER, 3, b"abc" * 50)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.builds(
                lambda t, s, b: encode(t, s, b),
                st.integers(0, 255),
                st.integers(0, 2**32 - 1),
                st.binary(max_size=300),
            ),
        ),
        max_size=12,
    ),
    st.integers(1, 97),
)
def test_fuzz_parser_never_crashes_and_only_delivers_valid_frames(chunks, step):
    data = b"".join(chunks)
    p = FrameParser(max_payload=4096)
    got = []
    for i in range(0, len(data), step):
        got += p.feed(data[i : i + step])
    for f in got:  # every delivered frame re-encodes to bytes that occur in the stream
        assert encode(f.type, f.seq, f.payload) in data
    assert p.buffered <= 4096 + HEADER + 4 + step


def test_a_frame_cut_off_mid_way_is_expired_and_the_next_one_delivered():
    """A sender killed mid-frame leaves a header promising more bytes than will ever come; the
    receiver gives up on it (Channel does so after 1 s without bytes) and finds what follows."""
    from qdev.core.protocol import FrameParser, encode

    p = FrameParser()
    cut = encode(18, 1, b"x" * 16384)[:5000]
    whole = encode(48, 2, b"{}")
    assert p.feed(cut + whole) == []  # still waiting for the 16 KiB the first header promised
    frames = p.expire()
    assert [(f.type, f.seq) for f in frames] == [(48, 2)] and p.stats.expired == 1


def test_channel_expires_a_stalled_partial_frame_over_a_real_socket():
    import socket

    from qdev.core.link import Channel, SocketLink, pack_payload
    from qdev.core.protocol import encode

    srv = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(srv.getsockname())
    b, _ = srv.accept()
    srv.close()
    ch = Channel(SocketLink(b, "tcp"), stall_s=0.3)
    a.sendall(
        encode(18, 1, pack_payload({}, b"x" * 16384))[:3000]
        + encode(48, 2, pack_payload({"ok": 1}))
    )
    msg = ch.recv(5.0)
    assert (msg.type, msg.meta) == (48, {"ok": 1})
    a.close()
    b.close()
