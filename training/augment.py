"""Training augmentation, applied to whole batches on the training device.

Documented choices (ultrasound has a depth axis, so no vertical flips or large rotations):

* horizontal flip, p = 0.5;
* random affine, p = 0.7: rotation +-10 deg, isotropic scale 0.9-1.1, shift +-6% of the size;
  bilinear for the image, nearest for the mask, zero (black) padding like the scanner's border;
* intensity, p = 0.8: gain 0.85-1.15, offset +-0.05, gamma 0.8-1.25, then clipped to [0, 1].

Presets (``qdev train --augment``): ``full`` (all of the above, default), ``flips`` (horizontal
flips only), ``none``.
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


AUGMENT_PRESETS: dict[str, AugmentConfig | None] = {
    "full": AugmentConfig(),
    "flips": AugmentConfig(affine=0.0, intensity=0.0),
    "none": None,
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
    return torch.where(use, xi, x), y
