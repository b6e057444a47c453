"""The integer model lowered to an exact ONNX graph, for onnxruntime (the ``onnx`` backend).

Each step of the model's execution plan (:mod:`qdev.core.intplan`) becomes standard float32 ONNX
operators, NCHW inside (uint8 NHWC pixels in, int32 NHWC codes out):

* ``conv`` -> ``Conv`` (padding folded in), ``deconv`` -> ``ConvTranspose`` (kernel flipped,
  pads ``k - 1 - p``), ``maxpool`` -> ``MaxPool``, ``concat`` -> ``Concat``;
* ``threshold`` -> ``Add(a) Mul(b) Floor Clip(0, S) [Add(ActVal)]`` where the plan proved that form
  equal, in float32 as computed, to the threshold count for every integer of the input's range,
  else ``Unsqueeze GreaterOrEqual Cast ReduceSum [Add]`` (exact comparisons).

Exactness rests on the plan's proofs (every accumulator below 2^24; every affine threshold
checked) and on onnxruntime computing each operator in IEEE float32. Two of its graph fusions
would break the second: ``ConvAddFusion`` and ``ConvMulFusion`` fold a threshold's non-integer
``a``/``b`` into the convolution's weights and bias, so its sums are no longer of integers.
:func:`session_options` turns them off (and :func:`fused_into_conv` lets a test check that no
non-integer constant reached a convolution in the optimised graph). onnxruntime's CPU
convolutions are im2col/direct GEMMs (no Winograd or FFT), summing the same integer products.

``onnx`` and ``onnxruntime`` are imported inside the functions: the board's runtime loads them
only when this backend is used.
"""

from __future__ import annotations

import numpy as np

from qdev.core.errors import QdevError
from qdev.core.intmodel import IntModel
from qdev.core.intplan import Plan, Step, make_plan

__all__ = [
    "lower",
    "session_options",
    "DISABLED_OPTIMIZERS",
    "NotLowerable",
    "fused_into_conv",
    "OPSET",
]

OPSET = 17
#: onnxruntime graph optimisers that would fold non-integer threshold constants into a convolution
DISABLED_OPTIMIZERS = (
    "ConvAddFusion",
    "ConvMulFusion",
    "ConvBNFusion",
    "MatMulAddFusion",
    "MatMulScaleFusion",
)


class NotLowerable(QdevError):
    """The model has a step this lowering does not express (the numpy executor still runs it)."""


class _Graph:
    def __init__(self) -> None:
        from onnx import helper

        self.h = helper
        self.nodes: list = []
        self.inits: list = []
        self.n = 0

    def const(self, arr: np.ndarray, hint: str) -> str:
        from onnx import numpy_helper

        self.n += 1
        name = f"{hint}_{self.n}"
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def op(
        self, op_type: str, inputs: list[str], hint: str, n_out: int = 1, **attrs
    ) -> str | list[str]:  # noqa: ANN003
        self.n += 1
        outs = [f"{hint}_{self.n}_{i}" for i in range(n_out)]
        self.nodes.append(
            self.h.make_node(op_type, inputs, outs, name=f"{op_type}_{self.n}", **attrs)
        )
        return outs[0] if n_out == 1 else outs


def _f32_weights(st: Step) -> np.ndarray:
    """The step's weights, which float32 must hold exactly (the plan chose float64 otherwise)."""
    w = st.attrs["w"]
    if w.dtype != np.float32:
        raise NotLowerable(f"{st.layers[-1]}: its accumulators need float64")
    return w


def _conv(g: _Graph, st: Step, x: str) -> str:
    a = st.attrs
    w = _f32_weights(st)
    t, left, b, r = a["pads"]
    wn = g.const(w.transpose(3, 2, 0, 1), "W")  # [Cout, C, kh, kw]
    return g.op(
        "Conv",
        [x, wn],
        "conv",
        kernel_shape=list(w.shape[:2]),
        pads=[t, left, b, r],
        strides=list(a["stride"]),
        dilations=list(a["dilation"]),
    )


def _deconv(g: _Graph, st: Step, x: str) -> str:
    a = st.attrs
    w = _f32_weights(st)
    wt = np.ascontiguousarray(w[::-1, ::-1].transpose(2, 3, 0, 1))  # [C, Cout, kh, kw]
    q = int(a["pads"])
    return g.op(
        "ConvTranspose",
        [x, g.const(wt, "Wt")],
        "deconv",
        kernel_shape=list(w.shape[:2]),
        strides=list(a["stride"]),
        pads=[q, q, q, q],
    )


def _maxpool(g: _Graph, st: Step, x: str) -> str:
    a = st.attrs
    return g.op("MaxPool", [x], "pool", kernel_shape=list(a["k"]), strides=list(a["stride"]))


def _per_channel(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32).reshape(-1)
    return v.reshape(1, -1, 1, 1)


