"""Scan, validate and read the BUSI archive layout.

Layout: ``<root>/{benign,malignant,normal}/<id>.png`` with ``<id>_mask.png`` and optionally
``<id>_mask_1.png``, ``<id>_mask_2.png`` (one lesion each; the ground truth is their union).
Both the original RGB archive and the grayscale/1-bit copy in ../shared load the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qdev.core.errors import DataError
from qdev.core.preprocess import read_image, read_mask_union, to_luma_u8

__all__ = ["BUSI_CLASSES", "CLASSES", "BusiRecord", "scan_busi", "read_gray", "read_mask_union"]

#: Label order: 0 benign, 1 malignant, 2 normal, 3 lesion of no stated class (other datasets'
#: binary masks; BUSI has none).
CLASSES: tuple[str, ...] = ("benign", "malignant", "normal", "lesion")
BUSI_CLASSES: tuple[str, ...] = CLASSES[:3]

_NAME = re.compile(r"^(?P<stem>.+?)(?P<mask>_mask(?:_(?P<k>\d+))?)?\.png$", re.IGNORECASE)


@dataclass(frozen=True)
class BusiRecord:
    """One BUSI image with its mask files.

    Attributes:
        id: ``<class>/<stem>``, e.g. ``benign/benign (1)``; unique in the dataset.
        label: 0 benign, 1 malignant, 2 normal.
        image: path of the image PNG.
        masks: paths of its mask PNGs (one lesion each), ``_mask`` first.
        patient: the patient, where the dataset says (None: unknown; BUSI never says).
        frame: the frame of a multi-frame DICOM image (1-based; None: the whole file).
        seg_frames: DICOM SEG frames that are this image's lesion masks, as (SEG file, frame index).
    """

    id: str
    label: int
    image: Path
    masks: tuple[Path, ...]
    patient: str | None = None
    frame: int | None = None
    seg_frames: tuple = ()

    @property
    def cls(self) -> str:
        return CLASSES[self.label]


def scan_busi(root: Path) -> list[BusiRecord]:
    """List every image of a BUSI root and pair it with its masks (no pixel is decoded).

    Raises:
        DataError: a class folder is missing or empty, an image has no mask, or a mask has no
            image. The message names the offending file or folder.
    """
    records: list[BusiRecord] = []
    for label, cls in enumerate(BUSI_CLASSES):
        folder = root / cls
        if not folder.is_dir():
            raise DataError(
                f"{folder}: class folder missing (expected {', '.join(BUSI_CLASSES)}; or an "
                "images/ + masks/ folder, a datalist or a pack)"
            )
        images: dict[str, Path] = {}
        masks: dict[str, list[tuple[int, Path]]] = {}
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            m = _NAME.match(path.name)
            if m is None:
                continue  # not a PNG: ignore stray files (thumbs.db, notes)
            stem = m.group("stem")
            if m.group("mask"):
                order = int(m.group("k") or 0)
                masks.setdefault(stem, []).append((order, path))
            else:
                images[stem] = path
        if not images:
            raise DataError(f"{folder}: class folder holds no images")
        for stem in sorted(masks):
            if stem not in images:
                raise DataError(f"{masks[stem][0][1]}: mask without image ({stem}.png missing)")
        for stem in sorted(images, key=_natural_key):
            if stem not in masks:
                raise DataError(f"{images[stem]}: image without mask ({stem}_mask.png missing)")
            mask_paths = tuple(p for _, p in sorted(masks[stem]))
            records.append(BusiRecord(f"{cls}/{stem}", label, images[stem], mask_paths))
    return records


def _natural_key(stem: str) -> tuple[str, int]:
    m = re.search(r"(\d+)\D*$", stem)
    return (stem[: m.start()] if m else stem, int(m.group(1)) if m else -1)


def read_gray(path: Path) -> np.ndarray:
    """Read an image as 8-bit luma: the probe sources' decoding and conversion
    (:mod:`qdev.core.preprocess`)."""
    return to_luma_u8(read_image(path))
