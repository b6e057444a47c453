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


AUGMENT_PRESETS: dict[str, AugmentConfig | None] = {
    "full": AugmentConfig(),
    "flips": AugmentConfig(affine=0.0, intensity=0.0),
    "none": None,
    "strong": AugmentConfig(rotate_deg=15.0, scale=(0.8, 1.25), shift=0.10, gamma=(0.7, 1.5),
                            contrast=0.15, blur=0.2, noise=0.15),
}


def _u(g: torch.Generator, n: int, lo: float, hi: float, device) -> torch.Tensor:  # noqa: ANN001
    return (torch.rand(n, generator=g) * (hi - lo) + lo).to(device)


def augment_batch(
    x: torch.Tensor, y: torch.Tensor, g: torch.Generator, cfg: AugmentConfig = AugmentConfig()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment images ``x`` [B,1,H,W] in [0,1] and masks ``y`` [B,1,H,W] with generator ``g``."""
    b, dev = x.shape[0], x.device
    flip = (torch.rand(b, generator=g) < cfg.hflip).to(dev)
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    y = torch.where(flip[:, None, None, None], y.flip(-1), y)
    use = (torch.rand(b, generator=g) < cfg.affine).to(dev)
    ang = _u(g, b, -cfg.rotate_deg, cfg.rotate_deg, dev) * math.pi / 180 * use
    sc = torch.where(use, _u(g, b, *cfg.scale, dev), torch.ones(b, device=dev))
    tx = _u(g, b, -cfg.shift, cfg.shift, dev) * 2 * use
    ty = _u(g, b, -cfg.shift, cfg.shift, dev) * 2 * use
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = F.grid_sample(y, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    use = (torch.rand(b, generator=g) < cfg.intensity).to(dev)[:, None, None, None]
    gain = _u(g, b, *cfg.gain, dev)[:, None, None, None]
    off = _u(g, b, -cfg.offset, cfg.offset, dev)[:, None, None, None]
    gam = torch.exp(_u(g, b, math.log(cfg.gamma[0]), math.log(cfg.gamma[1]), dev))[:, None, None, None]
    xi = (x.clamp(0, 1) ** gam * gain + off).clamp(0, 1)
    x = torch.where(use, xi, x)
    for p, step in ((cfg.contrast, _contrast), (cfg.blur, _blur), (cfg.noise, _noise)):
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
