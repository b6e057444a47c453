"""The mask rule: the accelerator's output codes -> the binary mask a user sees.

The network's last layer emits one signed integer code per pixel (logit = code x output scale).
The rule, chosen per model on the validation split (``qdev postprocess``) and signed into its
bundle, is two steps the board's CPU runs after the accelerator:

1. **threshold**: a pixel is lesion where ``code > min_code`` (0: logit > 0, the network's own
   decision);
2. **lesion presence**: a mask with fewer than ``min_area`` lesion pixels is cleared (an image-level
   rule against specks on normal scans; 0 or 1: off);
3. **peak presence** (optional, ``min_peak``): a mask is cleared unless some pixel of the image has
   a code above ``min_peak``: the image-level lesion score is the network's highest output, so a
   faint blob on a normal scan goes while a confident lesion keeps its whole ``code > min_code``
   extent (absent: off; a rule without it is written exactly as before).

``qdev evaluate`` applies the same rule to the same integer codes, so what it measures is what the
device shows (tests/host/test_e2e.py checks the two agree). Bundles of format 1 carry the string
``"code > 0"``, which is the default rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qdev.core.errors import QdevError

__all__ = ["MaskRule", "DEFAULT_RULE"]

_LEGACY = "code > 0"
_MAX_CODE = 1 << 15  # output codes are at most 16-bit integers
_MAX_AREA = 1 << 24
_KEYS = ("min_code", "min_area", "min_peak")


@dataclass(frozen=True)
class MaskRule:
    """``code > min_code``, then masks under ``min_area`` pixels cleared, then (where
    ``min_peak`` is set) masks of images whose highest code is not above ``min_peak`` cleared."""

    min_code: int = 0
    min_area: int = 0
    min_peak: int | None = None

    def __post_init__(self) -> None:
        checks = [
            ("min_code", self.min_code, -_MAX_CODE, _MAX_CODE),
            ("min_area", self.min_area, 0, _MAX_AREA),
        ]
        if self.min_peak is not None:
            checks.append(("min_peak", self.min_peak, -_MAX_CODE, _MAX_CODE))
        for name, v, lo, hi in checks:
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise QdevError(f"mask rule: {name} {v!r} must be an integer in [{lo}, {hi}]")

    @property
    def is_default(self) -> bool:
        return self.min_code == 0 and self.min_area <= 1 and self.min_peak is None

    def apply(self, codes: np.ndarray) -> np.ndarray:
        """Codes [N, H, W] or [N, H, W, 1] -> uint8 masks [N, H, W]."""
        c = np.asarray(codes)
        if c.ndim == 4:
            c = c[..., 0]
        if c.ndim != 3:
            raise QdevError(
                f"mask rule: expected codes [N, H, W(, 1)], got shape {np.shape(codes)}"
            )
        mask = c > self.min_code
        if self.min_area > 1:
            keep = mask.reshape(len(mask), -1).sum(1) >= self.min_area
            mask &= keep[:, None, None]
        if self.min_peak is not None:
            mask &= (c.reshape(len(c), -1).max(1) > self.min_peak)[:, None, None]
        return mask.astype(np.uint8)

    def logit_threshold(self, output_scale: float) -> float:
        """The rule's threshold in logit units (code > k means logit > k x scale)."""
        return self.min_code * output_scale

    def peak_logit(self, output_scale: float) -> float | None:
        """The peak rule's threshold in logit units (None: no peak rule)."""
        return None if self.min_peak is None else self.min_peak * output_scale

    def describe(self) -> str:
        area = f", masks under {self.min_area} px cleared" if self.min_area > 1 else ""
        peak = (
            f", images without a code > {self.min_peak} cleared"
            if self.min_peak is not None
            else ""
        )
        return f"code > {self.min_code}{area}{peak}"

    def to_dict(self) -> dict:
        """The manifest form; ``min_peak`` only where it is set (older rules stay byte-identical,
        and a device too old to know it refuses such a bundle instead of ignoring the key)."""
        d = {"min_code": self.min_code, "min_area": self.min_area}
        if self.min_peak is not None:
            d["min_peak"] = self.min_peak
        return d

    @staticmethod
    def from_manifest(value: object) -> MaskRule:
        """The rule of a bundle manifest's ``mask_rule`` (a dict; the legacy string; absent)."""
        if value is None or value == _LEGACY:
            return DEFAULT_RULE
        if not isinstance(value, dict) or set(value) - set(_KEYS):
            raise QdevError(
                f"mask rule {value!r}: expected {{'min_code': int, 'min_area': int"
                f"(, 'min_peak': int)}} or {_LEGACY!r}"
            )
        return MaskRule(**value)


DEFAULT_RULE = MaskRule()
