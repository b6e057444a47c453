"""The synthetic ultrasound phantom (numpy only; runs in both environments)."""

from __future__ import annotations

import numpy as np
import pytest

from qdev.core.probe.phantom import PhantomCine, PhantomConfig, phantom_image

pytestmark = pytest.mark.device_env


def test_same_seed_same_image_and_masks_exact():
    a, ma, ka = phantom_image(3, "benign", 96, 128)
    b, mb, kb = phantom_image(3, "benign", 96, 128)
    assert a.dtype == np.uint8 and a.shape == (96, 128) and ma.dtype == bool
    assert np.array_equal(a, b) and np.array_equal(ma, mb) and ka == kb == "benign"
    assert ma.any()


@pytest.mark.parametrize("kind", ["benign", "malignant"])
def test_lesions_are_hypoechoic(kind):
    darker = 0
    for seed in range(10):
        img, mask, _ = phantom_image(seed, kind)
        ring = np.zeros_like(mask)
        ys, xs = np.nonzero(mask)
        ring[max(ys.min() - 8, 0) : ys.max() + 8, max(xs.min() - 8, 0) : xs.max() + 8] = True
        ring &= ~mask
        darker += img[mask].mean() < 0.7 * img[ring].mean()
    assert darker >= 9  # lesion interior clearly darker than its surroundings


def test_normal_has_empty_mask_and_speckle_statistics():
    img, mask, kind = phantom_image(1, "normal")
    assert kind == "normal" and not mask.any()
    assert 20 < img.mean() < 200 and img.std() > 10  # textured, not flat


def test_depth_attenuation_darkens_deep_rows():
    means = np.mean([phantom_image(s, "normal", 128, 128)[0].astype(float) for s in range(8)], 0)
    assert means[100:120].mean() < means[30:50].mean()


def test_cine_moves_slowly_and_is_reproducible():
    cfg = PhantomConfig(kind="malignant", seed=5, motion_px_per_frame=0.5)
    frames = list(PhantomCine(cfg, n_frames=30))
    again = list(PhantomCine(cfg, n_frames=30))
    assert len(frames) == 30 and all(
        np.array_equal(a.image, b.image) for a, b in zip(frames, again)
    )
    centres = [np.argwhere(f.mask).mean(0) for f in frames]
    steps = [np.linalg.norm(b - a) for a, b in zip(centres, centres[1:])]
    assert max(steps) < 1.5 and np.linalg.norm(centres[-1] - centres[0]) > 1.0
    # speckle decorrelates gradually: consecutive frames correlate, but are not identical
    c = np.corrcoef(frames[0].image.ravel(), frames[1].image.ravel())[0, 1]
    assert 0.5 < c < 0.999
    assert frames[1].t_s == pytest.approx(1 / cfg.frame_rate_hz)


def test_unknown_kind_rejected():
    with pytest.raises(ValueError, match="unknown phantom kind"):
        phantom_image(0, "cyst")
