"""DICOM images in a dataset: single- and multi-frame files, with PNG masks or DICOM SEG masks.

In an ``images/`` + ``masks/`` folder (or a datalist), an image may be a DICOM file (``.dcm``,
or any file with the ``DICM`` preamble). A single-frame file is one record; a multi-frame file
(an ultrasound cine) is one record per frame, its id ``<stem>#<frame>`` (frame numbers from 1).
Masks of a DICOM image are

* PNG files: ``masks/<stem>.png`` (single frame) or ``masks/<stem>_f<frame>.png`` (a frame of a
  cine), several per image unioned as for any image; or
* DICOM Segmentation files anywhere in ``masks/``: each SEG frame is matched to the image frame
  its derivation references (Referenced SOP Instance UID and, for a cine, Referenced Frame
  Number); all segments of all SEGs referencing a frame are unioned into its lesion mask. SEG
  headers are read first (``stop_before_pixels``) and only the frames that match are decoded.

Frames are decoded the way the device's DICOM probe decodes them (photometric interpretation,
MONOCHROME1 inverted, palette colour through its table; :class:`qdev.core.probe.sources.
DicomSource`), so training and deployment see the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from qdev.core.errors import DataError

__all__ = ["is_dicom", "DicomInfo", "dicom_info", "read_dicom_frame", "SegIndex", "read_seg_mask"]

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


@dataclass(frozen=True)
class DicomInfo:
    sop_uid: str
    sop_class: str
    frames: int
    rows: int
    cols: int


def dicom_info(path: Path) -> DicomInfo:
    """The header facts a dataset scan needs (pixels not read).

    Raises:
        DataError: not readable as DICOM.
    """
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return DicomInfo(
            str(ds.SOPInstanceUID),
            str(ds.SOPClassUID),
            int(getattr(ds, "NumberOfFrames", 1) or 1),
            int(ds.Rows),
            int(ds.Columns),
        )
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types
        raise DataError(f"{path}: not a readable DICOM image ({exc.__class__.__name__})") from None


@lru_cache(maxsize=2)
def _frames(path: str) -> np.ndarray:
    from qdev.core.probe.sources import DicomSource

    return DicomSource(Path(path)).arr  # [F, H, W] or [F, H, W, 3], decoded as the device does


def read_dicom_frame(path: Path, frame: int | None) -> np.ndarray:
    """Frame ``frame`` (1-based; None for a single-frame file) of a DICOM image."""
    arr = _frames(str(path))
    k = (frame or 1) - 1
    if not 0 <= k < len(arr):
        raise DataError(f"{path}: no frame {frame} ({len(arr)} frames)")
    return arr[k]


@dataclass
class SegIndex:
    """(source SOP Instance UID, source frame or 0) -> [(SEG path, SEG frame index 0-based)]."""

    refs: dict

    @staticmethod
    def scan(paths: list[Path]) -> SegIndex:
        import pydicom

        refs: dict = {}
        for p in paths:
            try:
                ds = pydicom.dcmread(p, stop_before_pixels=True)
            except Exception:  # noqa: BLE001 - not DICOM: the caller reports it
                continue
            if str(getattr(ds, "SOPClassUID", "")) != SEG_CLASS:
                continue
            for k, group in enumerate(getattr(ds, "PerFrameFunctionalGroupsSequence", [])):
                for der in getattr(group, "DerivationImageSequence", []):
                    for src in der.SourceImageSequence:
                        key = (
                            str(src.ReferencedSOPInstanceUID),
                            int(getattr(src, "ReferencedFrameNumber", 0) or 0),
                        )
                        refs.setdefault(key, []).append((p, k))
        return SegIndex(refs)

    def for_frame(self, sop_uid: str, frame: int | None) -> tuple[tuple[Path, int], ...]:
        return tuple(
            self.refs.get((sop_uid, frame or 0), ())
            or (self.refs.get((sop_uid, 0), ()) if not frame else ())
        )


def read_seg_mask(
    refs: tuple[tuple[Path, int], ...], shape: tuple[int, int], where: str
) -> np.ndarray:
    """The union of the referenced SEG frames, bool [H, W].

    Raises:
        DataError: an unreadable SEG, or a SEG frame of another size than the image.
    """
    import pydicom

    out = np.zeros(shape, bool)
    for path, k in refs:
        try:
            arr = pydicom.dcmread(path).pixel_array
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{path}: unreadable DICOM SEG ({exc.__class__.__name__})") from None
        frame = arr if arr.ndim == 2 else arr[k]
        if frame.shape != tuple(shape):
            raise DataError(
                f"{path}: SEG frame {k + 1} is {frame.shape[1]}x{frame.shape[0]}, image {where} is "
                f"{shape[1]}x{shape[0]}"
            )
        out |= frame.astype(bool)
    return out
