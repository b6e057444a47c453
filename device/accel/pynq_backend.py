"""The ``pynq`` backend: the bundle's bitstream on a Zynq board, driven the way FINN's generated
driver drives it (finn-plus-driver 1.6.1, ``overlays/dma.py``, platform ``zynq-iodma``):

* input and output IODMAs are AXI-lite blocks named ``idma0`` / ``odma0`` in the overlay;
* per run: output DMA first, then input DMA, each gets the buffer's physical address at
  0x10 (low) / 0x14 (high), the number of frames at 0x1C and ``ap_start`` (1) at 0x00;
* completion: bit 1 (``ap_done``) of the output DMA's 0x00; bit 2 (``ap_idle``) must be set
  before a start. FINN polls forever; here the wait has a timeout and reports a hung fabric.

Packing follows the io spec (``ishape_folded`` -> ``ishape_packed``): the innermost folded
dimension is packed to whole bytes, little-endian, element 0 in the lowest bits.

On a machine without a board this backend says so in ``probe`` and ``auto`` falls through to
the software backend. Estimate-only bundles (no ``.bit``/``.hwh``) are refused with the reason.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qdev.device.accel.backend import Accelerator, Backend, register_backend
from qdev.core.intmodel import dtype_range
from qdev.core.errors import QdevError, ToolchainError

__all__ = ["PynqAccelerator", "pack_innermost", "unpack_innermost", "bits_of"]

CTRL, ADDR_LO, ADDR_HI, COUNT = 0x00, 0x10, 0x14, 0x1C
AP_START, AP_DONE, AP_IDLE = 0x1, 0x2, 0x4


@dataclass(frozen=True)
class _Codec:
    """How one FINN data type travels over the DMA: ``bits`` per element, and the map between
    values and the unsigned codes packed (two's complement for signed types)."""

    bits: int
    signed: bool = False
    bipolar: bool = False
    frac_bits: int = 0  # FIXED<W,I>: values are codes / 2**(W-I)


def _codec(dtype: str) -> _Codec:
    m = re.fullmatch(r"FIXED<(\d+),\s*(-?\d+)>", dtype)
    if m:
        w, i = int(m.group(1)), int(m.group(2))
        return _Codec(bits=w, signed=True, frac_bits=w - i)
    if dtype == "BIPOLAR":  # FINN packs -1/+1 as the bits 0/1
        return _Codec(bits=1, bipolar=True)
    lo, hi = dtype_range(dtype)
    return _Codec(bits=max(1, int(hi - lo).bit_length()), signed=lo < 0)


def bits_of(dtype: str) -> int:
    """Bits per element on the wire, as FINN's driver packs it (BIPOLAR: 1)."""
    return _codec(dtype).bits


def pack_innermost(x: np.ndarray, dtype: str) -> np.ndarray:
    """Values [..., n] -> bytes [..., ceil(n*bits/8)] (FINN's packing rule: element 0 in the
    lowest bits, little-endian bytes, i.e. ``finnpy_to_packed_bytearray(reverse_inner=True,
    reverse_endian=True)``) for BIPOLAR, BINARY, INTn, UINTn and FIXED<W,I>."""
    c = _codec(dtype)
    x = np.asarray(x)
    if c.bipolar:
        v = (x.astype(np.int64) + 1) // 2
    elif c.frac_bits:
        v = np.round(x.astype(np.float64) * 2.0**c.frac_bits).astype(np.int64)
    else:
        v = x.astype(np.int64)
    bits = c.bits
    if c.signed:
        v = v & ((1 << bits) - 1)  # two's complement in `bits` bits
    if bits == 8:
        return v.astype(np.uint8)
    n = v.shape[-1]
    nbytes = (n * bits + 7) // 8
    bitarr = (
        ((v[..., :, None] >> np.arange(bits)) & 1).astype(np.uint8).reshape(*v.shape[:-1], n * bits)
    )
    pad = nbytes * 8 - n * bits
    if pad:
        bitarr = np.concatenate([bitarr, np.zeros((*bitarr.shape[:-1], pad), np.uint8)], axis=-1)
    return np.packbits(bitarr, axis=-1, bitorder="little")


def unpack_innermost(b: np.ndarray, dtype: str, n: int) -> np.ndarray:
    """Inverse of :func:`pack_innermost`: bytes [..., nbytes] -> values [..., n] (int64; float64
    for FIXED)."""
    c = _codec(dtype)
    bits = c.bits
    if bits == 8:
        v = np.asarray(b, dtype=np.uint8).astype(np.int64)[..., :n]
    else:
        bitarr = np.unpackbits(np.asarray(b, dtype=np.uint8), axis=-1, bitorder="little")[
            ..., : n * bits
        ]
        bitarr = bitarr.reshape(*bitarr.shape[:-1], n, bits).astype(np.int64)
        v = (bitarr << np.arange(bits)).sum(axis=-1)
    if c.signed:
        v = np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)
    if c.bipolar:
        return 2 * v - 1
    if c.frac_bits:
        return v / 2.0**c.frac_bits
    return v


