"""The mask-rule search of ``qdev postprocess`` (training/postprocess.py) on codes whose answer is
known: which rule wins, that ties go to the simpler rule, and that its figures are the Dice the
device's masks score."""

from __future__ import annotations

import numpy as np

from qdev.core.masks import dice
from qdev.core.maskrule import DEFAULT_RULE, MaskRule
import pytest

from qdev.core.errors import QdevError
from qdev.training.postprocess import (
    NORMAL,
    RuleSearch,
    paired_bootstrap,
    rule_figures,
    search_rules,
)

SCALE = 0.0625  # logit = code / 16


def _scans(rng: np.random.Generator, n_lesion: int = 12, n_normal: int = 6):
    """Lesion images: a 10x10 lesion at code 20 whose 4x4 core is confident (code 100); normal
    scans: a faint
    12x12 blob at code 20 (logit 1.25) and nothing above it. Background at code -40."""
    n = n_lesion + n_normal
    codes = np.full((n, 32, 32), -40, np.int32)
    truth = np.zeros((n, 32, 32), bool)
    labels = np.array([0] * n_lesion + [NORMAL] * n_normal)
    for i in range(n):
        y, x = rng.integers(0, 20, 2)
        if i < n_lesion:
            truth[i, y : y + 10, x : x + 10] = True
            codes[i, y : y + 10, x : x + 10] = 20
            codes[i, y + 3 : y + 7, x + 3 : x + 7] = 100
        else:
            codes[i, y : y + 12, x : x + 12] = 20
    return codes, truth, labels


def test_peak_rule_wins_where_normal_scans_carry_only_faint_blobs():
    codes, truth, labels = _scans(np.random.default_rng(0))
    found = search_rules(codes, truth, labels, SCALE)
    rule, fig, default, grid = found.rule, found.figures, found.default, found.grid
    # the blobs are as large and as bright as the lesions' bodies: no area and no threshold removes
    # them without cutting the lesions to their cores; only a peak between logit 1.25 and 6.25 does
    assert default["normal_marked"] == 6 and fig["normal_marked"] == 0 and fig["missed"] == 0
    assert rule.min_peak is not None and 20 <= rule.min_peak < 100 and fig["dice_all"] == 1.0
    assert fig == rule_figures(rule.apply(codes), truth, labels)
    assert (
        found.steps[-1].stage == "peak" and found.steps[-1].taken and found.steps[-1].p_gain > 0.99
    )
    assert any(r.min_peak is None for r, _ in grid) and all(
        r.min_peak is None or r.min_peak > r.min_code for r, _ in grid
    )  # no redundant peaks


def test_ties_go_to_the_default_then_to_no_peak():
    codes, truth, labels = _scans(np.random.default_rng(1), n_normal=0)  # nothing for a rule to fix
    codes[codes == 20] = 100
    found = search_rules(codes, truth, labels, SCALE)
    assert found.rule == DEFAULT_RULE and found.figures == found.default
    assert not any(st.taken for st in found.steps)
    no_peaks = RuleSearch(peak_logits=(None,))
    assert all(r.min_peak is None for r in no_peaks.rules(SCALE))
    assert len(RuleSearch().rules(SCALE)) > len(no_peaks.rules(SCALE))


def test_figures_are_the_devices_dice_per_image():
    rng = np.random.default_rng(2)
    codes, truth, labels = _scans(rng)
    codes += rng.integers(-60, 60, codes.shape).astype(np.int32)  # noisy masks, partial overlaps
    rule = MaskRule(0, 25, 50)
    masks = rule.apply(codes)
    f = rule_figures(masks, truth, labels)
    per_image = [dice(p, t) for p, t in zip(masks, truth)]
    assert abs(f["dice_all"] - np.mean(per_image)) < 1e-12
    assert abs(f["dice_lesion"] - np.mean(per_image[:12])) < 1e-12
    assert f["normal_marked"] == int(masks[12:].reshape(6, -1).any(1).sum())
    assert f["missed"] == int((np.array(per_image[:12]) < 0.1).sum())


def test_a_gain_carried_by_one_image_is_not_taken():
    """Forty lesion images the network already gets right and one normal scan with a faint blob
    that a higher threshold or a peak clears: such a rule wins the grid by one image (about 1/41 of
    all-image Dice), and the bootstrap margin keeps the network's own masks; without the margin the
    grid's best rule is taken."""
    codes, truth, labels = _scans(np.random.default_rng(3), n_lesion=40, n_normal=1)
    codes[codes == 20] = 100  # lesions confident all over: only the normal scan's blob stays faint
    codes[40][codes[40] == 100] = 20
    found = search_rules(codes, truth, labels, SCALE)
    assert found.rule == DEFAULT_RULE and found.figures["normal_marked"] == 1
    assert [st.stage for st in found.steps] == ["threshold and area", "peak"]
    for st in found.steps:
        assert not st.taken and abs(st.gain - (1.0 - found.default["dice_all"])) < 1e-9
        # P(the one improved image is in a resample) = 1 - (40/41)^41, about 0.64
        assert 0.55 < st.p_gain < 0.72
    loose = search_rules(codes, truth, labels, SCALE, RuleSearch(level=0.0))
    assert (
        loose.rule != DEFAULT_RULE
        and loose.figures["normal_marked"] == 0
        and loose.figures["dice_all"] == 1.0
    )


def test_paired_bootstrap_counts_resamples_with_a_positive_mean():
    assert paired_bootstrap(np.ones(5), 100) == 1.0
    assert paired_bootstrap(-np.ones(5), 100) == 0.0
    assert paired_bootstrap(np.zeros(5), 100) == 0.0  # no gain is not a gain
    mixed = np.array([1.0] + [0.0] * 9)
    p = paired_bootstrap(mixed, 4000)
    assert abs(p - (1 - 0.9**10)) < 0.03  # the image with the gain is drawn at least once
    assert paired_bootstrap(mixed, 4000) == p  # seeded: the same search gives the same choice


def test_search_settings_are_checked():
    with pytest.raises(QdevError, match="level"):
        RuleSearch(level=1.0)
    with pytest.raises(QdevError, match="resamples"):
        RuleSearch(resamples=0)
