"""The mask rule a bundle carries (core/maskrule.py): what it does to output codes, how a
bundle's rule is checked before anything is installed, and that the device's accelerator applies
it (runs in both environments)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qdev.device.accel.backend import open_accelerator
from qdev.core.bundle import BundleError, verify_bundle
from qdev.core.errors import QdevError
from qdev.core.maskrule import DEFAULT_RULE, MaskRule
from tests.device.helpers import copy_bundle, make_key, resign

pytestmark = pytest.mark.device_env


def test_threshold_and_minimum_area_on_codes():
    codes = np.zeros((3, 8, 8), np.int8)
    codes[0, :2, :2] = 5  # 4 pixels at code 5
    codes[1, :5, :5] = 5  # 25 pixels at code 5
    codes[2, :5, :5] = 2  # 25 pixels at code 2
    codes[2, 7, 7] = -3
    assert DEFAULT_RULE.apply(codes).reshape(3, -1).sum(1).tolist() == [4, 25, 25]
    assert MaskRule(min_code=2).apply(codes).reshape(3, -1).sum(1).tolist() == [
        4,
        25,
        0,
    ]  # code > 2
    assert MaskRule(min_area=10).apply(codes).reshape(3, -1).sum(1).tolist() == [
        0,
        25,
        25,
    ]  # 4 px cleared
    assert MaskRule(min_code=-4).apply(codes).reshape(3, -1).sum(1).tolist() == [64, 64, 64]
    nhwc = MaskRule(3, 10).apply(codes[..., None])  # the accelerator's NHWC layout gives the same
    assert (
        nhwc.dtype == np.uint8
        and nhwc.shape == (3, 8, 8)
        and nhwc.reshape(3, -1).sum(1).tolist() == [0, 25, 0]
    )


def test_peak_rule_clears_images_without_a_confident_pixel():
    codes = np.zeros((3, 8, 8), np.int8)
    codes[0, :5, :5] = 3  # a faint blob: 25 px at code 3, nothing higher
    codes[1, :5, :5] = 3
    codes[1, 2, 2] = 9  # the same blob with one confident pixel: kept whole
    codes[2] = -5  # nothing marked
    rule = MaskRule(min_code=0, min_area=0, min_peak=8)
    assert rule.apply(codes).reshape(3, -1).sum(1).tolist() == [0, 25, 0]
    assert MaskRule(0, 0, 2).apply(codes).reshape(3, -1).sum(1).tolist() == [25, 25, 0]
    assert MaskRule(0, 0, 9).apply(codes).reshape(3, -1).sum(1).tolist() == [
        0,
        0,
        0,
    ]  # "above", not "at"
    assert rule.describe() == "code > 0, images without a code > 8 cleared" and not rule.is_default
    assert rule.to_dict() == {"min_code": 0, "min_area": 0, "min_peak": 8}
    assert MaskRule(3, 10).to_dict() == {
        "min_code": 3,
        "min_area": 10,
    }  # rules without a peak: as before
    assert MaskRule.from_manifest(rule.to_dict()) == rule and rule.peak_logit(0.5) == 4.0
    assert MaskRule(3, 10).peak_logit(0.5) is None


@pytest.mark.parametrize(
    "value",
    [
        {"min_code": "0"},
        {"min_code": True},
        {"min_area": -1},
        {"min_area": 2**40},
        {"min_peak": "8"},
        {"min_peak": 2**20},
        {"min_peak": 1.0},
        {"min_peak": [8]},
        {"min_code": 1.5},
        {"min_code": 0, "shell": "rm -rf /"},
        [0, 25],
        "code > 1",
        {"min_code": {"nested": [1]}},
    ],
)
def test_malformed_rules_are_refused_with_one_line(value):
    with pytest.raises(QdevError) as e:
        MaskRule.from_manifest(value)
    assert "\n" not in str(e.value) and "mask rule" in str(e.value)


def test_legacy_and_absent_rules_are_the_default():
    assert MaskRule.from_manifest("code > 0") == MaskRule.from_manifest(None) == DEFAULT_RULE
    assert MaskRule.from_manifest({"min_code": 7, "min_area": 25}) == MaskRule(7, 25)


def test_bundle_rule_is_checked_at_verification_and_applied_by_the_accelerator(tmp_path):
    key, pub = make_key(tmp_path)
    b = resign(
        copy_bundle(tmp_path / "ok"),
        key,
        format_version=2,
        mask_rule={"min_code": 40, "min_area": 25},
    )
    vb = verify_bundle(b, [pub])
    acc = open_accelerator(b, vb.manifest, backend="software")
    assert acc.io.mask_rule == MaskRule(40, 25)
    assert acc.describe()["io"]["mask_rule"] == "code > 40, masks under 25 px cleared"
    pixels = np.load(b / "golden_pixels.npy")
    codes = acc.run(pixels)
    masks, _ = acc.masks(pixels)
    assert np.array_equal(masks, MaskRule(40, 25).apply(codes))
    assert not np.array_equal(masks, DEFAULT_RULE.apply(codes))  # the rule changed what is shown
    # a peak rule: the device clears the frames whose highest code is not above it
    peak = int(np.sort(codes.reshape(len(codes), -1).max(1))[len(codes) // 2])
    pb = resign(
        copy_bundle(tmp_path / "peak"),
        key,
        format_version=2,
        mask_rule={"min_code": 0, "min_area": 0, "min_peak": peak},
    )
    pacc = open_accelerator(pb, verify_bundle(pb, [pub]).manifest, backend="software")
    pmasks, _ = pacc.masks(pixels)
    assert np.array_equal(pmasks, MaskRule(0, 0, peak).apply(codes))
    assert not np.array_equal(pmasks, DEFAULT_RULE.apply(codes))
    # refused before anything is installed: a malformed rule, a rule in a format-1 bundle
    bad = resign(copy_bundle(tmp_path / "bad"), key, format_version=2, mask_rule={"min_code": "40"})
    with pytest.raises(BundleError, match="min_code"):
        verify_bundle(bad, [pub])
    old = resign(
        copy_bundle(tmp_path / "old"),
        key,
        format_version=1,
        mask_rule={"min_code": 40, "min_area": 0},
    )
    with pytest.raises(BundleError, match="format 1 bundles carry only the default"):
        verify_bundle(old, [pub])
    future = resign(copy_bundle(tmp_path / "future"), key, format_version=3)
    with pytest.raises(BundleError, match="not a qdev bundle of format 1 or 2"):
        verify_bundle(future, [pub])
    assert (
        json.loads((tmp_path / "ok" / "manifest.json").read_text())["mask_rule"]["min_area"] == 25
    )
