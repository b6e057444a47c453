"""Write a BUSI-layout folder of synthetic phantom images (tests, demos, no-BUSI fallback)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from qdev.core.fsutil import FolderBuild
from qdev.core.probe.phantom import phantom_image
from qdev.training.data.busi import CLASSES

__all__ = ["write_phantom_busi"]


def write_phantom_busi(
    out: Path,
    per_class: tuple[int, int, int] = (24, 12, 8),
    size: tuple[int, int] = (160, 200),
    seed: int = 0,
    duplicate_every: int = 6,
) -> Path:
    """Write ``out/{benign,malignant,normal}/`` with phantom images and masks, BUSI-style.

    Every ``duplicate_every``-th image is followed by a re-cropped, resized near-duplicate of
    itself (as BUSI has), so the duplicate detector and grouped split have something to find.
    The folder is built aside and renamed into place, so a crash never leaves half of it.

    Returns:
        ``out`` (the class-folder root).
    """
    out = Path(out)
    with FolderBuild(out.parent, ".phantom-") as build:
        tmp = build.path
        k = 0
        for label, (cls, n) in enumerate(zip(CLASSES, per_class)):
            (tmp / cls).mkdir()
            i = 1
            while i <= n:
                h, w = size
                img, mask, _ = phantom_image(seed * 100_003 + k, cls, h, w)
                k += 1
                _save(tmp / cls, f"{cls} ({i})", img, mask)
                i += 1
                if duplicate_every and i <= n and (i - 1) % duplicate_every == 0:
                    dy, dx = 1, 1  # re-saved at another size, a 1-px border trimmed
                    crop = img[dy:, dx : w - dx]
                    cmask = mask[dy:, dx : w - dx]
                    shape = (int(crop.shape[1] * 1.1), int(crop.shape[0] * 1.1))
                    img2 = np.asarray(Image.fromarray(crop).resize(shape, Image.BILINEAR))
                    m2 = np.asarray(Image.fromarray(cmask).resize(shape, Image.NEAREST))
                    _save(tmp / cls, f"{cls} ({i})", img2, m2)
                    i += 1
        build.commit(out, replace=True)
    return out


def _save(folder: Path, stem: str, img: np.ndarray, mask: np.ndarray) -> None:
    Image.fromarray(img).save(folder / f"{stem}.png")
    Image.fromarray(mask.astype(bool)).save(folder / f"{stem}_mask.png")
