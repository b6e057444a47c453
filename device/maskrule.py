"""The mask rule: the accelerator's output codes -> the binary mask a user sees.

The network's last layer emits one signed integer code per pixel (logit = code x output scale).
The rule, chosen per model on the validation split (``qdev postprocess``) and signed into its
bundle, is two steps the board's CPU runs after the accelerator:

1. **threshold**: a pixel is lesion where ``code > min_code`` (0: logit > 0, the network's own
   decision);
2. **lesion presence**: a mask with fewer than ``min_area`` lesion pixels is cleared (an image-level
   rule against specks on normal scans; 0 or 1: off).

``qdev evaluate`` applies the same rule to the same integer codes, so what it measures is what the
device shows (tests/host/test_e2e.py checks the two agree). Bundles of format 1 carry the string
``"code > 0"``, which is the default rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qdev.device.errors import QdevError

__all__ = ["MaskRule", "DEFAULT_RULE"]

_LEGACY = "code > 0"
_MAX_CODE = 1 << 15  # output codes are at most 16-bit integers
_MAX_AREA = 1 << 24


@dataclass(frozen=True)
class MaskRule:
    """``code > min_code``, then masks under ``min_area`` pixels cleared."""

    min_code: int = 0
    min_area: int = 0

    def __post_init__(self) -> None:
        for name, v, lo, hi in (("min_code", self.min_code, -_MAX_CODE, _MAX_CODE),
                                ("min_area", self.min_area, 0, _MAX_AREA)):
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise QdevError(f"mask rule: {name} {v!r} must be an integer in [{lo}, {hi}]")

    @property
    def is_default(self) -> bool:
        return self.min_code == 0 and self.min_area <= 1

    def apply(self, codes: np.ndarray) -> np.ndarray:
        """Codes [N, H, W] or [N, H, W, 1] -> uint8 masks [N, H, W]."""
        c = np.asarray(codes)
        if c.ndim == 4:
            c = c[..., 0]
        if c.ndim != 3:
            raise QdevError(f"mask rule: expected codes [N, H, W(, 1)], got shape {np.shape(codes)}")
        mask = c > self.min_code
        if self.min_area > 1:
            keep = mask.reshape(len(mask), -1).sum(1) >= self.min_area
            mask &= keep[:, None, None]
        return mask.astype(np.uint8)

    def logit_threshold(self, output_scale: float) -> float:
        """The rule's threshold in logit units (code > k means logit > k x scale)."""
        return self.min_code * output_scale

    def describe(self) -> str:
        area = f", masks under {self.min_area} px cleared" if self.min_area > 1 else ""
        return f"code > {self.min_code}{area}"

    def to_dict(self) -> dict:
        return {"min_code": self.min_code, "min_area": self.min_area}

    @staticmethod
    def from_manifest(value: object) -> MaskRule:
        """The rule of a bundle manifest's ``mask_rule`` (a dict; the legacy string; absent)."""
        if value is None or value == _LEGACY:
            return DEFAULT_RULE
        if not isinstance(value, dict) or set(value) - {"min_code", "min_area"}:
            raise QdevError(f"mask rule {value!r}: expected {{'min_code': int, 'min_area': int}} or {_LEGACY!r}")
        return MaskRule(**value)


DEFAULT_RULE = MaskRule()