def _threshold(g: _Graph, st: Step, x: str) -> str:
    a = st.attrs
    steps, act = a["steps"], a["act"]
    if a["method"] == "affine":
        y = g.op("Add", [x, g.const(_per_channel(a["a"]), "thr_a")], "thr")
        y = g.op("Mul", [y, g.const(_per_channel(a["b"]), "thr_b")], "thr")
        y = g.op("Floor", [y], "thr")
        y = g.op(
            "Clip",
            [y, g.const(np.array(0, np.float32), "lo"), g.const(np.array(steps, np.float32), "hi")],
            "thr",
        )
    else:
        t = np.asarray(a["t"], np.float32)  # [C or 1, S], integers within the input's range + 1
        t5 = t.reshape(1, t.shape[0], 1, 1, t.shape[1])
        u = g.op("Unsqueeze", [x, g.const(np.array([-1], np.int64), "ax")], "thr")
        ge = g.op("GreaterOrEqual", [u, g.const(t5, "thr_t")], "thr")
        f = g.op("Cast", [ge], "thr", to=1)  # FLOAT
        y = g.op("ReduceSum", [f, g.const(np.array([-1], np.int64), "ax")], "thr", keepdims=0)
    if act:
        y = g.op("Add", [y, g.const(np.array(act, np.float32), "act")], "thr")
    return y


def _mvau(g: _Graph, st: Step, x: str) -> str:
    w = _f32_weights(st)
    wn = g.const(np.ascontiguousarray(w.T.reshape(w.shape[1], w.shape[0], 1, 1)), "W")
    return g.op("Conv", [x, wn], "mvau", kernel_shape=[1, 1])


_LOWER = {
    "conv": _conv,
    "deconv": _deconv,
    "maxpool": _maxpool,
    "threshold": _threshold,
    "mvau": _mvau,
}


def _lower_steps(g: _Graph, plan: Plan, first: str) -> tuple[str, list[dict]]:
    """Add every plan step to ``g`` after the tensor ``first``; returns the name of the plan's
    output in ``g`` and one proof entry per lowered step."""
    name = {plan.input: first}
    proofs = []
    for st in plan.steps:
        if st.kind == "dup":
            for o in st.outputs:
                name[o] = name[st.inputs[0]]
            continue
        if st.kind == "concat":
            name[st.outputs[0]] = g.op("Concat", [name[i] for i in st.inputs], "cat", axis=1)
            continue
        if st.kind not in _LOWER:
            raise NotLowerable(f"plan step {st.kind} ({', '.join(st.layers)}) has no ONNX lowering")
        name[st.outputs[0]] = _LOWER[st.kind](g, st, name[st.inputs[0]])
        proofs.append({"step": st.label, "layers": st.layers, "proof": st.proof})
    return name[plan.output], proofs


def lower(model: IntModel, plan: Plan | None = None) -> tuple[bytes, dict]:
    """The ONNX graph (serialised ModelProto) of ``model`` and a description of what was lowered
    and why it is exact. Raises :class:`NotLowerable` for a step it does not express."""
    import onnx
    from onnx import TensorProto, helper

    plan = plan or make_plan(model)
    g = _Graph()
    shape_in = list(model.input["shape"])
    shape_out = list(model.output["shape"])
    cast = g.op("Cast", ["pixels"], "in", to=TensorProto.FLOAT)
    last, proofs = _lower_steps(g, plan, g.op("Transpose", [cast], "in", perm=[0, 3, 1, 2]))
    nhwc = g.op("Transpose", [last], "out", perm=[0, 2, 3, 1])
    out = g.op("Cast", [nhwc], "out", to=TensorProto.INT32)
    graph = helper.make_graph(
        g.nodes,
        "qdev_intmodel",
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["N", *shape_in[1:]])],
        [helper.make_tensor_value_info(out, TensorProto.INT32, ["N", *shape_out[1:]])],
        g.inits,
    )
    m = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="qdev"
    )
    m.ir_version = 8
    onnx.checker.check_model(m)
    kinds: dict[str, int] = {}
    for p in proofs:
        kinds[p["step"]] = kinds.get(p["step"], 0) + 1
    return m.SerializeToString(), {
        "opset": OPSET,
        "nodes": len(g.nodes),
        "steps": kinds,
        "proofs": proofs,
        "disabled_optimizers": list(DISABLED_OPTIMIZERS),
    }


def session_options(threads: int = 1, optimized_model_path: str | None = None):  # noqa: ANN201
    """onnxruntime session options that keep the lowered graph exact: every optimisation on but
    :data:`DISABLED_OPTIMIZERS` (passed to the session as ``disabled_optimizers``), ``threads``
    intra-op threads, sequential execution."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized_model_path:
        so.optimized_model_filepath = optimized_model_path
    return so


def make_session(onnx_bytes: bytes, threads: int = 1, optimized_model_path: str | None = None):  # noqa: ANN201
    import onnxruntime as ort

    return ort.InferenceSession(
        onnx_bytes,
        session_options(threads, optimized_model_path),
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(DISABLED_OPTIMIZERS),
    )


def fused_into_conv(optimized_model_path: str) -> list[str]:
    """Convolutions of an optimised graph whose weights or bias are not all integers: what a
    fusion of a threshold's scale or offset into the convolution leaves behind."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(optimized_model_path)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    bad = []
    for n in m.graph.node:
        if "Conv" not in n.op_type:
            continue
        for i in n.input[1:3]:
            v = inits.get(i)
            if v is not None and v.dtype.kind == "f" and not np.array_equal(v, np.round(v)):
                bad.append(f"{n.name} ({n.op_type}): non-integer {i}")
    return bad
