"""The software executor: fast, bit-exact execution of an integer model on the CPU (numpy only).

Exactness argument. Every MVAU accumulates integers: ``acc = sum_k x_k * w_k`` with ``x`` in the
range of its input data type and ``w`` in the range of its weights. Its magnitude is bounded by
``B = MW * max|x| * max|w|`` (MW = fan-in). float32 represents every integer up to 2^24 exactly and
the sum of exactly-representable integer products stays exact while every partial sum is below
2^24 in magnitude, whatever order BLAS adds them in. :func:`layer_bound` computes ``B`` per layer from the
data types at load time and uses float32 where ``B < 2^24``, float64 (exact to 2^53) otherwise.
The default QuantU-Net's worst layer has ``B`` of a few hundred thousand.

Thresholds. A thresholding step maps an integer ``v`` of channel ``c`` to ``#{k: v >= T[c, k]}``.
On integers this count only changes at ``ceil(T)``: it is 0 for ``v < lo = min ceil(T)`` and
``steps`` for ``v >= hi = max ceil(T)``. So the default method (``lut``) tabulates it once per
channel for ``v`` in ``[lo - 1, hi]`` (ActVal added in), clips each value into that range and
looks it up: one gather per element, whatever the number of steps, exact because every value is
an integer held exactly in its float. Where the table would be large (``TABLE_MAX`` entries) the
step falls back to summed comparisons (``compare``, few steps) or a per-channel ``searchsorted``
(``search``; for sorted T, ``#{k: v >= T[k]} == searchsorted(T, v, side="right")``). All three
stay selectable (``SoftwareExecutor(model, thresholds=...)``) so that tests and ``bench/`` compare
them on the same frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qdev.core.intmodel import IntLayer, IntModel, dtype_range
from qdev.core.errors import QdevError

__all__ = ["SoftwareExecutor", "layer_bound", "THRESHOLD_METHODS", "F32_EXACT"]

F32_EXACT = 2**24
TABLE_MAX = 1 << 22  # entries (float32: 16 MiB) a step's threshold table may take at most


def _max_abs(dtype: str) -> int:
    lo, hi = dtype_range(dtype)
    return max(abs(lo), abs(hi))


def layer_bound(ly: IntLayer) -> int:
    """Bound on |accumulator| of an MVAU from its fan-in and data types."""
    w = ly.params["weights"]
    return int(ly.attrs["MW"]) * _max_abs(ly.attrs["inputDataType"]) * int(np.abs(w).max())


@dataclass
class _Step:
    op: str
    layer: IntLayer
    w: np.ndarray | None = None
    thr: np.ndarray | None = None
    dtype: type = np.float32
    fused: bool = False  # CIG feeding an MVAU: the MVAU convolves the padded input directly
    wk: np.ndarray | None = None  # MVAU weights as [kh, kw, C, Cout] for the fused convolution
    kernel: tuple | None = None  # (kh, kw, oh, ow) of the fused convolution
    lut: np.ndarray | None = None  # flat [C * L] float32 table of count + ActVal (method lut)
    lut_lo: int = 0  # the value indexed by column 0 of each channel's row
    lut_hi: int = 0  # the value indexed by the last column (lo + L - 1)
    lut_off: np.ndarray | int = 0  # what a clipped value adds to become its flat index: c * L - lo


def _build_lut(st: _Step) -> None:
    """Tabulate ``#{k: v >= T[c, k]} + ActVal`` for the integers where it changes (see module doc);
    leaves ``st.lut`` None where the table would exceed :data:`TABLE_MAX`."""
    t = np.ceil(st.thr)  # [C or 1, steps]
    if t.size == 0:  # no steps: nothing to tabulate (the comparisons give ActVal everywhere)
        return
    lo, hi = int(t.min()) - 1, int(t.max())
    length = hi - lo + 1
    if t.shape[0] * length > TABLE_MAX:
        return
    v = np.arange(lo, hi + 1, dtype=np.float64)
    counts = np.stack([np.searchsorted(row, v, side="right") for row in t])  # [C or 1, L]
    st.lut = (counts + int(st.layer.attrs.get("ActVal", 0))).astype(np.float32).ravel()
    st.lut_lo, st.lut_hi = lo, hi
    # one shared row: a scalar; per channel: broadcast over the channel axis (last)
    st.lut_off = -lo if t.shape[0] == 1 else np.arange(t.shape[0], dtype=np.int32) * length - lo


class SoftwareExecutor:
    """Prepared executor of an :class:`IntModel`; ``run(pixels)`` -> int32 output codes NHWC."""

    def __init__(self, model: IntModel, thresholds: str = "lut") -> None:
        if thresholds not in THRESHOLD_METHODS:
            raise QdevError(f"unknown threshold method {thresholds!r} (one of {', '.join(THRESHOLD_METHODS)})")
        self.model = model
        self.threshold_method = thresholds
        self.steps: list[_Step] = []
        self.bounds: dict[str, int] = {}
        for ly in model.layers:
            st = _Step(ly.op, ly)
            if ly.op == "MVAU":
                b = layer_bound(ly)
                self.bounds[ly.name] = b
                st.dtype = np.float32 if b < F32_EXACT else np.float64
                st.w = ly.params["weights"].astype(st.dtype)
            if "thresholds" in ly.params:
                t = ly.params["thresholds"]
                if np.any(np.diff(t, axis=-1) < 0):
                    raise QdevError(f"{ly.name}: thresholds are not ascending")
                # values reaching a threshold layer are bounded by lim; clipping thresholds to
                # +-(lim + 1) changes no comparison and keeps them exact in float32 (lim < 2^24)
                lim = self.bounds.get(ly.name) if ly.op == "MVAU" else _max_abs(ly.attrs.get("inputDataType", "INT24"))
                st.thr = np.clip(t, -(lim + 1), lim + 1).astype(np.float64)
                if thresholds == "lut":
                    _build_lut(st)
            self.steps.append(st)
        self._plan_fusion()

    def _plan_fusion(self) -> None:
        """Fuse ConvolutionInputGenerator (stride 1, no dilation, >= 4 channels) into the MVAU it
        feeds: instead of copying every window (im2col), the MVAU sums kh*kw matmuls of the
        padded input, each read at a flat offset ``ky * W_padded + kx`` (a contiguous slice, no
        copy); rows that wrap around the image edge are computed and discarded. Every partial
        sum is a partial sum of the same accumulator, so the 2^24 bound still makes it exact."""
        consumers: dict[str, list[_Step]] = {}
        for st in self.steps:
            for i in st.layer.inputs:
                consumers.setdefault(i, []).append(st)
        for st in self.steps:
            a = st.layer.attrs
            if st.op != "ConvolutionInputGenerator" or tuple(a["Stride"]) != (1, 1) or tuple(a["Dilation"]) != (1, 1):
                continue
            kh, kw = a["ConvKernelDim"]
            users = consumers.get(st.layer.outputs[0], [])
            if (kh, kw) == (1, 1) or len(users) != 1 or users[0].op != "MVAU":
                continue
            mv = users[0]
            c = mv.w.shape[0] // (kh * kw)
            if c < 4 or mv.w.shape[0] != kh * kw * c:
                continue
            oh, ow = a["OFMDim"]
            st.fused = True
            mv.wk = np.ascontiguousarray(mv.w.reshape(kh, kw, c, mv.w.shape[1]))
            mv.kernel = (kh, kw, oh, ow)

    @staticmethod
    def _conv_shifted(xp: np.ndarray, st: _Step) -> np.ndarray:
        kh, kw, oh, ow = st.kernel
        n, hp, wp, c = xp.shape
        flat = np.ascontiguousarray(xp, dtype=st.dtype).reshape(-1, c)
        rows = flat.shape[0]
        out = flat @ st.wk[0, 0]
        for ky in range(kh):
            for kx in range(kw):
                if ky == kx == 0:
                    continue
                off = ky * wp + kx
                out[: rows - off] += flat[off:] @ st.wk[ky, kx]
        return np.ascontiguousarray(out.reshape(n, hp, wp, -1)[:, :oh, :ow, :])

    def _thresholds(self, acc: np.ndarray, st: _Step) -> np.ndarray:
        """``#{k: acc >= T[c, k]} + ActVal`` as float32 (what the next layer takes)."""
        if st.lut is not None:
            return _thr_lut(acc, st)
        few = st.thr.shape[1] <= 31 and self.threshold_method != "search"
        return (_thr_compare if few else _thr_search)(acc, st)

    def run(self, pixels: np.ndarray, profile: dict | None = None) -> np.ndarray:
        """uint8 pixels [N, H, W] or [N, H, W, 1] -> output codes [N, H, W, C] (int32).

        ``profile``, when given, accumulates seconds per op type.
        """
        x = self.model.frames_nhwc(pixels)
        env = {self.model.input["name"]: x.astype(np.float32)}
        for st in self.steps:
            t0 = time.perf_counter() if profile is not None else 0.0
            ly = st.layer
            a = ly.attrs
            xin = env[ly.inputs[0]]
            if st.op == "FMPadding":
                t, left, b, r = a["Padding"]
                n, h, w, c = xin.shape
                y = np.zeros((n, h + t + b, w + left + r, c), dtype=xin.dtype)
                y[:, t : t + h, left : left + w, :] = xin
            elif st.op == "FMPadding_Pixel":
                sy, sx = a["Stride"]
                n, h, w, c = xin.shape
                y = np.zeros((n, (h - 1) * sy + 1, (w - 1) * sx + 1, c), dtype=xin.dtype)
                y[:, ::sy, ::sx, :] = xin
            elif st.op == "ConvolutionInputGenerator" and st.fused:
                y = xin  # the MVAU reads the windows in place (see _plan_fusion)
            elif st.op == "ConvolutionInputGenerator":
                kh, kw = a["ConvKernelDim"]
                sy, sx = a["Stride"]
                dy, dx = a["Dilation"]
                oh, ow = a["OFMDim"]
                if (kh, kw) == (1, 1) and (sy, sx) == (1, 1):
                    y = xin
                else:  # windows as a strided view [n, oh, ow, kh, kw, c] -> one copy, FINN's order
                    xin = np.ascontiguousarray(xin)
                    sn, sh, sw_, sc = xin.strides
                    view = np.lib.stride_tricks.as_strided(
                        xin, (xin.shape[0], oh, ow, kh, kw, xin.shape[3]),
                        (sn, sh * sy, sw_ * sx, sh * dy, sw_ * dx, sc), writeable=False)
                    y = view.reshape(xin.shape[0], oh, ow, kh * kw * xin.shape[3])
            elif st.op == "MVAU":
                if st.kernel is not None:
                    acc = self._conv_shifted(xin, st)
                else:
                    acc = xin.astype(st.dtype, copy=False) @ st.w
                y = acc if a.get("noActivation", 0) else self._thresholds(acc, st).astype(np.float32, copy=False)
            elif st.op == "Thresholding":
                y = self._thresholds(xin, st).astype(np.float32, copy=False)
            elif st.op == "Pool":
                c = a["Channels"]
                n, oh, ow, kc = xin.shape
                y = xin.reshape(n, oh, ow, kc // c, c).max(axis=3)
            elif st.op == "StreamingConcat":
                y = np.concatenate([env[i] for i in ly.inputs], axis=-1)
            elif st.op == "DuplicateStreams":
                for o in ly.outputs:
                    env[o] = xin
                continue
            else:  # pragma: no cover - IntModel.load already refuses unknown ops
                raise QdevError(f"unsupported op {st.op}")
            env[ly.outputs[0]] = y
            if profile is not None:
                profile[st.op] = profile.get(st.op, 0.0) + time.perf_counter() - t0
        return env[self.model.output["name"]].astype(np.int32)


def _thr_lut(acc: np.ndarray, st: _Step) -> np.ndarray:
    idx = np.clip(acc, st.lut_lo, st.lut_hi).astype(np.int32)
    idx += st.lut_off
    return st.lut.take(idx)


def _thr_compare(acc: np.ndarray, st: _Step) -> np.ndarray:
    tt = st.thr.astype(acc.dtype)
    out = np.zeros(acc.shape, dtype=np.uint8)  # a count <= 31: one byte moves least memory
    hit = np.empty(acc.shape, dtype=bool)
    for k in range(tt.shape[1]):
        np.greater_equal(acc, tt[:, k], out=hit)
        out += hit
    return _plus_act(out.astype(np.float32), st)


def _thr_search(acc: np.ndarray, st: _Step) -> np.ndarray:
    t, c = st.thr, acc.shape[-1]
    out = np.empty(acc.shape, dtype=np.float32)
    for ch in range(c):
        out[..., ch] = np.searchsorted(t[ch if t.shape[0] == c else 0], acc[..., ch], side="right")
    return _plus_act(out, st)


def _plus_act(out: np.ndarray, st: _Step) -> np.ndarray:
    act = int(st.layer.attrs.get("ActVal", 0))
    if act:
        out += act
    return out


# the methods a SoftwareExecutor can be built with: "lut" (the default; a step whose table would be
# too large falls back to the "compare" rule), "compare" (summed comparisons up to 31 steps,
# searchsorted above: the method before tables), "search" (searchsorted for every step)
THRESHOLD_METHODS = ("lut", "compare", "search")
