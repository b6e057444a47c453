"""A strict reader of the plain tar archives qdev packs its bundles into: POSIX ustar headers of
regular files, nothing else. It exists so that no byte of an unverified archive reaches
CPython's ``tarfile`` header parsing (CVE-2024-6232: a crafted PAX header made its regular
expression run for minutes on the device). Every field is read at its fixed offset with its
fixed width; a checksum mismatch, a non-octal number, a name that is not plain printable ASCII,
or any member that is not a regular file (PAX/GNU extension headers, links, devices, sparse
files) is refused with :class:`TarError` naming it. Work per member is bounded by the 512-byte
header; sizes are bounded by the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["TarError", "TarMember", "members", "BLOCK"]

BLOCK = 512
_NAME_MAX = 255
_TYPES_REGULAR = (b"0", b"\0")


class TarError(ValueError):
    """Not a tar archive qdev accepts."""


@dataclass(frozen=True)
class TarMember:
    name: str
    size: int


def _octal(field: bytes, what: str) -> int:
    s = field.rstrip(b"\0 ").lstrip(b" ")
    if not s or len(s) > 11 or any(c not in b"01234567" for c in s):
        raise TarError(f"tar header: {what} is not an octal number")
    return int(s, 8)


def _text(field: bytes, what: str) -> str:
    s = field.split(b"\0", 1)[0]
    if any(c < 0x20 or c > 0x7E for c in s):
        raise TarError(f"tar header: {what} is not plain ASCII")
    return s.decode("ascii")


def _header(block: bytes) -> TarMember:
    want = _octal(block[148:156], "checksum")
    got = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
    if want != got:
        raise TarError("tar header: checksum mismatch (not a tar archive, or a damaged one)")
    kind = block[156:157]
    name = _text(block[0:100], "name")
    if block[257:262] == b"ustar":
        prefix = _text(block[345:500], "name prefix")
        name = f"{prefix}/{name}" if prefix else name
    if kind not in _TYPES_REGULAR:
        shown = name if len(name) <= 80 else name[:80] + "..."
        raise TarError(
            f"tar member {shown!r}: type {kind!r} is not a plain file "
            "(links, devices and PAX/GNU extension headers are refused)"
        )
    if not name or len(name) > _NAME_MAX:
        raise TarError("tar member with an empty or over-long name")
    return TarMember(name, _octal(block[124:136], f"size of {name!r}"))


def members(fh: BinaryIO) -> Iterator[TarMember]:
    """The archive's members in order. After each one is yielded the caller reads exactly its
    ``size`` bytes from ``fh`` (or fewer: the rest and the padding are skipped here)."""
    while True:
        block = fh.read(BLOCK)
        if len(block) < BLOCK:
            raise TarError("tar archive truncated (no end-of-archive blocks)")
        if block == bytes(BLOCK):
            return
        m = _header(block)
        start = fh.tell()
        yield m
        padded = -(-m.size // BLOCK) * BLOCK
        fh.seek(start + padded)