class PynqAccelerator(Accelerator):
    name = "pynq"

    def __init__(self, bundle_dir: Path, manifest: dict, timeout_s: float = 2.0) -> None:
        from pynq import Overlay, allocate

        self._bind(manifest)
        self.iospec = manifest["io"]
        self.timeout_s = timeout_s
        bit = Path(bundle_dir) / _bitfile(manifest)
        try:
            self.overlay = Overlay(str(bit))
        except Exception as exc:  # pynq raises bare RuntimeError/TypeError/... per platform
            raise ToolchainError(f"pynq could not load {bit.name}: {exc}") from exc
        try:
            self.idma = getattr(self.overlay, "idma0")
            self.odma = getattr(self.overlay, "odma0")
        except AttributeError as exc:
            raise QdevError(
                f"{bit.name}: the overlay has no idma0/odma0 (not a FINN zynq-iodma shell)"
            ) from exc
        self._allocate = allocate
        self._bufs: dict[int, tuple] = {}

    def _buffers(self, n: int) -> tuple:
        if n not in self._bufs:
            ip = self.iospec["ishape_packed"]
            op = self.iospec["oshape_packed"]
            ib = self._allocate(shape=(n, *ip[1:]), dtype=np.uint8)
            ob = self._allocate(shape=(n, *op[1:]), dtype=np.uint8)
            self._bufs = {n: (ib, ob)}  # keep one size: frames come in a fixed batch per stream
        return self._bufs[n]

    def _wait(self, mmio, mask: int, what: str) -> None:  # noqa: ANN001
        deadline = time.monotonic() + self.timeout_s
        while not mmio.read(CTRL) & mask:
            if time.monotonic() > deadline:
                raise QdevError(
                    f"accelerator timeout: {what} after {self.timeout_s:g} s (fabric hung?)"
                )

    def run(self, pixels: np.ndarray) -> np.ndarray:
        io = self.iospec
        x = np.asarray(pixels)
        if x.ndim == 3:
            x = x[..., None]
        n = x.shape[0]
        if list(x.shape[1:]) != list(io["ishape_normal"][1:]):
            raise QdevError(
                f"frame shape {list(x.shape[1:])} does not match the accelerator "
                f"input {io['ishape_normal'][1:]}"
            )
        folded = x.reshape(n, *io["ishape_folded"][1:])
        ibuf, obuf = self._buffers(n)
        ibuf[:] = pack_innermost(folded, io["idt"])
        ibuf.flush()
        self._wait(self.odma, AP_IDLE, "output DMA not idle")
        for dma, buf in ((self.odma, obuf), (self.idma, ibuf)):
            addr = int(buf.device_address)
            dma.write(ADDR_LO, addr & 0xFFFFFFFF)
            dma.write(ADDR_HI, (addr >> 32) & 0xFFFFFFFF)
            dma.write(COUNT, n)
            dma.write(CTRL, AP_START)
        self._wait(self.odma, AP_DONE, "no ap_done from the output DMA")
        obuf.invalidate()
        of = io["oshape_folded"]
        codes = unpack_innermost(np.asarray(obuf), io["odt"], of[-1])
        return codes.reshape(n, *io["oshape_normal"][1:]).astype(np.int32)

    def close(self) -> None:
        for ib, ob in self._bufs.values():
            ib.freebuffer()
            ob.freebuffer()
        self._bufs = {}


def _bitfile(manifest: dict) -> str:
    return next((n for n in manifest.get("files", {}) if n.endswith(".bit")), "")


def _probe(bundle_dir: Path, manifest: dict) -> str | None:
    files = manifest.get("files", {})
    if not _bitfile(manifest) or not any(n.endswith(".hwh") for n in files):
        return "the bundle has no bitstream (.bit + .hwh): it is estimate-only"
    import warnings

    try:
        import pynq
    except ImportError:
        return "pynq is not installed"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No devices found, is the XRT environment sourced?"
            devices = pynq.Device.devices
    except Exception as exc:  # pynq raises RuntimeError("No Devices Found") and others
        return f"no PYNQ device ({exc})"
    if not devices:
        return "no PYNQ device found"
    return None


register_backend(Backend("pynq", 100, _probe, PynqAccelerator))
