"""Training augmentation, applied to whole batches on the training device.

Documented choices (ultrasound has a depth axis, so no vertical flips or large rotations):

* horizontal flip, p = 0.5;
* random affine, p = 0.7: rotation +-10 deg, isotropic scale 0.9-1.1, shift +-6% of the size;
  bilinear for the image, nearest for the mask, zero (black) padding like the scanner's border;
* intensity, p = 0.8: gain 0.85-1.15, offset +-0.05, gamma 0.8-1.25, then clipped to [0, 1].

Presets (``qdev train --augment``): ``full`` (all of the above, default), ``flips`` (horizontal
flips only), ``none``, and ``strong``: wider geometry (rotation +-15 deg, scale 0.8-1.25, shift
+-10%), gamma 0.7-1.5, and three more intensity steps, each with its own probability:

* contrast, p = 0.15: (x - mean) * c + mean per image, c in 0.75-1.25;
* Gaussian blur, p = 0.2: sigma 0.5-1.0 px (a 5-tap kernel per image);
* Gaussian noise, p = 0.15: standard deviation drawn in 0-0.05 per image.

The ranges of ``strong`` follow the spirit of nnU-Net's 2-D defaults (scale 0.85-1.25, gamma
0.7-1.5, noise and blur among its extra intensity transforms: ``default_data_augmentation.py`` of
MIC-DKFZ/nnUNet v1); the numbers here are our own choice for 128 x 128 ultrasound. The extra steps
draw random numbers only where their probability is above 0, so ``full`` keeps its stream (and a
seed its draws) as before.

``scanner`` (for another site's scanner, issue 33) is ``strong`` plus the kinds of difference
between two machines and two operators, each with its own probability:

* depth crop, p = 0.3: the top 70-100% of the rows stretched to the full height (another depth
  setting: the same tissue at another scale along the beam), image and mask alike;
* time-gain curve, p = 0.5: a smooth gain along depth, 0.6-1.4 at three knots (top, middle,
  bottom) interpolated linearly (another TGC setting);
* resolution, p = 0.3: down to 50-90% of the side and back up bilinearly (another probe's
  lateral and axial resolution, another scan converter);
* speckle, p = 0.3: multiplicative noise ``x * (1 + s * n)`` with ``n`` blurred once so that the
  grain spans a few pixels, ``s`` in 0-0.25;
* caliper marks, p = 0.3: 1-4 bright "+" marks of 5 px at random places (BUS-UCLM's and many
  clinics' scans carry the sonographer's calipers; BUSI's mostly do not);
* aspect, within the affine step: width and height scaled by r and 1/r, r log-uniform in
  0.75-1.33 (scanners' fields of view differ in aspect, and every frame is resized to a square,
  so the same lesion arrives stretched differently).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["AUGMENT_PRESETS", "AugmentConfig", "augment_batch"]


@dataclass(frozen=True)
class AugmentConfig:
    hflip: float = 0.5
    affine: float = 0.7
    rotate_deg: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.06
    intensity: float = 0.8
    gain: tuple[float, float] = (0.85, 1.15)
    offset: float = 0.05
    gamma: tuple[float, float] = (0.8, 1.25)
    contrast: float = 0.0
    contrast_range: tuple[float, float] = (0.75, 1.25)
    blur: float = 0.0
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    noise: float = 0.0
    noise_sigma: float = 0.05
    depth_crop: float = 0.0
    depth_keep: tuple[float, float] = (0.7, 1.0)
    tgc: float = 0.0
    tgc_range: tuple[float, float] = (0.6, 1.4)
    resolution: float = 0.0
    resolution_range: tuple[float, float] = (0.5, 0.9)
    speckle: float = 0.0
    speckle_sigma: float = 0.25
    calipers: float = 0.0
    aspect: tuple[float, float] = (1.0, 1.0)


AUGMENT_PRESETS: dict[str, AugmentConfig | None] = {
    "full": AugmentConfig(),
    "flips": AugmentConfig(affine=0.0, intensity=0.0),
    "none": None,
    "strong": AugmentConfig(
        rotate_deg=15.0,
        scale=(0.8, 1.25),
        shift=0.10,
        gamma=(0.7, 1.5),
        contrast=0.15,
        blur=0.2,
        noise=0.15,
    ),
}
AUGMENT_PRESETS["scanner"] = AugmentConfig(
    **{
        **AUGMENT_PRESETS["strong"].__dict__,
        "depth_crop": 0.3,
        "tgc": 0.5,
        "resolution": 0.3,
        "speckle": 0.3,
        "calipers": 0.3,
        "aspect": (0.75, 1.33),
    }
)


def _u(g: torch.Generator, n: int, lo: float, hi: float, device) -> torch.Tensor:  # noqa: ANN001
    return (torch.rand(n, generator=g) * (hi - lo) + lo).to(device)


def augment_batch(
    x: torch.Tensor, y: torch.Tensor, g: torch.Generator, cfg: AugmentConfig = AugmentConfig()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment images ``x`` [B,1,H,W] in [0,1] and masks ``y`` [B,1,H,W] with generator ``g``."""
    b, dev = x.shape[0], x.device
    if cfg.depth_crop > 0:  # geometry first, so that the later steps act on the new scale
        use = (torch.rand(b, generator=g) < cfg.depth_crop).to(dev)[:, None, None, None]
        xc, yc = _depth_crop(x, y, g, cfg)
        x, y = torch.where(use, xc, x), torch.where(use, yc, y)
    flip = (torch.rand(b, generator=g) < cfg.hflip).to(dev)
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    y = torch.where(flip[:, None, None, None], y.flip(-1), y)
    use = (torch.rand(b, generator=g) < cfg.affine).to(dev)
    ang = _u(g, b, -cfg.rotate_deg, cfg.rotate_deg, dev) * math.pi / 180 * use
    sc = torch.where(use, _u(g, b, *cfg.scale, dev), torch.ones(b, device=dev))
    tx = _u(g, b, -cfg.shift, cfg.shift, dev) * 2 * use
    ty = _u(g, b, -cfg.shift, cfg.shift, dev) * 2 * use
    if cfg.aspect != (1.0, 1.0):  # drawn only where asked, so the other presets keep their stream
        r = torch.exp(_u(g, b, math.log(cfg.aspect[0]), math.log(cfg.aspect[1]), dev) * use)
    else:
        r = torch.ones(b, device=dev)
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack(
        [torch.stack([cos / r, -sin / r, tx], 1), torch.stack([sin * r, cos * r, ty], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = F.grid_sample(y, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    use = (torch.rand(b, generator=g) < cfg.intensity).to(dev)[:, None, None, None]
    gain = _u(g, b, *cfg.gain, dev)[:, None, None, None]
    off = _u(g, b, -cfg.offset, cfg.offset, dev)[:, None, None, None]
    gam = torch.exp(_u(g, b, math.log(cfg.gamma[0]), math.log(cfg.gamma[1]), dev))[
        :, None, None, None
    ]
    xi = (x.clamp(0, 1) ** gam * gain + off).clamp(0, 1)
    x = torch.where(use, xi, x)
    for p, step in ((cfg.contrast, _contrast), (cfg.blur, _blur), (cfg.noise, _noise)):
        if p > 0:
            use = (torch.rand(b, generator=g) < p).to(dev)[:, None, None, None]
            x = torch.where(use, step(x, g, cfg), x)
    for p, step in (
        (cfg.tgc, _tgc),
        (cfg.resolution, _resolution),
        (cfg.speckle, _speckle),
        (cfg.calipers, _calipers),
    ):
        if p > 0:
            use = (torch.rand(b, generator=g) < p).to(dev)[:, None, None, None]
            x = torch.where(use, step(x, g, cfg), x)
    return x, y


def _contrast(x: torch.Tensor, g: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    c = _u(g, x.shape[0], *cfg.contrast_range, x.device)[:, None, None, None]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * c + mean).clamp(0, 1)


def _blur(x: torch.Tensor, g: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    b = x.shape[0]
    sigma = _u(g, b, *cfg.blur_sigma, x.device)[:, None]
    taps = torch.arange(-2, 3, device=x.device, dtype=x.dtype)[None, :]
    k = torch.exp(-0.5 * (taps / sigma) ** 2)
    k = k / k.sum(1, keepdim=True)  # [B, 5], one normalised kernel per image
    xs = x.transpose(0, 1)  # [1, B, H, W]: each image its own group
    xs = F.conv2d(F.pad(xs, (2, 2, 0, 0), mode="replicate"), k[:, None, None, :], groups=b)
    xs = F.conv2d(F.pad(xs, (0, 0, 2, 2), mode="replicate"), k[:, None, :, None], groups=b)
    return xs.transpose(0, 1)


def _noise(x: torch.Tensor, g: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    sd = _u(g, x.shape[0], 0.0, cfg.noise_sigma, x.device)[:, None, None, None]
    n = torch.randn(x.shape, generator=g).to(x.device)
    return (x + n * sd).clamp(0, 1)


def _depth_crop(
    x: torch.Tensor, y: torch.Tensor, g: torch.Generator, cfg: AugmentConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    b, dev = x.shape[0], x.device
    keep = _u(g, b, *cfg.depth_keep, dev)
    # output row v in [-1, 1] samples input row -1 + (v + 1) * keep: the top `keep` of the depth
    zero, one = torch.zeros(b, device=dev), torch.ones(b, device=dev)
    theta = torch.stack(
        [torch.stack([one, zero, zero], 1), torch.stack([zero, keep, keep - 1], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return (
        F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False),
        F.grid_sample(y, grid, mode="nearest", padding_mode="border", align_corners=False),
    )


def _tgc(x: torch.Tensor, g: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    b, h = x.shape[0], x.shape[2]
    knots = _u(g, b * 3, *cfg.tgc_range, x.device).view(b, 1, 3)  # top, middle, bottom
    curve = F.interpolate(knots, size=h, mode="linear", align_corners=True)  # [B, 1, H]
    return (x * curve[:, :, :, None]).clamp(0, 1)


def _resolution(x: torch.Tensor, g: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    h, w = x.shape[2], x.shape[3]
    f = float(_u(g, 1, *cfg.resolution_range, "cpu")[0])  # one factor per batch: one resize call
    small = F.interpolate(
        x,
        size=(max(4, round(h * f)), max(4, round(w * f))),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


def _speckle(x: torch.Tensor, g: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    s = _u(g, x.shape[0], 0.0, cfg.speckle_sigma, x.device)[:, None, None, None]
    n = torch.randn(x.shape, generator=g).to(x.device)
    n = (
        F.avg_pool2d(F.pad(n, (1, 1, 1, 1), mode="replicate"), 3, stride=1) * 3.0
    )  # grain of ~3 px, unit sd
    return (x * (1 + s * n)).clamp(0, 1)


def _calipers(x: torch.Tensor, g: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    b, _, h, w = x.shape
    marks = torch.zeros(b, 1, h, w)
    count = torch.randint(1, 5, (b,), generator=g)
    ys = torch.randint(2, h - 2, (b, 4), generator=g)
    xs = torch.randint(2, w - 2, (b, 4), generator=g)
    for i in range(b):
        for k in range(int(count[i])):
            cy, cx = int(ys[i, k]), int(xs[i, k])
            marks[i, 0, cy, cx - 2 : cx + 3] = 1.0
            marks[i, 0, cy - 2 : cy + 3, cx] = 1.0
    return torch.maximum(x, marks.to(x.device))
