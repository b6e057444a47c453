"""The software executor: fast, bit-exact execution of an integer model on the CPU (numpy only),
running the model's execution plan (:mod:`qdev.core.intplan`: fused convolutions, transposed
convolutions, pools and thresholds, each step with its exactness proof).

Arithmetic. Every convolution accumulates integers in float32 where the plan proves every
accumulator below 2^24 (float64 otherwise): exact whatever order BLAS adds the products in.
A convolution is one copy of its windows (im2col, measured faster here than summing ``kh*kw``
shifted matmuls) and one matmul; a convolution of a channel concatenation reads each part with
its slice of the weights (the partial sums are sums of the same integer products), so the
concatenation is never copied. A transposed convolution whose stride equals its kernel is one
matmul and a depth-to-space (each input pixel owns a k x k block of the output), instead of a
convolution over a map that is three quarters zeros. A threshold step reading a convolution's
result that nothing else reads works in place.

Thresholds. ``#{k: v >= T[c, k]} + ActVal`` on integers ``v``:

* ``affine`` (default): ``clip(floor((v + a) * b), 0, S) + ActVal`` where the plan proved it equal
  for every integer the input can hold (float32, as computed); steps without such a form use
  ``lut``;
* ``lut``: the count tabulated per channel over ``[min ceil(T) - 1, max ceil(T)]`` (it only changes
  at ``ceil(T)``), values clipped into that range and looked up; a table over ``TABLE_MAX``
  entries falls back to ``compare``;
* ``compare``: summed comparisons (few steps) or a per-channel ``searchsorted``;
* ``search``: ``searchsorted`` for every step (for sorted T, ``#{k: v >= T[k]} ==
  searchsorted(T, v, side="right")``).

All stay selectable (``SoftwareExecutor(model, thresholds=...)``) so that tests and ``bench/``
compare them on the same frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from qdev.core.errors import QdevError
from qdev.core.intmodel import IntModel
from qdev.core.intplan import F32_EXACT, Plan, Step, layer_bound, make_plan

__all__ = ["SoftwareExecutor", "layer_bound", "THRESHOLD_METHODS", "F32_EXACT"]

TABLE_MAX = 1 << 22  # entries (float32: 16 MiB) a step's threshold table may take at most

#: the methods a SoftwareExecutor can be built with (see the module's doc)
THRESHOLD_METHODS = ("affine", "lut", "compare", "search")


@dataclass
class _Thr:
    """A threshold step prepared for one method."""

    method: str  # what this step runs: affine, lut, compare or search
    thr: np.ndarray  # [C or 1, S] float64 (integers, clipped to the input's range + 1)
    act: int
    a: np.ndarray | None = None
    b: np.ndarray | None = None
    lut: np.ndarray | None = None
    lut_lo: int = 0
    lut_hi: int = 0
    lut_off: np.ndarray | int = 0
    inplace: bool = False  # affine: the input is a temporary only this step reads
    tiled: dict = field(default_factory=dict)  # affine: row length -> (a, b) tiled over a row
    clip_lo: bool = True  # affine: whether the input's range can reach below 0 / above S
    clip_hi: bool = True


def _build_lut(st: Step) -> None:
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
    st.lut = (counts + int(st.act)).astype(np.float32).ravel()
    st.lut_lo, st.lut_hi = lo, hi
    # one shared row: a scalar; per channel: broadcast over the channel axis (last)
    st.lut_off = -lo if t.shape[0] == 1 else np.arange(t.shape[0], dtype=np.int32) * length - lo


def _prepare_threshold(step: Step, method: str) -> _Thr:
    at = step.attrs
    th = _Thr(method, at["t"].astype(np.float64), at["act"])
    if method == "affine" and at["method"] == "affine":
        th.a, th.b = at["a"], at["b"]
        # the formula is monotone in x: its values at the input range's ends bound all others
        ends = np.floor((np.array(at["range"], np.float32)[:, None] + th.a) * th.b)
        th.clip_lo, th.clip_hi = bool((ends[0] < 0).any()), bool((ends[1] > th.thr.shape[1]).any())
        return th
    th.method = "lut" if method == "affine" else method
    if th.method == "lut":
        _build_lut(th)
        if th.lut is None:
            th.method = "compare"
    return th


class SoftwareExecutor:
    """Prepared executor of an :class:`IntModel`; ``run(pixels)`` -> int32 output codes NHWC."""

    def __init__(self, model: IntModel, thresholds: str = "affine") -> None:
        if thresholds not in THRESHOLD_METHODS:
            raise QdevError(
                f"unknown threshold method {thresholds!r} (one of {', '.join(THRESHOLD_METHODS)})"
            )
        self.model = model
        self.threshold_method = thresholds
        self.plan: Plan = make_plan(model)
        self.bounds = {ly.name: layer_bound(ly) for ly in model.layers if ly.op == "MVAU"}
        self.thr: dict[int, _Thr] = {
            i: _prepare_threshold(st, thresholds)
            for i, st in enumerate(self.plan.steps)
            if st.kind == "threshold"
        }
        # a threshold whose input is a convolution's fresh result read by nothing else works in
        # place
        readers: dict[str, int] = {}
        for st in self.plan.steps:
            for n in st.inputs:
                readers[n] = readers.get(n, 0) + 1
        made_by = {o: st.kind for st in self.plan.steps for o in st.outputs}
        for i, t in self.thr.items():
            src = self.plan.steps[i].inputs[0]
            t.inplace = (
                readers.get(src) == 1
                and made_by.get(src) in ("conv", "deconv", "mvau")
                and src != self.plan.output
            )

    def run(self, pixels: np.ndarray, profile: dict | None = None) -> np.ndarray:
        """uint8 pixels [N, H, W] or [N, H, W, 1] -> output codes [N, H, W, C] (int32).

        ``profile``, when given, accumulates seconds per step kind.
        """
        x = self.model.frames_nhwc(pixels)
        env = {self.plan.input: x.astype(np.float32)}
        for i, st in enumerate(self.plan.steps):
            t0 = time.perf_counter() if profile is not None else 0.0
            xs = [env[n] for n in st.inputs]
            if st.kind not in ("conv", "dup"):
                xs = [_whole(v) for v in xs]
            ys = _OPS[st.kind](self, i, st, xs)
            for name, y in zip(st.outputs, ys):
                env[name] = y
            if profile is not None:
                key = st.kind + (f"/{self.thr[i].method}" if i in self.thr else "")
                profile[key] = profile.get(key, 0.0) + time.perf_counter() - t0
        return _whole(env[self.plan.output]).astype(np.int32)

    def methods(self) -> dict[str, int]:
        """Threshold steps per method actually run."""
        out: dict[str, int] = {}
        for t in self.thr.values():
            out[t.method] = out.get(t.method, 0) + 1
        return out


class _Parts(list):
    """A channel concatenation not yet made: a convolution reads its parts with the matching
    slices of its weights (no copy); anything else gets the concatenated array."""


def _whole(x: np.ndarray | _Parts) -> np.ndarray:
    return np.concatenate(x, axis=-1) if isinstance(x, _Parts) else x


def _pad(x: np.ndarray, pads: tuple) -> np.ndarray:
    t, left, b, r = pads
    if not any(pads):
        return x
    n, h, w, c = x.shape
    y = np.zeros((n, h + t + b, w + left + r, c), dtype=x.dtype)
    y[:, t : t + h, left : left + w, :] = x
    return y


def _pixelpad(x: np.ndarray, stride: tuple) -> np.ndarray:
    sy, sx = stride
    n, h, w, c = x.shape
    y = np.zeros((n, (h - 1) * sy + 1, (w - 1) * sx + 1, c), dtype=x.dtype)
    y[:, ::sy, ::sx, :] = x
    return y


def _windows(x: np.ndarray, k: tuple, s: tuple, d: tuple, out: tuple) -> np.ndarray:
    """Sliding windows as one copy [n, oh, ow, kh*kw*c], FINN's (kh, kw, c) order."""
    kh, kw = k
    oh, ow = out
    if (kh, kw) == (1, 1) and s == (1, 1):
        return x[:, :oh, :ow, :]
    x = np.ascontiguousarray(x)
    sn, sh, sw_, sc = x.strides
    c = x.shape[3]
    if d[1] == 1:  # a window row's kw pixels are kw*c contiguous values: copy them as one run
        view = np.lib.stride_tricks.as_strided(
            x,
            (x.shape[0], oh, ow, kh, kw * c),
            (sn, sh * s[0], sw_ * s[1], sh * d[0], sc),
            writeable=False,
        )
    else:
        view = np.lib.stride_tricks.as_strided(
            x,
            (x.shape[0], oh, ow, kh, kw, c),
            (sn, sh * s[0], sw_ * s[1], sh * d[0], sw_ * d[1], sc),
            writeable=False,
        )
    return view.reshape(x.shape[0], oh, ow, kh * kw * c)


