"""The integer model's execution plan: one definition of what each layer (or fused group of
layers) computes, shared by the fast executors (numpy, :mod:`qdev.core.software`; ONNX,
:mod:`qdev.core.onnx_lower`), each step carrying the proof that float32 arithmetic computes it
exactly. The int64 reference (:func:`qdev.core.intmodel.run_reference`) is the definition the plan
is checked against.

Steps (tensors NHWC, values integers held in float32):

* ``conv``: an optional ``FMPadding``, a ``ConvolutionInputGenerator`` and the ``MVAU`` it feeds,
  as one convolution (weights ``[kh, kw, C, Cout]``, padding, stride, dilation). Exact in float32
  because every accumulator is bounded below 2^24 (:func:`layer_bound`): every partial sum of
  integer products is then an integer float32 holds exactly, in any order of summation.
* ``deconv``: ``FMPadding_Pixel`` (stride s) + symmetric ``FMPadding`` (p) + window (k, stride 1)
  + ``MVAU``, which FINN makes of a transposed convolution, back as one: the zero-inserted map
  convolved with ``W`` equals the transposed convolution of the map with ``W`` flipped, with
  pads ``q = k - 1 - p`` (needs q >= 0). When also s == k and q == 0 every input pixel owns a
  k x k block of the output: one matmul and a depth-to-space (``blocks``).
* ``maxpool``: window (k, stride s, no padding) + ``Pool``.
* ``threshold``: ``#{k: x >= T[c, k]} + ActVal`` per channel. ``affine`` where it is proven equal,
  in float32 as computed, to ``clip(floor((x + a[c]) * b[c]), 0, S) + ActVal`` for **every**
  integer the input can hold (:func:`fit_affine`); otherwise ``compare`` (summed comparisons,
  exact on integers).
* ``concat``, ``dup`` (aliases), and the unfused ops as themselves (``pad``, ``pixelpad``,
  ``windows``, ``mvau``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qdev.core.errors import QdevError
from qdev.core.intmodel import IntLayer, IntModel, dtype_range

__all__ = [
    "Step",
    "Plan",
    "make_plan",
    "fit_affine",
    "layer_bound",
    "F32_EXACT",
    "AFFINE_CHECK_MAX",
]

F32_EXACT = 2**24
#: the most integers one affine proof enumerates per channel (beyond it: the threshold range
#: plus the monotonicity argument of :func:`fit_affine`)
AFFINE_CHECK_MAX = 1 << 22


def _max_abs(dtype: str) -> int:
    lo, hi = dtype_range(dtype)
    return max(abs(lo), abs(hi))


def layer_bound(ly: IntLayer) -> int:
    """Bound on |accumulator| of an MVAU from its fan-in and data types."""
    w = ly.params["weights"]
    return int(ly.attrs["MW"]) * _max_abs(ly.attrs["inputDataType"]) * int(np.abs(w).max())


@dataclass
class Step:
    kind: str
    inputs: list[str]
    outputs: list[str]
    layers: list[str]  # the integer model's layers this step computes
    attrs: dict = field(default_factory=dict)
    proof: str = ""

    @property
    def label(self) -> str:
        """The step's kind, with the method for a threshold step (``threshold/affine``...)."""
        return self.kind + (f"/{self.attrs['method']}" if self.kind == "threshold" else "")


@dataclass
class Plan:
    steps: list[Step]
    input: str
    output: str
    proofs: dict[str, int]  # kind -> steps proven

    def describe(self) -> dict:
        kinds: dict[str, int] = {}
        for s in self.steps:
            kinds[s.label] = kinds.get(s.label, 0) + 1
        return {"steps": len(self.steps), "kinds": kinds, "proven_exact": True}


def _acc_dtype(bound: int) -> type:
    """float32 where every accumulator provably stays below 2^24, else float64 (exact to 2^53)."""
    if bound >= 2**53:
        raise QdevError(f"accumulator bound {bound} >= 2^53: no float type holds it exactly")
    return np.float32 if bound < F32_EXACT else np.float64


def _acc_proof(bound: int) -> str:
    return f"|accumulator| <= {bound} < 2^{24 if bound < F32_EXACT else 53}"


def _f32(x: float) -> np.float32:
    return np.float32(x)


