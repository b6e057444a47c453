"""Checks of what a peer sends, before any of it is used: the meta's size and nesting depth
(before JSON parsing), and each request type's fields (type, range, finiteness, length).

A request that fails gets ``ERROR code=bad_request`` naming the field; nothing of it reaches
the store or the accelerator. The limits are far above what a real host sends (a FLASH_BEGIN
meta is ~100 bytes) and far below what could hurt the device.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from qdev.core.errors import QdevError

__all__ = [
    "BadRequest",
    "Field",
    "check_meta_bytes",
    "check_fields",
    "MAX_META_BYTES",
    "MAX_META_DEPTH",
]

MAX_META_BYTES = 64 << 10
MAX_META_DEPTH = 8
MAX_STR = 256


class BadRequest(QdevError):
    """A request whose meta is unusable; ``field`` names the culprit (or ``meta``)."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field


def check_meta_bytes(raw: bytes) -> None:
    """Size and nesting depth of a JSON meta, checked on the bytes (json.loads would recurse
    once per level and raise RecursionError on a deeply nested document)."""
    if len(raw) > MAX_META_BYTES:
        raise BadRequest("meta", f"{len(raw)} bytes of JSON, the limit is {MAX_META_BYTES}")
    depth, in_str, esc = 0, False, False
    for b in raw:
        if in_str:
            if esc:
                esc = False
            elif b == 0x5C:  # backslash
                esc = True
            elif b == 0x22:  # quote
                in_str = False
        elif b == 0x22:
            in_str = True
        elif b in (0x7B, 0x5B):  # { [
            depth += 1
            if depth > MAX_META_DEPTH:
                raise BadRequest("meta", f"nested deeper than {MAX_META_DEPTH} levels")
        elif b in (0x7D, 0x5D):
            depth -= 1


@dataclass(frozen=True)
class Field:
    """One meta field: ``kind`` int | float | str | bool; numbers within [lo, hi]; strings of at
    most ``hi`` characters matching ``pattern``."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    pattern: str | None = None
    required: bool = True


def _check(name: str, spec: Field, v: object) -> None:
    if spec.kind == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            raise BadRequest(name, f"must be an integer, not {_show(v)}")
    elif spec.kind == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise BadRequest(name, f"must be a finite number, not {_show(v)}")
    elif spec.kind == "str":
        if not isinstance(v, str):
            raise BadRequest(name, f"must be a string, not {_show(v)}")
        if len(v) > (spec.hi or MAX_STR):
            raise BadRequest(name, f"longer than {int(spec.hi or MAX_STR)} characters")
        if spec.pattern and not re.fullmatch(spec.pattern, v):
            raise BadRequest(name, f"{_show(v)} is not of the form {spec.pattern}")
        return
    elif spec.kind == "bool":
        if not isinstance(v, bool):
            raise BadRequest(name, f"must be true or false, not {_show(v)}")
        return
    if spec.lo is not None and v < spec.lo or spec.hi is not None and v > spec.hi:
        raise BadRequest(name, f"{v} is outside [{spec.lo:g}, {spec.hi:g}]")


def _show(v: object) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def check_fields(meta: dict, spec: dict[str, Field]) -> None:
    """Every field of ``spec`` present (if required) and valid; other fields are ignored."""
    for name, f in spec.items():
        if name not in meta:
            if f.required:
                raise BadRequest(name, "missing")
            continue
        _check(name, f, meta[name])