def _conv(ex: SoftwareExecutor, i: int, st: Step, xs: list) -> list:
    a = st.attrs
    w = a["w"]
    kh, kw, c, cout = w.shape
    oh, ow = a["out"]
    parts = xs[0] if isinstance(xs[0], _Parts) else [xs[0]]
    out, c0 = None, 0
    for p in parts:  # conv(concat(x1, x2), W) = conv(x1, W[..., :c1, :]) + conv(x2, W[..., c1:, :])
        cp = p.shape[-1]
        wp = (
            np.ascontiguousarray(w[:, :, c0 : c0 + cp, :]).reshape(kh * kw * cp, cout)
            if len(parts) > 1
            else w.reshape(kh * kw * c, cout)
        )
        cols = _windows(_pad(p, a["pads"]), (kh, kw), a["stride"], a["dilation"], (oh, ow))
        y = cols.astype(w.dtype, copy=False) @ wp
        out = y if out is None else np.add(out, y, out=out)
        c0 += cp
    return [out]


def _deconv(ex: SoftwareExecutor, i: int, st: Step, xs: list) -> list:
    a = st.attrs
    w = a["w"]  # [k, k, C, Cout] of the convolution over the zero-inserted map
    kh, kw, c, cout = w.shape
    x = xs[0]
    n, h, wd, _ = x.shape
    if a[
        "blocks"
    ]:  # stride == kernel, no overlap: out[s*i + di, s*j + dj] = x[i, j] @ flip(w)[di, dj]
        wt = w[::-1, ::-1]  # the transposed convolution's kernel
        y = x.reshape(-1, c).astype(w.dtype, copy=False) @ np.ascontiguousarray(
            wt.transpose(2, 0, 1, 3)
        ).reshape(c, kh * kw * cout)
        y = y.reshape(n, h, wd, kh, kw, cout).transpose(0, 1, 3, 2, 4, 5)
        return [np.ascontiguousarray(y).reshape(n, h * kh, wd * kw, cout)]
    p = kh - 1 - a["pads"]
    z = _pad(_pixelpad(x, a["stride"]), (p, p, p, p))
    oh, ow = z.shape[1] - kh + 1, z.shape[2] - kw + 1
    cols = _windows(z, (kh, kw), (1, 1), (1, 1), (oh, ow))
    return [cols.astype(w.dtype, copy=False) @ w.reshape(kh * kw * c, cout)]


