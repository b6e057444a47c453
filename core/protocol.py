"""qdev link framing, version 2 (see docs/PROTOCOL.md): the byte-level layer both the device
runtime and the host speak over a serial port, a pty or TCP. numpy-free, stdlib only.

Frame (little-endian)::

    offset size field
    0      2    magic  b"QD"
    2      1    version (2; a version-1 frame is parsed only to refuse its sender clearly)
    3      1    type
    4      4    seq    (u32, per sender)
    8      4    length (u32, payload bytes, <= max_payload)
    12     4    hcrc   CRC32 of bytes 0..11
    16     n    payload
    16+n   4    crc    CRC32 of bytes 0..16+n-1

The header has its own CRC so that a corrupted length field is caught before the parser waits for
a payload that will never come. The parser resynchronises after garbage by scanning for the next
magic; a frame whose header or payload CRC fails is dropped and counted, never delivered.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum

__all__ = [
    "MAGIC",
    "VERSION",
    "SUPPORTED_VERSIONS",
    "HEADER",
    "MsgType",
    "Frame",
    "FrameParser",
    "encode",
    "ParserStats",
]

MAGIC = b"QD"
VERSION = 2
SUPPORTED_VERSIONS = (1, 2)  # parsed; only VERSION is served (a v1 peer gets a v1 ERROR saying so)
_HDR = struct.Struct("<2sBBII")
HEADER = _HDR.size + 4  # + header CRC
TRAILER = 4
DEFAULT_MAX_PAYLOAD = 16 << 20


class MsgType(IntEnum):
    """Message types of protocol version 2 (payload formats in docs/PROTOCOL.md)."""

    HELLO = 1
    HELLO_ACK = 2
    ERROR = 3
    INFO = 4
    INFO_REPLY = 5
    ECHO = 6
    ECHO_REPLY = 7
    INFER = 16
    INFER_REPLY = 17
    STREAM_FRAME = 18
    STREAM_RESULT = 19
    FLASH_BEGIN = 32
    FLASH_CHUNK = 33
    FLASH_END = 34
    FLASH_STATUS = 35
    ACTIVATE = 36
    ROLLBACK = 37
    STATS = 48
    POWER = 49
    WATCH = 50
    LIVE = 51
    TLS_RECORD = 64  # serial only: a carrier frame of the TLS stream (qdev.core.tlsserial)
    TLS_ACK = 65  # serial only: the carrier frames of a connection received so far (cumulative)
    TLS_RESET = 66  # serial only: no such connection (any more): start a new one


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes
    version: int = VERSION


def encode(
    msg_type: int,
    seq: int,
    payload: bytes = b"",
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    version: int = VERSION,
) -> bytes:
    """One frame as bytes.

    Raises:
        ValueError: payload over ``max_payload``, or type/seq out of range.
    """
    if len(payload) > max_payload:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the limit of {max_payload}")
    if not 0 <= msg_type < 256 or not 0 <= seq < 2**32:
        raise ValueError("type must fit in u8 and seq in u32")
    head = _HDR.pack(MAGIC, version, msg_type, seq, len(payload))
    head += struct.pack("<I", zlib.crc32(head))
    crc = zlib.crc32(payload, zlib.crc32(head))
    return b"".join((head, payload, struct.pack("<I", crc)))


@dataclass
class ParserStats:
    frames: int = 0
    discarded_bytes: int = 0
    header_crc_errors: int = 0
    payload_crc_errors: int = 0
    oversize: int = 0
    bad_version: int = 0
    expired: int = 0


@dataclass
class FrameParser:
    """Incremental, bounded frame parser: ``feed(bytes) -> [Frame, ...]``.

    Memory stays bounded by ``max_payload + HEADER + TRAILER`` plus one ``feed`` chunk.
    """

    max_payload: int = DEFAULT_MAX_PAYLOAD
    stats: ParserStats = field(default_factory=ParserStats)
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        out: list[Frame] = []
        mv = memoryview(buf)
        pos, n = 0, len(buf)
        try:
            while True:
                i = buf.find(MAGIC, pos)
                if i < 0:  # keep a trailing b"Q" that may start the next magic
                    keep = 1 if n > pos and buf[n - 1] == MAGIC[0] else 0
                    self.stats.discarded_bytes += n - pos - keep
                    pos = n - keep
                    break
                if i > pos:
                    self.stats.discarded_bytes += i - pos
                    pos = i
                if n - pos < HEADER:
                    break
                magic, version, mtype, seq, length = _HDR.unpack_from(buf, pos)
                (hcrc,) = struct.unpack_from("<I", buf, pos + _HDR.size)
                if zlib.crc32(mv[pos : pos + _HDR.size]) != hcrc:
                    self.stats.header_crc_errors += 1
                    pos = self._skip(pos)
                    continue
                if version not in SUPPORTED_VERSIONS:
                    self.stats.bad_version += 1
                    pos = self._skip(pos)
                    continue
                if length > self.max_payload:
                    self.stats.oversize += 1
                    pos = self._skip(pos)
                    continue
                total = HEADER + length + TRAILER
                if n - pos < total:
                    break
                (crc,) = struct.unpack_from("<I", buf, pos + HEADER + length)
                if zlib.crc32(mv[pos : pos + HEADER + length]) != crc:
                    self.stats.payload_crc_errors += 1
                    pos = self._skip(pos)
                    continue
                out.append(
                    Frame(mtype, seq, bytes(mv[pos + HEADER : pos + HEADER + length]), version)
                )
                self.stats.frames += 1
                pos += total
        finally:
            mv.release()
        if pos:
            del buf[:pos]  # one compaction per feed, not one per frame
        return out

    def expire(self) -> list[Frame]:
        """Give up on a buffered partial frame (its sender stopped mid-frame): drop its magic,
        count it, and rescan what follows (which may hold complete frames sent after it)."""
        if len(self._buf) < 2:
            return []
        self.stats.expired += 1
        self.stats.discarded_bytes += 2
        del self._buf[:2]
        return self.feed(b"")

    def _skip(self, pos: int) -> int:
        """Drop the magic of a bad frame and look for the next one."""
        self.stats.discarded_bytes += 2
        return pos + 2

    @property
    def buffered(self) -> int:
        return len(self._buf)