def fit_affine(t: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Per row of integer-valued thresholds ``t`` [R, S] (ascending), float32 ``a``, ``b`` with
    ``clip(floor(float32(float32(x + a) * b)), 0, S) == #{k: x >= t[r, k]}`` for **every** integer
    ``x`` in ``[lo, hi]``, or None where some row has none.

    Fit: real ``T0, s`` with ``c_k - 1 < T0 + k*s <= c_k`` for the ceilings ``c_k`` (the pairwise
    bounds on ``s``, then the middle of ``T0``'s interval); then ``x >= c_k`` iff
    ``x >= T0 + k*s`` on integers, so the count is ``floor((x - T0)/s) + 1``: ``a = s - T0``,
    ``b = 1/s``. Proof: the float32 formula is evaluated on every integer where the count changes
    (``[min c - 1, max c]``, clipped to ``[lo, hi]``) and at ``lo`` and ``hi``; both sides are
    monotone non-decreasing in ``x`` (IEEE addition and multiplication by ``b > 0`` are) and
    constant outside that interval, so equality there is equality on all of ``[lo, hi]``."""
    c = np.ceil(np.asarray(t, dtype=np.float64)).astype(np.int64)
    rows, steps = c.shape
    a = np.zeros(rows, np.float32)
    b = np.zeros(rows, np.float32)
    for r in range(rows):
        cr = c[r]
        if steps == 1:
            s, t0 = 1.0, cr[0] - 0.5
        else:
            i, j = np.triu_indices(steps, 1)
            d = (j - i).astype(np.float64)
            s_lo = ((cr[j] - 1 - cr[i]) / d).max()
            s_hi = ((cr[j] - cr[i] + 1) / d).min()
            s_lo = max(s_lo, 0.0)
            if not s_lo < s_hi:
                return None
            s = (s_lo + s_hi) / 2
            k = np.arange(steps)
            t_lo = (cr - 1 - k * s).max()
            t_hi = (cr - k * s).min()
            if not t_lo < t_hi:
                return None
            t0 = (t_lo + t_hi) / 2
        a[r], b[r] = _f32(s - t0), _f32(1.0 / s)
        xs_lo, xs_hi = max(lo, int(cr.min()) - 1), min(hi, int(cr.max()))
        xs = (
            np.arange(xs_lo, xs_hi + 1, dtype=np.int64) if xs_lo <= xs_hi else np.zeros(0, np.int64)
        )
        xs = np.concatenate([xs, [lo, hi]])
        if xs.size > AFFINE_CHECK_MAX or np.abs(xs).max() >= F32_EXACT:
            return None
        got = np.clip(np.floor((xs.astype(np.float32) + a[r]) * b[r]), 0, steps)
        want = np.searchsorted(cr, xs, side="right")
        if not np.array_equal(got.astype(np.int64), want):
            return None
    return a, b


def _threshold_step(
    ly: IntLayer,
    in_range: tuple[int, int],
    inputs: list[str],
    outputs: list[str],
    layers: list[str],
) -> Step:
    t = ly.params["thresholds"]
    if np.any(np.diff(t, axis=-1) < 0):
        raise QdevError(f"{ly.name}: thresholds are not ascending")
    lo, hi = in_range
    if "inputDataType" in ly.attrs:  # FINN's declared type of the input: prove over both ranges
        dlo, dhi = dtype_range(ly.attrs["inputDataType"])
        lo, hi = min(lo, dlo), max(hi, dhi)
    act = int(ly.attrs.get("ActVal", 0))
    # comparisons with thresholds beyond the input's range never change: clip them there
    tc = np.clip(np.ceil(t.astype(np.float64)), lo - 1, hi + 1)
    fit = fit_affine(tc, lo, hi)
    attrs = {"steps": int(t.shape[1]), "act": act, "t": tc.astype(np.float32), "range": (lo, hi)}
    if fit is not None:
        attrs.update(method="affine", a=fit[0], b=fit[1])
        proof = (
            f"affine form equal to the count on every integer in [{lo}, {hi}], "
            "per channel, in float32"
        )
    else:
        attrs.update(method="compare")
        proof = "summed comparisons of integers with integer thresholds (exact)"
    return Step("threshold", inputs, outputs, layers, attrs, proof)


_NO_PAD = (0, 0, 0, 0)
_WINDOW = "ConvolutionInputGenerator"


class _Planner:
    """One pass over the layers in graph order: each layer starts a fused group where the graph's
    pattern allows (padding -> sliding window -> MVAU or Pool), else becomes a step of its own.
    ``ranges`` follows the integer range of every tensor, so each step's exactness is proven
    from what actually reaches it."""

    def __init__(self, model: IntModel) -> None:
        self.consumers: dict[str, list[IntLayer]] = {}
        for ly in model.layers:
            for i in ly.inputs:
                self.consumers.setdefault(i, []).append(ly)
        self.ranges: dict[str, tuple[int, int]] = {
            model.input["name"]: dtype_range(model.input["dtype"])
        }
        self.done: set[str] = set()
        self.steps: list[Step] = []

    def sole(self, name: str, op: str) -> IntLayer | None:
        """The one consumer of tensor ``name`` if there is exactly one and it is an ``op``."""
        c = self.consumers.get(name, [])
        return c[0] if len(c) == 1 and c[0].op == op else None

    def emit(self, step: Step, out_range: tuple[int, int] | None = None) -> None:
        self.steps.append(step)
        self.done.update(step.layers)
        if out_range is not None:
            self.ranges[step.outputs[0]] = out_range

    def rng(self, ly: IntLayer) -> tuple[int, int]:
        return self.ranges.get(ly.inputs[0], (0, 0))

    # ------------------------------------------------------------------ fused groups
    def window_group(self, ly: IntLayer) -> tuple[list[IntLayer], IntLayer | None, tuple, tuple]:
        """(layers up to the sliding window, the window or None, padding, pixel stride or ())."""
        if ly.op == "FMPadding_Pixel":
            nxt = self.sole(ly.outputs[0], "FMPadding")
            swg = self.sole(nxt.outputs[0], _WINDOW) if nxt is not None else None
            if swg is None:  # pixel padding not followed by padding and a window: not fused
                return [ly], None, _NO_PAD, ()
            return [ly, nxt, swg], swg, tuple(nxt.attrs["Padding"]), tuple(ly.attrs["Stride"])
        if ly.op == "FMPadding":
            swg = self.sole(ly.outputs[0], _WINDOW)
            pad = tuple(ly.attrs["Padding"]) if swg is not None else _NO_PAD
            return [ly] + ([swg] if swg is not None else []), swg, pad, ()
        if ly.op == _WINDOW:
            return [ly], ly, _NO_PAD, ()
        return [ly], None, _NO_PAD, ()

    def fused(self, ly: IntLayer) -> bool:
        """Emit the fused group starting at ``ly``; False where there is none."""
        chain, swg, pad, stride_px = self.window_group(ly)
        if swg is None:
            return False
        mv = self.sole(swg.outputs[0], "MVAU")
        if mv is not None and not mv.attrs.get("noActivation", 0):
            mv = None  # an MVAU with its own thresholds: left unfused (not made by this compile)
        if mv is not None:
            return self.conv(ly, chain, swg, mv, pad, stride_px)
        pool = self.sole(swg.outputs[0], "Pool")
        sa = swg.attrs
        if pool is None or chain[0] is not swg or tuple(sa.get("Dilation", [1, 1])) != (1, 1):
            return False
        attrs = {
            "k": tuple(sa["ConvKernelDim"]),
            "stride": tuple(sa["Stride"]),
            "out": tuple(sa["OFMDim"]),
            "c": int(pool.attrs["Channels"]),
        }
        names = [swg.name, pool.name]
        step = Step(
            "maxpool", [ly.inputs[0]], pool.outputs, names, attrs, "max of integers (exact)"
        )
        self.emit(step, self.rng(ly))
        return True

    def conv(self, ly, chain, swg, mv, pad, stride_px) -> bool:  # noqa: ANN001
        """A convolution, or a transposed one where pixel padding leads the group."""
        sa = swg.attrs
        k, s, d = (
            tuple(sa["ConvKernelDim"]),
            tuple(sa["Stride"]),
            tuple(sa.get("Dilation", [1, 1])),
        )
        b = layer_bound(mv)
        c = mv.params["weights"].shape[0] // (k[0] * k[1])
        w = mv.params["weights"].astype(_acc_dtype(b)).reshape(k[0], k[1], c, -1)
        names = [*(z.name for z in chain), mv.name]
        if stride_px:
            q = k[0] - 1 - pad[0]
            sym = pad[0] == pad[1] == pad[2] == pad[3] and k[0] == k[1]
            if not (sym and s == (1, 1) and d == (1, 1) and q >= 0):
                return False  # not a transposed convolution we recognise: pixel padding alone
            blocks = tuple(stride_px) == k and q == 0
            attrs = {"w": w, "stride": stride_px, "pads": q, "k": k, "blocks": blocks}
            kind = "deconv"
        else:
            pads = pad if chain[0].op == "FMPadding" else _NO_PAD
            attrs = {"w": w, "pads": pads, "stride": s, "dilation": d, "k": k}
            attrs["out"] = tuple(sa["OFMDim"])
            kind = "conv"
        self.emit(Step(kind, [ly.inputs[0]], mv.outputs, names, attrs, _acc_proof(b)), (-b, b))
        return True

    # ------------------------------------------------------------------ single layers
    def thresholding(self, ly: IntLayer) -> None:
        st = _threshold_step(ly, self.rng(ly), [ly.inputs[0]], ly.outputs, [ly.name])
        self.emit(st, (st.attrs["act"], st.attrs["act"] + st.attrs["steps"]))

    def mvau(self, ly: IntLayer) -> None:
        b = layer_bound(ly)
        w = ly.params["weights"].astype(_acc_dtype(b))
        self.emit(Step("mvau", [ly.inputs[0]], ly.outputs, [ly.name], {"w": w}, _acc_proof(b)))
        self.ranges[ly.outputs[0]] = (-b, b)
        if not ly.attrs.get("noActivation", 0):
            th = _threshold_step(ly, (-b, b), ly.outputs, ly.outputs, [ly.name])
            self.emit(th, (th.attrs["act"], th.attrs["act"] + th.attrs["steps"]))

    def concat(self, ly: IntLayer) -> None:
        los, his = zip(*(self.ranges.get(i, (0, 0)) for i in ly.inputs))
        step = Step("concat", list(ly.inputs), ly.outputs, [ly.name], {}, "copy")
        self.emit(step, (min(los), max(his)))

    def dup(self, ly: IntLayer) -> None:
        self.emit(Step("dup", [ly.inputs[0]], ly.outputs, [ly.name], {}, "alias"))
        for o in ly.outputs:
            self.ranges[o] = self.rng(ly)

    def padding(self, ly: IntLayer) -> None:
        """Zeros around the frame (``pad``) or between its pixels (``pixelpad``): the range
        takes in 0."""
        if ly.op == "FMPadding":
            kind, attrs = "pad", {"pads": tuple(ly.attrs["Padding"])}
        else:
            kind, attrs = "pixelpad", {"stride": tuple(ly.attrs["Stride"])}
        lo, hi = self.rng(ly)
        self.emit(Step(kind, [ly.inputs[0]], ly.outputs, [ly.name], attrs, "copy"))
        self.ranges[ly.outputs[0]] = (min(lo, 0), max(hi, 0))

    def windows(self, ly: IntLayer) -> None:
        a = ly.attrs
        attrs = {
            "k": tuple(a["ConvKernelDim"]),
            "stride": tuple(a["Stride"]),
            "dilation": tuple(a.get("Dilation", [1, 1])),
            "out": tuple(a["OFMDim"]),
        }
        self.emit(Step("windows", [ly.inputs[0]], ly.outputs, [ly.name], attrs, "copy"))
        self.ranges[ly.outputs[0]] = self.rng(ly)

    def poolwin(self, ly: IntLayer) -> None:
        attrs = {"c": int(ly.attrs["Channels"])}
        step = Step("poolwin", [ly.inputs[0]], ly.outputs, [ly.name], attrs, "max of integers")
        self.emit(step, self.rng(ly))

    SINGLE = {
        "Thresholding": thresholding,
        "MVAU": mvau,
        "StreamingConcat": concat,
        "DuplicateStreams": dup,
        "FMPadding": padding,
        "FMPadding_Pixel": padding,
        _WINDOW: windows,
        "Pool": poolwin,
    }

    def single(self, ly: IntLayer) -> None:
        method = self.SINGLE.get(ly.op)
        if method is None:  # pragma: no cover - IntModel.load refuses unknown ops
            raise QdevError(f"unsupported op {ly.op}")
        method(self, ly)


def make_plan(model: IntModel) -> Plan:
    """The plan of ``model``: layers fused into convolutions, transposed convolutions and pools
    where the graph's pattern allows, each step with its exactness proof (a step that cannot be
    proven exact in float32 is refused: QdevError)."""
    pl = _Planner(model)
    for ly in model.layers:
        if ly.name not in pl.done and not pl.fused(ly):
            pl.single(ly)
    kinds: dict[str, int] = {}
    for s in pl.steps:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    missing = {ly.name for ly in model.layers} - pl.done
    if missing:  # pragma: no cover - every layer is matched above
        raise QdevError(f"plan: layers left out: {sorted(missing)}")
    return Plan(pl.steps, model.input["name"], model.output["name"], kinds)