def _maxpool(ex: SoftwareExecutor, i: int, st: Step, xs: list) -> list:
    a = st.attrs
    (kh, kw), s, (oh, ow) = a["k"], a["stride"], a["out"]
    x = xs[0]
    n, _, _, c = x.shape
    if (kh, kw) == s:  # non-overlapping windows: the elementwise max of kh*kw strided views
        y = None
        for dy in range(kh):
            for dx in range(kw):
                v = x[:, dy : dy + oh * kh : kh, dx : dx + ow * kw : kw, :]
                y = v.copy() if y is None else np.maximum(y, v, out=y)
        return [y]
    return [_windows(x, (kh, kw), s, (1, 1), (oh, ow)).reshape(n, oh, ow, kh * kw, c).max(axis=3)]


def _threshold(ex: SoftwareExecutor, i: int, st: Step, xs: list) -> list:
    th = ex.thr[i]
    return [_THRESHOLD_METHODS[th.method](xs[0], th)]


def _thr_affine(x: np.ndarray, th: _Thr) -> np.ndarray:
    own = th.inplace and x.dtype == np.float32 and x.flags.c_contiguous
    shape = x.shape
    if th.a.size > 1 and x.flags.c_contiguous:  # per channel: rows of W*C, a and b tiled along
        row = shape[-2] * shape[-1]  # them (numpy's inner loop then runs a whole row, not C)
        tiled = th.tiled.get(row)
        if tiled is None:
            reps = row // th.a.size
            tiled = th.tiled[row] = (np.tile(th.a, reps), np.tile(th.b, reps))
        a, b = tiled
        x = x.reshape(-1, row)
    else:
        a, b = th.a, th.b
    y = np.add(x, a, out=x) if own else np.add(x, a, dtype=np.float32)
    y *= b
    np.floor(y, out=y)
    if th.clip_lo:
        np.maximum(y, 0, out=y)
    if th.clip_hi:
        np.minimum(y, th.thr.shape[1], out=y)
    if th.act:
        y += th.act
    return y.reshape(shape)


