"""The golden batch in one layout, the one the hardware takes: written once by ``qdev export``,
copied unchanged by the compile into ``intmodel/`` and by ``qdev bundle`` into the bundle, and
read by the compile's checks and the device's self-test without conversion.

* ``golden_pixels.npy``: uint8 ``[n, H, W]``, the frames as the device's input takes them (one
  luma channel, row-major: the accelerator's NHWC stream with its single channel).
* ``golden_codes.npy``: int16 ``[n, H, W, C]``, the integer output codes in the order the
  accelerator streams them out (NHWC).

The float graphs of the early compile steps take ``pixels / 255`` as float32 NCHW
(:meth:`GoldenBatch.float_nchw`, exact: training's preprocessing produces k/255). Runs exported
before this layout (``golden_in.npy`` float NCHW, ``golden_codes.npy`` int8 NCHW) are read by
:func:`from_legacy_export`, the one place that converts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qdev.core.errors import QdevError
from qdev.core.fsutil import atomic_writer
from qdev.core.preprocess import to_unit_float

__all__ = ["GoldenBatch", "PIXELS", "CODES", "load_golden", "save_golden", "from_legacy_export"]

PIXELS = "golden_pixels.npy"
CODES = "golden_codes.npy"


@dataclass(frozen=True)
class GoldenBatch:
    """Golden frames and their expected output codes (see the module doc for the layout)."""

    pixels: np.ndarray
    codes: np.ndarray

    def __post_init__(self) -> None:
        p, c = self.pixels, self.codes
        if p.dtype != np.uint8 or p.ndim != 3:
            raise QdevError(f"golden pixels must be uint8 [n, H, W], not {p.dtype} {list(p.shape)}")
        if c.dtype != np.int16 or c.ndim != 4 or c.shape[:3] != p.shape:
            raise QdevError(
                f"golden codes must be int16 [n, H, W, C] matching the pixels {list(p.shape)}, "
                f"not {c.dtype} {list(c.shape)}"
            )

    def float_nchw(self) -> np.ndarray:
        """The frames as the float graphs take them: float32 ``[n, 1, H, W]`` = pixels / 255."""
        return to_unit_float(self.pixels)[:, None]

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


def save_golden(folder: Path, batch: GoldenBatch) -> list[Path]:
    """Write the two files (each atomically); returns their paths."""
    out = []
    for name, arr in ((PIXELS, batch.pixels), (CODES, batch.codes)):
        path = Path(folder) / name
        with atomic_writer(path) as fh:
            np.save(fh, arr, allow_pickle=False)
        out.append(path)
    return out


def load_golden(pixels: Path, codes: Path) -> GoldenBatch:
    """Read the two files (no pickles) and check the layout; a file in another layout is refused
    with what it holds, never reshaped."""
    try:
        return GoldenBatch(np.load(pixels, allow_pickle=False), np.load(codes, allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise QdevError(f"golden batch {pixels.parent}: unreadable ({exc})") from None


def from_legacy_export(golden_in: np.ndarray, codes_nchw: np.ndarray) -> GoldenBatch:
    """The golden batch of a run exported before this layout: float32 NCHW frames of k/255 and
    int8 NCHW codes. Refuses frames that are not exactly k/255."""
    if golden_in.ndim != 4 or golden_in.shape[1] != 1 or codes_nchw.ndim != 4:
        raise QdevError(
            f"legacy golden batch {list(golden_in.shape)} / {list(codes_nchw.shape)}: "
            "expected [n, 1, H, W] frames and [n, C, H, W] codes"
        )
    pixels = np.round(golden_in[:, 0].astype(np.float64) * 255.0)
    if not np.allclose(pixels / 255.0, golden_in[:, 0], atol=1e-6):
        raise QdevError("legacy golden_in.npy: frames are not k/255 pixels")
    return GoldenBatch(pixels.astype(np.uint8), codes_nchw.transpose(0, 2, 3, 1).astype(np.int16))
