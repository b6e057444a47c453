"""The software accelerators' shared plan and the onnx backend: every step proven exact at
lowering, bit-exact on every shipped bundle's golden frames and on adversarial frames, the
affine thresholds checked on every integer through onnxruntime itself, and the fusions that
would fold non-integer constants into a convolution kept off (runs in both environments)."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import numpy as np
import pytest

from qdev.core.intmodel import IntLayer, IntModel, dtype_range, run_reference
from qdev.core.intplan import fit_affine, make_plan
from qdev.core.software import SoftwareExecutor

pytestmark = pytest.mark.device_env

REPO = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p.parent for p in (REPO / "bitstreams").glob("*/*/manifest.json"))
HAS_ORT = bool(importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"))
needs_ort = pytest.mark.skipif(
    not HAS_ORT, reason="onnxruntime/onnx not installed in this environment"
)


def adversarial(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:h, :w]
    return np.stack(
        [
            np.zeros((h, w), np.uint8),
            np.full((h, w), 255, np.uint8),
            rng.integers(0, 256, (h, w), dtype=np.uint8),
            (((yy // 1 + xx // 1) % 2) * 255).astype(np.uint8),  # 1-pixel checkerboard
            (((yy // 8 + xx // 8) % 2) * 255).astype(np.uint8),  # 8-pixel checkerboard
            ((xx * 255) // (w - 1)).astype(np.uint8),
        ]
    )  # a ramp through every level


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_numpy_plan_is_exact_on_every_bundle(bundle):
    model = IntModel.load(bundle / "intmodel.npz")
    px = np.concatenate(
        [np.load(bundle / "golden_pixels.npy"), adversarial(*model.input["shape"][1:3])]
    )
    want = run_reference(model, px)
    for method in ("affine", "lut"):
        assert np.array_equal(SoftwareExecutor(model, method).run(px), want), method


@needs_ort
@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_onnx_lowering_is_exact_on_every_bundle(bundle):
    from qdev.core.onnx_lower import lower, make_session

    model = IntModel.load(bundle / "intmodel.npz")
    graph, info = lower(model)
    assert info["proofs"] and all(p["proof"] for p in info["proofs"])
    sess = make_session(graph)
    golden = np.load(bundle / "golden_pixels.npy")
    assert np.array_equal(
        sess.run(None, {"pixels": golden[..., None]})[0], np.load(bundle / "golden_codes.npy")
    )
    px = adversarial(*model.input["shape"][1:3])
    assert np.array_equal(sess.run(None, {"pixels": px[..., None]})[0], run_reference(model, px))


def test_fit_affine_finds_bn_style_thresholds_and_refuses_others():
    rng = np.random.default_rng(3)
    # thresholds of a uniform quantiser behind a folded BatchNorm: T_k = (k + 0.5 - beta) / gamma
    gamma, beta = rng.uniform(0.01, 0.3, 6), rng.uniform(-3, 3, 6)
    t = np.ceil((np.arange(7)[None] + 0.5 - beta[:, None]) / gamma[:, None])
    fit = fit_affine(t, -2000, 2000)
    assert fit is not None
    a, b = fit
    xs = np.arange(-2000, 2001)
    for r in range(6):  # every integer of the range, independently of the proof inside
        got = np.clip(np.floor((xs.astype(np.float32) + a[r]) * b[r]), 0, 7)
        assert np.array_equal(got, np.searchsorted(t[r], xs, side="right"))
    assert fit_affine(np.array([[1.0, 2.0, 10.0]]), -50, 50) is None  # no line through these steps
    assert fit_affine(np.array([[3.0, 3.0, 3.0]]), -50, 50) is not None  # all at once: s -> small


def test_non_affine_thresholds_fall_back_to_exact_comparisons():
    t = np.array([[1, 2, 10, 11], [0, 5, 6, 40]], np.int64)
    ly = IntLayer(
        "thr0",
        "Thresholding",
        ["x"],
        ["y"],
        {"ActVal": -1, "inputDataType": "UINT8"},
        {"thresholds": t},
    )
    model = IntModel(
        {"name": "x", "shape": [1, 16, 16, 2], "dtype": "UINT8", "layout": "NHWC"},
        {"name": "y", "shape": [1, 16, 16, 2], "dtype": "INT8", "layout": "NHWC"},
        1.0,
        [ly],
        {},
    )
    plan = make_plan(model)
    assert plan.steps[0].attrs["method"] == "compare"
    px = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(2, axis=3)
    want = run_reference(model, px)
    assert np.array_equal(SoftwareExecutor(model).run(px), want)
    if HAS_ORT:
        from qdev.core.onnx_lower import lower, make_session

        assert np.array_equal(make_session(lower(model)[0]).run(None, {"pixels": px})[0], want)


@needs_ort
def test_every_affine_threshold_of_the_shipped_model_is_exact_in_onnxruntime():
    """Each threshold step of the shipped model, run by onnxruntime on every integer its input
    type can hold, gives the count: the float32 arithmetic of the session itself, checked."""
    from onnx import TensorProto, helper

    from qdev.core.onnx_lower import OPSET, _Graph, _threshold, make_session

    model = IntModel.load(BUNDLES[0] / "intmodel.npz")
    plan = make_plan(model)
    checked = 0
    for st in plan.steps:
        if st.kind != "threshold":
            continue
        lo, hi = st.attrs["range"]
        c = st.attrs["t"].shape[0]
        xs = np.arange(lo, hi + 1, dtype=np.float32)
        g = _Graph()
        y = _threshold(g, st, "x")
        gr = helper.make_graph(
            g.nodes,
            "t",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, len(xs), 1])],
            [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)],
            g.inits,
        )
        m = helper.make_model(gr, opset_imports=[helper.make_opsetid("", OPSET)])
        m.ir_version = 8
        x = np.broadcast_to(xs[None, None, :, None], (1, c, len(xs), 1)).astype(np.float32)
        got = make_session(m.SerializeToString()).run(None, {"x": x})[0][0, :, :, 0]
        ly = next(l for l in model.layers if l.name == st.layers[-1])
        t = np.broadcast_to(ly.params["thresholds"], (c, ly.params["thresholds"].shape[1]))
        want = (
            np.stack([np.searchsorted(np.ceil(t[ch]), xs, side="right") for ch in range(c)])
            + st.attrs["act"]
        )
        assert np.array_equal(got, want), st.layers
        dlo, dhi = dtype_range(ly.attrs["inputDataType"])
        assert lo <= dlo and hi >= dhi  # every integer the input type allows was checked
        checked += 1
    assert checked == 23


@needs_ort
def test_the_fusions_that_would_break_exactness_stay_off():
    """With qdev's session options no convolution of the optimised graph carries a non-integer
    constant; with onnxruntime's defaults its Conv+Add fusion folds the thresholds' offsets in."""
    import onnxruntime as ort

    from qdev.core.onnx_lower import fused_into_conv, lower, make_session

    model = IntModel.load(BUNDLES[0] / "intmodel.npz")
    graph, _ = lower(model)
    with tempfile.TemporaryDirectory() as d:
        ours = str(Path(d) / "ours.onnx")
        make_session(graph, 1, ours)
        assert fused_into_conv(ours) == []
        default = str(Path(d) / "default.onnx")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = default
        ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
        assert fused_into_conv(default), (
            "onnxruntime no longer fuses Conv+Add: revisit DISABLED_OPTIMIZERS"
        )


@needs_ort
def test_auto_picks_onnx_and_says_it_is_exact():
    import json

    from qdev.device.accel.backend import open_accelerator

    b = BUNDLES[0]
    man = json.loads((b / "manifest.json").read_text())
    acc = open_accelerator(b, man, "auto")
    d = acc.describe()
    assert acc.name == "onnx" and d["exact"]["proven"] and "onnxruntime" in d["executor"]
    px = np.load(b / "golden_pixels.npy")
    assert np.array_equal(acc.run(px), np.load(b / "golden_codes.npy"))
    sw = open_accelerator(b, man, "software")
    assert sw.describe()["exact"]["proven"] and np.array_equal(sw.run(px), acc.run(px))


def test_every_op_has_one_reference_definition_and_a_plan_step():
    from qdev.core.intmodel import OPS, REFERENCE_OPS

    assert set(REFERENCE_OPS) == set(OPS)
    model = IntModel.load(BUNDLES[0] / "intmodel.npz")
    covered = {name for st in make_plan(model).steps for name in st.layers}
    assert covered == {
        ly.name for ly in model.layers
    }  # every layer in exactly the steps that run it