def _thr_lut(acc: np.ndarray, st: _Thr) -> np.ndarray:
    idx = np.clip(acc, st.lut_lo, st.lut_hi).astype(np.int32)
    idx += st.lut_off
    return st.lut.take(idx)


def _thr_compare(acc: np.ndarray, st: _Thr) -> np.ndarray:
    tt = st.thr.astype(acc.dtype)
    out = np.zeros(acc.shape, dtype=np.uint8)  # a count <= 31: one byte moves least memory
    hit = np.empty(acc.shape, dtype=bool)
    for k in range(tt.shape[1]):
        np.greater_equal(acc, tt[:, k], out=hit)
        out += hit
    return _plus_act(out.astype(np.float32), st)


def _thr_search(acc: np.ndarray, st: _Thr) -> np.ndarray:
    t, c = st.thr, acc.shape[-1]
    out = np.empty(acc.shape, dtype=np.float32)
    for ch in range(c):
        out[..., ch] = np.searchsorted(t[ch if t.shape[0] == c else 0], acc[..., ch], side="right")
    return _plus_act(out, st)


def _plus_act(out: np.ndarray, st: _Thr) -> np.ndarray:
    act = st.act
    if act:
        out += act
    return out


def _thr_compare_or_search(acc: np.ndarray, th: _Thr) -> np.ndarray:
    return (_thr_compare if th.thr.shape[1] <= 31 else _thr_search)(acc, th)


_THRESHOLD_METHODS = {
    "affine": _thr_affine,
    "lut": _thr_lut,
    "compare": _thr_compare_or_search,
    "search": _thr_search,
}


def _mvau(ex: SoftwareExecutor, i: int, st: Step, xs: list) -> list:
    w = st.attrs["w"]
    return [xs[0].astype(w.dtype, copy=False) @ w]


def _poolwin(ex: SoftwareExecutor, i: int, st: Step, xs: list) -> list:
    x = xs[0]
    c = st.attrs["c"]
    n, oh, ow, kc = x.shape
    return [x.reshape(n, oh, ow, kc // c, c).max(axis=3)]


#: one function per plan step kind (the kinds :func:`qdev.core.intplan.make_plan` makes)
_OPS = {
    "conv": _conv,
    "deconv": _deconv,
    "maxpool": _maxpool,
    "threshold": _threshold,
    "mvau": _mvau,
    "concat": lambda ex, i, st, xs: [_Parts(xs)],
    "dup": lambda ex, i, st, xs: [xs[0]] * len(st.outputs),
    "pad": lambda ex, i, st, xs: [_pad(xs[0], st.attrs["pads"])],
    "pixelpad": lambda ex, i, st, xs: [_pixelpad(xs[0], st.attrs["stride"])],
    "windows": lambda ex, i, st, xs: [
        _windows(xs[0], st.attrs["k"], st.attrs["stride"], st.attrs["dilation"], st.attrs["out"])
    ],
    "poolwin": _poolwin,
}
