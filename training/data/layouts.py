"""Datasets in the forms people have them, scanned into the records the pipeline reads.

Three layouts besides BUSI's class folders (:mod:`training.data.busi`):

* ``pairs``: ``<root>/images/<name>.<ext>`` with ``<root>/masks/<name>[_<k>].<ext>`` (several
  masks of one image are unioned). Masks are binary (any non-zero pixel is lesion), or colour-
  coded with a colour -> class map (``green=benign,red=malignant``: BUS-UCLM's published form).
* ``datalist``: a CSV or JSON list (MONAI style) with ``image`` and ``label`` (the mask; empty for
  a normal scan) and optional ``patient``, ``class`` and ``site``; paths relative to the list.
* ``busi``: the original layout, unchanged.

A record's class is the list's ``class``, else the mask's colour under the map (the colour
covering most lesion pixels), else ``normal`` for an empty mask and ``lesion`` (class not
stated) otherwise. Patients come from the list, or from the file name with a pattern whose first
group is the patient (``--patient-pattern '^([A-Z]+)_'``); a pattern that does not match a name is
an error naming the file, never a silent singleton.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qdev.core.errors import DataError
from qdev.core.preprocess import read_image
from qdev.training.data.busi import CLASSES, BusiRecord

__all__ = [
    "DataOptions",
    "IMAGE_EXTS",
    "parse_colours",
    "scan_pairs",
    "scan_datalist",
    "MAX_LIST_BYTES",
]

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MAX_LIST_BYTES = 64 << 20  # a datalist of a million rows is ~100 MB; ours are far below this
_COLOURS = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
    "white": (255, 255, 255),
}
_MASK_SUFFIX = re.compile(r"^(?P<stem>.+?)(?:_mask)?(?:_(?P<k>\d+))?$")


@dataclass(frozen=True)
class DataOptions:
    """How to read a dataset that is not BUSI's layout.

    Attributes:
        colours: mask colour (R, G, B) -> class name (benign/malignant), or None: binary masks.
        patient_pattern: regex whose first group, searched in the image's file name, is its patient.
        site: a name for the dataset in reports (default: its folder's name).
    """

    colours: tuple[tuple[tuple[int, int, int], str], ...] | None = None
    patient_pattern: str | None = None
    site: str | None = None
    extra: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        return {
            "colours": [[list(c), k] for c, k in self.colours] if self.colours else None,
            "patient_pattern": self.patient_pattern,
            "site": self.site,
        }

    @staticmethod
    def from_dict(d: dict | None) -> DataOptions:
        d = d or {}
        cols = d.get("colours")
        return DataOptions(
            tuple((tuple(c), k) for c, k in cols) if cols else None,
            d.get("patient_pattern"),
            d.get("site"),
        )

    def is_default(self) -> bool:
        return self.colours is None and self.patient_pattern is None

    def patient_of(self, path: Path) -> str | None:
        if self.patient_pattern is None:
            return None
        m = re.search(self.patient_pattern, path.name)
        if m is None or not m.groups() or not m.group(1):
            raise DataError(
                f"{path}: --patient-pattern {self.patient_pattern!r} finds no patient in this name"
            )
        return m.group(1)


def parse_colours(text: str | None) -> tuple[tuple[tuple[int, int, int], str], ...] | None:
    """``green=benign,red=malignant`` or ``#00ff00=benign`` -> the colour map.

    Raises:
        DataError: an unknown colour or class, or a malformed entry.
    """
    if not text:
        return None
    out = []
    for part in text.split(","):
        colour, sep, cls = part.strip().partition("=")
        colour, cls = colour.strip().lower(), cls.strip().lower()
        if not sep or cls not in ("benign", "malignant"):
            raise DataError(f"--mask-colours {text!r}: each entry is COLOUR=benign|malignant")
        if colour in _COLOURS:
            rgb = _COLOURS[colour]
        elif re.fullmatch(r"#[0-9a-f]{6}", colour):
            rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        else:
            raise DataError(
                f"--mask-colours: unknown colour {colour!r} (a name like green, or #rrggbb)"
            )
        out.append((rgb, cls))
    return tuple(out)


def _mask_class(paths: tuple[Path, ...], colours, seg_frames: tuple = ()) -> str:  # noqa: ANN001
    """``normal`` for empty masks; else the colour map's class covering most pixels, or
    ``lesion``."""
    counts: dict[str, int] = {}
    any_lesion = False
    if seg_frames:
        import pydicom

        for p, k in seg_frames:
            arr = pydicom.dcmread(p).pixel_array
            any_lesion |= bool((arr if arr.ndim == 2 else arr[k]).any())
    for path in paths:
        a = read_image(path)
        rgb = a[..., :3] if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2)
        lesion = rgb.reshape(-1, 3).any(axis=1)
        any_lesion |= bool(lesion.any())
        if colours:
            flat = rgb.reshape(-1, 3)
            for colour, cls in colours:
                counts[cls] = counts.get(cls, 0) + int(
                    np.all(flat == np.array(colour, flat.dtype), axis=1).sum()
                )
    if not any_lesion:
        return "normal"
    if colours and paths:
        if not any(counts.values()):
            if seg_frames:
                return "lesion"  # the lesion is in a SEG, which has no colours
            raise DataError(f"{paths[0]}: lesion pixels in none of the --mask-colours")
        return max(counts, key=lambda k: counts[k])
    return "lesion"


def _record(
    stem: str,
    image: Path,
    masks: tuple[Path, ...],
    cls: str,
    opts: DataOptions,
    patient: str | None = None,
    frame: int | None = None,
    seg_frames: tuple = (),
) -> BusiRecord:
    if cls not in CLASSES:
        raise DataError(f"{image}: class {cls!r} is none of {', '.join(CLASSES)}")
    if patient is None:
        patient = opts.patient_of(image)
    return BusiRecord(f"{cls}/{stem}", CLASSES.index(cls), image, masks, patient, frame, seg_frames)


def scan_pairs(root: Path, opts: DataOptions) -> list[BusiRecord]:
    """Records of an ``images/`` + ``masks/`` folder.

    Raises:
        DataError: a folder is missing or empty, an image has no mask or a mask no image.
    """
    idir, mdir = root / "images", root / "masks"
    for d in (idir, mdir):
        if not d.is_dir():
            raise DataError(f"{d}: folder missing (an images/ + masks/ dataset has both)")
    from qdev.training.data.dicomdata import SegIndex, dicom_info, is_dicom

    files = [p for p in sorted(idir.iterdir()) if p.is_file() and not p.name.startswith(".")]
    images = {p.stem: p for p in files if p.suffix.lower() in IMAGE_EXTS or is_dicom(p)}
    if not images:
        raise DataError(f"{idir}: holds no images ({', '.join(IMAGE_EXTS)} or DICOM)")
    mfiles = [p for p in sorted(mdir.iterdir()) if p.is_file() and not p.name.startswith(".")]
    segs = SegIndex.scan([p for p in mfiles if is_dicom(p)])
    masks: dict[str, list[tuple[int, Path]]] = {}
    for p in mfiles:
        if is_dicom(p) or p.suffix.lower() not in IMAGE_EXTS:
            continue
        m = _MASK_SUFFIX.match(p.stem)
        stem, k = (p.stem, None) if p.stem in images else (m.group("stem"), m.group("k"))  # type: ignore[union-attr]
        f = _FRAME_MASK.match(p.stem)
        if stem not in images and f and f.group("stem") in images:
            stem, k = p.stem, None  # a cine frame's mask: kept under its own name
        elif stem not in images:
            raise DataError(f"{p}: mask without image (no images/{p.stem}.*)")
        masks.setdefault(stem, []).append((int(k or 0), p))
    out = []
    for stem, image in images.items():
        if is_dicom(image):
            out.extend(_dicom_records(stem, image, dicom_info(image), masks, segs, opts))
            continue
        if stem not in masks:
            raise DataError(f"{image}: image without mask (no masks/{stem}.*)")
        mpaths = tuple(p for _, p in sorted(masks[stem]))
        out.append(_record(stem, image, mpaths, _mask_class(mpaths, opts.colours), opts))
    return out


_FRAME_MASK = re.compile(r"^(?P<stem>.+)_f(?P<frame>\d+)$")


def _dicom_records(
    stem: str, image: Path, info, masks: dict, segs, opts: DataOptions
) -> list[BusiRecord]:  # noqa: ANN001
    """Records of a DICOM image: one, or one per frame of a cine, each with its PNG masks and SEG
    frames."""
    out = []
    frames = [None] if info.frames == 1 else list(range(1, info.frames + 1))
    for fno in frames:
        key = stem if fno is None else f"{stem}_f{fno}"
        pngs = tuple(p for _, p in sorted(masks.get(key, [])))
        seg = segs.for_frame(info.sop_uid, fno)
        if not pngs and not seg:
            raise DataError(
                f"{image}{'' if fno is None else f' frame {fno}'}: no mask (masks/{key}.png or a "
                "DICOM SEG referencing it)"
            )
        rid = stem if fno is None else f"{stem}#{fno}"
        out.append(
            _record(
                rid,
                image,
                pngs,
                _mask_class(pngs, opts.colours, seg),
                opts,
                frame=fno,
                seg_frames=seg,
            )
        )
    return out


def _read_rows(path: Path) -> list[dict]:
    if path.stat().st_size > MAX_LIST_BYTES:
        raise DataError(f"{path}: datalist over {MAX_LIST_BYTES >> 20} MiB")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable datalist ({exc.__class__.__name__})") from None
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise DataError(f"{path}: not JSON ({exc})") from None
        rows = doc.get("data", doc.get("training")) if isinstance(doc, dict) else doc
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise DataError(
                f'{path}: a JSON datalist is a list of {{image, label}} objects (or {{"data": '
                "[...]})"
            )
        return rows
    sample = text[:4096]
    delim = ";" if sample.count(";") > sample.count(",") else ","
    return list(csv.DictReader(text.splitlines(), delimiter=delim))


def _split_seg(
    image: Path, frame: int | None, masks: tuple[Path, ...]
) -> tuple[tuple, tuple[Path, ...]]:
    """(SEG frames referencing ``image`` [``frame``], the other, image-file masks) of a row."""
    from qdev.training.data.dicomdata import SegIndex, dicom_info, is_dicom

    dicoms = [m for m in masks if is_dicom(m)]
    if not dicoms:
        return (), masks
    if not is_dicom(image):
        raise DataError(f"{dicoms[0]}: a DICOM SEG mask needs a DICOM image")
    info = dicom_info(image)
    if info.frames > 1 and frame is None:
        raise DataError(f"{image}: a multi-frame image needs a 'frame' column (1-{info.frames})")
    seg = SegIndex.scan(dicoms).for_frame(info.sop_uid, frame)
    if not seg:
        raise DataError(
            f"{image}: none of its SEG files "
            f"references {'it' if frame is None else f'frame {frame}'}"
        )
    return seg, tuple(m for m in masks if m not in dicoms)


def scan_datalist(path: Path, opts: DataOptions) -> tuple[Path, list[BusiRecord]]:
    """(the list's folder, records) of a CSV/JSON datalist.

    Raises:
        DataError: no rows, a row without ``image``, a file that is not there, an unknown class.
    """
    rows = _read_rows(path)
    if not rows:
        raise DataError(f"{path}: datalist has no rows")
    root = path.parent.resolve()
    out, seen = [], set()
    for n, row in enumerate(rows, start=2 if path.suffix.lower() != ".json" else 1):
        where = f"{path} row {n}"
        image_s = str(row.get("image") or "").strip()
        if not image_s:
            raise DataError(f"{where}: no 'image'")
        image = (root / image_s).resolve()
        label_s = str(row.get("label") or row.get("mask") or "").strip()
        masks = tuple((root / m.strip()).resolve() for m in label_s.split("|") if m.strip())
        for p in (image, *masks):
            if not p.is_file():
                raise DataError(f"{where}: {p} not found")
        frame_s = str(row.get("frame") or "").strip()
        if not frame_s.isdigit() and frame_s:
            raise DataError(f"{where}: frame {frame_s!r} is not a frame number (1, 2, ...)")
        frame = int(frame_s) if frame_s else None
        if (image, frame) in seen:
            raise DataError(f"{where}: {image_s} listed twice")
        seen.add((image, frame))
        try:
            seg, masks = _split_seg(image, frame, masks)
            given = str(row.get("class") or "").strip().lower()
            cls = given or (_mask_class(masks, opts.colours, seg) if masks or seg else "normal")
            patient = str(row.get("patient") or "").strip() or None
            stem = (
                image.relative_to(root).with_suffix("").as_posix()
                if image.is_relative_to(root)
                else image.stem
            )
            out.append(
                _record(
                    stem if frame is None else f"{stem}#{frame}",
                    image,
                    masks,
                    cls,
                    opts,
                    patient,
                    frame,
                    seg,
                )
            )
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
    return root, out
