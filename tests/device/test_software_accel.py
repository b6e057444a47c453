"""The software accelerator on the shipped bundles: signature, bit-exact golden self-test, and
equality with the int64 reference executor on random frames (runs in both environments)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qdev.core.intmodel import IntModel, run_reference
from qdev.core.software import F32_EXACT, SoftwareExecutor
from qdev.core.bundle import verify_bundle
from qdev.core.errors import QdevError

pytestmark = pytest.mark.device_env

REPO = Path(__file__).resolve().parents[2]
DEV_PUB = REPO / "keys" / "dev" / "qdev-dev.pub"
BUNDLES = sorted(p.parent for p in (REPO / "bitstreams").glob("*/*/manifest.json"))


def test_bundles_are_shipped_for_every_board():
    boards = {p.parent.name for p in BUNDLES}
    assert boards >= {"KV260", "ZCU104", "Ultra96-V2", "Pynq-Z2"}, boards


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_bundle_verifies_and_self_test_is_bit_exact(bundle):
    vb = verify_bundle(bundle, [DEV_PUB])
    m = vb.manifest
    assert (
        m["estimate_only"] is True and "accel.bit" not in m["files"]
    )  # nothing claimed that wasn't built
    model = IntModel.load(bundle / "intmodel.npz")
    ex = SoftwareExecutor(model)
    assert max(ex.bounds.values()) < F32_EXACT  # the float32 path is provably exact for this model
    pixels = np.load(bundle / m["self_test"]["input"])
    expected = np.load(bundle / m["self_test"]["expected"])
    assert np.array_equal(ex.run(pixels), expected)
    assert list(model.input["shape"][1:]) == m["io"]["ishape_normal"][1:]


def test_software_equals_reference_on_random_frames():
    model = IntModel.load(BUNDLES[0] / "intmodel.npz")
    rng = np.random.default_rng(0)
    h, w = model.input["shape"][1:3]
    frames = rng.integers(0, 256, (2, h, w), dtype=np.uint8)
    frames[1] = 0  # an all-black frame too
    assert np.array_equal(SoftwareExecutor(model).run(frames), run_reference(model, frames))


def test_bad_frames_are_refused():
    ex = SoftwareExecutor(IntModel.load(BUNDLES[0] / "intmodel.npz"))
    with pytest.raises(QdevError, match="does not match the model input"):
        ex.run(np.zeros((1, 7, 9), np.uint8))
    with pytest.raises(QdevError, match="not a qdev integer model|unreadable"):
        IntModel.from_arrays({"x": np.zeros(1)})


def test_fast_paths_are_planned_and_exact_on_random_frames():
    """The fused window-free convolution is taken for the shipped model, and gives the reference
    executor's codes on frames it was never tested on."""
    import numpy as np

    from qdev.core.intmodel import IntModel, run_reference
    from qdev.core.software import SoftwareExecutor
    from tests.device.helpers import SHIPPED

    m = IntModel.load(SHIPPED["KV260"] / "intmodel.npz")
    ex = SoftwareExecutor(m)
    kinds = ex.plan.describe()["kinds"]
    assert kinds["conv"] >= 15 and kinds["deconv"] == 4 and kinds["maxpool"] == 4
    assert ex.methods() == {"affine": 23}  # every threshold step of the shipped model proven affine
    rng = np.random.default_rng(5)
    frames = np.concatenate(
        [
            rng.integers(0, 256, (2, 128, 128), dtype=np.uint8),
            np.zeros((1, 128, 128), np.uint8),
            np.full((1, 128, 128), 255, np.uint8),
        ]
    )
    assert np.array_equal(ex.run(frames), run_reference(m, frames))


def _threshold_model(t: np.ndarray, act: int, channels: int) -> IntModel:
    from qdev.core.intmodel import IntLayer

    ly = IntLayer(
        "thr0",
        "Thresholding",
        ["x"],
        ["y"],
        {"ActVal": act, "inputDataType": "UINT8"},
        {"thresholds": t},
    )
    return IntModel(
        {"name": "x", "shape": [1, 6, 7, channels], "dtype": "UINT8", "layout": "NHWC"},
        {"name": "y", "shape": [1, 6, 7, channels], "dtype": "INT8", "layout": "NHWC"},
        1.0,
        [ly],
        {},
    )


@pytest.mark.parametrize("shared", [False, True], ids=["per-channel", "one-row"])
def test_threshold_table_equals_comparisons_and_the_reference(shared):
    """Fractional and repeated thresholds, a negative ActVal, values below and above every
    threshold: the table method gives the counts the comparison and search methods give, and
    the int64 reference executor's."""
    rng = np.random.default_rng(11)
    c = 5
    t = np.sort(rng.uniform(20, 230, (1 if shared else c, 15)), axis=1)
    t[:, 3] = t[:, 4]  # a repeated threshold
    t[:, 7] = np.floor(t[:, 7])  # an integer one: v == T counts
    model = _threshold_model(t, -4, c)
    px = rng.integers(0, 256, (3, 6, 7, c), dtype=np.uint8)
    px[0] = 0
    px[1] = 255
    px[2, 0, :, :] = np.floor(t[0, 7])
    lut = SoftwareExecutor(model, "lut")
    assert lut.thr[0].lut is not None
    got = lut.run(px)
    assert np.array_equal(got, run_reference(model, px))
    for method in ("affine", "compare", "search"):
        assert np.array_equal(SoftwareExecutor(model, method).run(px), got)
    assert got.min() == -4 and got.max() == 15 - 4


def test_threshold_table_too_large_falls_back(monkeypatch):
    import qdev.core.software as sw

    t = np.sort(np.random.default_rng(2).uniform(0, 250, (3, 7)), axis=1)
    model = _threshold_model(t, 0, 3)
    monkeypatch.setattr(sw, "TABLE_MAX", 10)
    ex = SoftwareExecutor(model, "lut")
    assert ex.thr[0].lut is None and ex.thr[0].method == "compare"
    px = np.random.default_rng(3).integers(0, 256, (2, 6, 7, 3), dtype=np.uint8)
    assert np.array_equal(ex.run(px), run_reference(model, px))


def test_every_threshold_method_is_exact_on_the_shipped_model():
    bundle = BUNDLES[0]
    model = IntModel.load(bundle / "intmodel.npz")
    m = verify_bundle(bundle, [DEV_PUB]).manifest
    pixels = np.load(bundle / m["self_test"]["input"])
    expected = np.load(bundle / m["self_test"]["expected"])
    for method in ("affine", "lut", "compare", "search"):
        assert np.array_equal(SoftwareExecutor(model, method).run(pixels), expected), method
    with pytest.raises(QdevError, match="unknown threshold method"):
        SoftwareExecutor(model, "fastest")
