"""OpenIGTLink framing for qdev: bounded, verified reading and the IMAGE / STRING messages qdev
sends (protocol v2; v3 metadata for peers that speak it).

The message bodies are pyigtl's (``pyigtl.ImageMessage`` etc. pack and unpack the spec's IMAGE
layout); what pyigtl's own connection code does not do, and qdev needs from anything it reads
off a network, is done here, before pyigtl sees a byte of a body:

* the 58-byte header is checked first: a known header version (1: OpenIGTLink v1/v2, 2: v3 with
  extended header and metadata), a printable type and device name, and a body size under the
  caller's bound (pyigtl would allocate whatever a peer declares, up to 2^64 bytes);
* the body's CRC-64 (ECMA-182, as the spec) must match before it is decoded (pyigtl never checks);
* decoding errors of any kind (pyigtl raises struct.error, ValueError, KeyError,
  NotImplementedError for sub-volumes ...) become one :class:`IgtlError`;
* an IMAGE's declared size x components x scalar size must equal its pixel bytes.

Geometry: a 2-D frame of H rows and W columns goes out as an IMAGE of size (i, j, k) = (W, H, 1)
with the spacing on the diagonal of its IJK-to-world matrix (1 mm where the source gives none),
centred at the origin; the labelmap of the mask goes out in the same geometry, so that 3D
Slicer overlays the two.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from qdev.core.errors import QdevError

__all__ = [
    "HEADER_SIZE",
    "MAX_BODY",
    "IgtlError",
    "Header",
    "parse_header",
    "read_message",
    "decode",
    "encode_image",
    "encode_string",
    "crc64",
]

HEADER = struct.Struct("> H 12s 20s I I Q Q")
HEADER_SIZE = HEADER.size  # 58
MAX_BODY = 64 << 20  # a 4096 x 4096 RGB frame is 48 MiB; anything bigger is refused unread
_VERSIONS = (1, 2)
_PRINTABLE = set(range(0x20, 0x7F))


class IgtlError(QdevError):
    """A message that is malformed, oversized, fails its CRC or cannot be decoded."""

    def __init__(self, message: str, kind: str = "malformed") -> None:
        super().__init__(message)
        self.kind = kind  # malformed | oversized | crc | unsupported


def _crc_function():  # noqa: ANN202
    try:  # CRC-64/ECMA-182 with SIMD: ~7 us for a 640x480 frame where crcmod's table takes ~1 ms
        from fastcrc import crc64 as fast

        return fast.ecma_182
    except ImportError:
        from pyigtl.messages import CRC64

        return CRC64


_CRC: list = []  # the function, found on first use (importing this module needs neither library)


def crc64(data: bytes) -> int:
    """The OpenIGTLink body CRC: CRC-64/ECMA-182 (polynomial 0x42F0E1EBA9EA3693, no reflection,
    zero init and xor-out; pyigtl's definition), by fastcrc where installed, else pyigtl's
    crcmod."""
    if not _CRC:
        _CRC.append(_crc_function())
    return int(_CRC[0](data))


@dataclass(frozen=True)
class Header:
    version: int
    type: str
    device: str
    timestamp: float
    body_size: int
    crc: int


def _text(raw: bytes, what: str) -> str:
    s = raw.rstrip(b"\0")
    if any(c not in _PRINTABLE for c in s):
        raise IgtlError(f"OpenIGTLink {what} is not printable ASCII")
    return s.decode("ascii")


def parse_header(raw: bytes, max_body: int = MAX_BODY) -> Header:
    """Check and parse a 58-byte header (see the module doc).

    Raises:
        IgtlError: wrong size, unknown version, unprintable names, a body over ``max_body``.
    """
    if len(raw) != HEADER_SIZE:
        raise IgtlError(f"OpenIGTLink header of {len(raw)} bytes (58 expected)")
    version, typ, dev, sec, frac, size, crc = HEADER.unpack(raw)
    if version not in _VERSIONS:
        raise IgtlError(f"OpenIGTLink header version {version} (1 or 2 expected)")
    t = _text(typ, "message type")
    if not t:
        raise IgtlError("OpenIGTLink message without a type")
    if size > max_body:
        raise IgtlError(
            f"OpenIGTLink {t} body of {size} bytes is over the {max_body}-byte bound", "oversized"
        )
    return Header(version, t, _text(dev, "device name"), sec + frac / 2**32, int(size), int(crc))


def read_message(
    recv_exact: Callable[[int], bytes], max_body: int = MAX_BODY
) -> tuple[Header, bytes]:
    """Read one message with ``recv_exact(n)`` (which returns exactly n bytes or raises); the body
    is read only after the header passed, and returned only after its CRC did."""
    h = parse_header(recv_exact(HEADER_SIZE), max_body)
    body = recv_exact(h.body_size) if h.body_size else b""
    if crc64(body) != h.crc:
        raise IgtlError(f"OpenIGTLink {h.type} body fails its CRC-64", "crc")
    return h, body


def decode(h: Header, body: bytes):  # noqa: ANN201 - a pyigtl message
    """The pyigtl message of a verified header and body; IMAGE sizes are checked against the bytes.

    Raises:
        IgtlError: an unknown type (kind ``unsupported``) or a body that does not decode.
    """
    import pyigtl

    cls = {"IMAGE": pyigtl.ImageMessage, "STRING": pyigtl.StringMessage}.get(h.type)
    if cls is None:
        raise IgtlError(f"OpenIGTLink {h.type} messages are not read here", "unsupported")
    if h.type == "IMAGE":
        _check_image(h, body)
    msg = cls()
    fields = {
        "header_version": h.version,
        "message_type": h.type,
        "device_name": h.device,
        "timestamp": h.timestamp,
        "body_size": h.body_size,
    }
    try:
        msg.unpack(fields, body)
    except Exception as exc:  # pyigtl raises whatever the bytes trigger  # noqa: BLE001
        raise IgtlError(
            f"OpenIGTLink {h.type} does not decode ({exc.__class__.__name__}: {exc})"
        ) from None
    return msg


_SCALAR_BYTES = {2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 4, 10: 4, 11: 8}
_IMAGE_HEAD = 72  # IMAGE header: version, components, type, endian, coords, size, matrix, subvolume


def _check_image(h: Header, body: bytes) -> None:
    ext = meta = 0
    if h.version >= 2:
        if len(body) < 12:
            raise IgtlError("OpenIGTLink v3 IMAGE shorter than its extended header")
        ext, mh, mb, _ = struct.unpack("> H H I I", body[:12])
        meta = mh + mb
        if ext < 12 or ext + meta > len(body):
            raise IgtlError("OpenIGTLink v3 extended header does not fit the body")
    content = len(body) - ext - meta
    if content < _IMAGE_HEAD:
        raise IgtlError("OpenIGTLink IMAGE shorter than its image header")
    comps, scalar = body[ext + 2], body[ext + 3]
    si, sj, sk = struct.unpack("> H H H", body[ext + 6 : ext + 12])
    if scalar not in _SCALAR_BYTES or comps < 1:
        raise IgtlError(
            f"OpenIGTLink IMAGE of scalar type {scalar} and {comps} components", "unsupported"
        )
    want = si * sj * sk * comps * _SCALAR_BYTES[scalar]
    if want == 0 or want != content - _IMAGE_HEAD:
        raise IgtlError(
            f"OpenIGTLink IMAGE declares {si}x{sj}x{sk}x{comps} but carries "
            f"{content - _IMAGE_HEAD} pixel bytes"
        )


def _matrix(h: int, w: int, spacing: tuple[float, float] | None) -> np.ndarray:
    sy, sx = spacing if spacing else (1.0, 1.0)
    m = np.diag([sx, sy, 1.0, 1.0]).astype(np.float32)
    m[0, 3], m[1, 3] = -(w - 1) / 2.0 * sx, -(h - 1) / 2.0 * sy  # centred at the origin
    return m


_ASCII, _UTF8 = 3, 106  # IANA MIBenums of the metadata values' encodings


def _with_meta(msg, device: str, ts: float, meta: dict | None) -> bytes:  # noqa: ANN001
    """Frame a pyigtl message's content: header (and for v3 peers the extended header and the
    metadata), as the spec lays them out and as pyigtl's ``pack`` does, with :func:`crc64`."""
    content = msg._pack_content()
    if meta is None:
        version, body = 1, content
    else:  # a v3 peer: header version 2, extended header, metadata after the content
        version = 2
        mh, mb = [struct.pack("> H", len(meta))], []
        for k, v in meta.items():
            kb, vb = str(k).encode("utf-8"), str(v).encode("utf-8")
            enc = _ASCII if vb.isascii() else _UTF8  # as pyigtl: ASCII where it is
            mh.append(struct.pack("> H H I", len(kb), enc, len(vb)))
            mb.append(kb + vb)
        meta_h, meta_b = b"".join(mh), b"".join(mb)
        body = struct.pack("> H H I I", 12, len(meta_h), len(meta_b), 0) + content + meta_h + meta_b
    sec = int(ts)
    frac = int((ts - sec) * 2**32) & 0xFFFFFFFF
    head = HEADER.pack(
        version,
        msg.message_type.encode("ascii"),
        device[:20].encode("ascii"),
        sec,
        frac,
        len(body),
        crc64(body),
    )
    return head + body


def encode_image(
    image: np.ndarray,
    device: str,
    ts: float,
    spacing: tuple[float, float] | None = None,
    meta: dict | None = None,
) -> bytes:
    """An IMAGE message of a frame [H, W] or [H, W, C] (uint8 or uint16), ``spacing`` (row, column)
    in mm; with ``meta`` (v3 peers) in header version 2 with metadata."""
    import pyigtl

    a = np.ascontiguousarray(image)
    if a.ndim == 2:
        vox = a[None]
    elif a.ndim == 3:
        vox = a[None] if a.shape[2] > 1 else a[None, :, :, 0]
    else:
        raise IgtlError(f"an IMAGE of a {a.ndim}-D array")
    return _with_meta(
        pyigtl.ImageMessage(vox, ijk_to_world_matrix=_matrix(a.shape[0], a.shape[1], spacing)),
        device,
        ts,
        meta,
    )


def encode_string(text: str, device: str, ts: float, meta: dict | None = None) -> bytes:
    """A STRING message (UTF-8)."""
    import pyigtl

    return _with_meta(pyigtl.StringMessage(text), device, ts, meta)
