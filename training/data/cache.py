"""Decode + preprocess BUSI once, then keep the arrays in an on-disk cache.

The cache key is the sha256 of the dataset's content (every PNG's relative path and bytes) plus
the target size and the preprocessing version, so a changed file, a different copy or another
size never reuses stale arrays. Cache files are written atomically (temp file + rename).

Preprocessing (the paper's section 3.2, made explicit): 8-bit grayscale, resized to ``size``
with Pillow's antialiased bilinear filter, scaled to [0, 1] when turned into tensors. Masks are
the union of lesion files, resized bilinearly and thresholded at 0.5.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from qdev.core.preprocess import mask_to_model, to_model_input
from qdev.training.data.busi import BusiRecord, read_gray, read_mask_union, scan_busi
from qdev.training.runs import atomic_writer

__all__ = ["BusiArrays", "load_busi", "load_records", "dataset_hash", "default_cache_dir", "THUMB"]

log = logging.getLogger(__name__)

PREPROCESS_VERSION = 2
THUMB = 32  # side of the dedup thumbnails
ProgressFn = Callable[[int, int], None]


@dataclass
class BusiArrays:
    """The preprocessed dataset, in scan order.

    Attributes:
        root: the class-folder root it was read from.
        data_hash: sha256 over the dataset's files (see module doc).
        ids: ``<class>/<stem>`` per image.
        labels: int64 [N], 0 benign / 1 malignant / 2 normal.
        images: uint8 [N, H, W] resized grayscale images.
        masks: bool [N, H, W] resized lesion masks.
        orig_hw: int32 [N, 2] original (height, width).
        n_mask_files: int32 [N] number of mask files of each image.
        thumbs: float32 [N, 2, THUMB, THUMB]: thumbnails of the full image and of its centre
            70% crop, from the original resolution (used by the duplicate detector).
        pixel_sha: per-image sha256 of the decoded grayscale pixels (exact duplicates).
        patients: per-image patient where the dataset says (None: unknown, as for BUSI).
        kind: the layout it was read from (busi, pairs, datalist, pack).
    """

    root: Path
    data_hash: str
    ids: list[str]
    labels: np.ndarray
    images: np.ndarray
    masks: np.ndarray
    orig_hw: np.ndarray
    n_mask_files: np.ndarray
    thumbs: np.ndarray
    pixel_sha: list[str]
    patients: list[str] | None = None
    kind: str = "busi"

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    def index(self) -> dict[str, int]:
        return {id_: i for i, id_ in enumerate(self.ids)}


def default_cache_dir() -> Path:
    env = os.environ.get("QDEV_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "qdev"


def dataset_hash(root: Path, records: list[BusiRecord], options: dict | None = None) -> str:
    """sha256 over every image and mask file (relative path + content), in scan order, and the
    reading options where there are any (a colour map or patient pattern changes the data)."""
    h = hashlib.sha256()
    if options:
        h.update(json.dumps(options, sort_keys=True).encode())
    for rec in records:
        if rec.frame is not None or rec.seg_frames:  # DICOM frames: which frame, which SEG frames
            h.update(
                f"{rec.frame}|{[(os.path.relpath(p, root), k) for p, k in rec.seg_frames]}".encode()
            )
        for path in (rec.image, *rec.masks, *sorted({p for p, _ in rec.seg_frames})):
            h.update(os.path.relpath(path, root).encode())
            h.update(b"\0")
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _thumbs(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape
    dy, dx = int(h * 0.15), int(w * 0.15)
    crop = gray[dy : h - dy, dx : w - dx]
    t = [Image.fromarray(a).resize((THUMB, THUMB), Image.BOX) for a in (gray, crop)]
    return np.stack([np.asarray(x, dtype=np.float32) for x in t])


def read_record(rec: BusiRecord) -> tuple[np.ndarray, np.ndarray]:
    """(8-bit luma [H, W], lesion mask bool [H, W]) of a record at its own size: an image file or
    a DICOM frame, its mask files and DICOM SEG frames unioned."""
    from qdev.core.preprocess import to_luma_u8
    from qdev.training.data.dicomdata import is_dicom, read_dicom_frame, read_seg_mask

    if is_dicom(rec.image):
        gray = to_luma_u8(read_dicom_frame(rec.image, rec.frame))
    else:
        gray = read_gray(rec.image)
    mask = read_mask_union(rec.masks, gray.shape, rec.image)
    if rec.seg_frames:
        mask |= read_seg_mask(rec.seg_frames, gray.shape, str(rec.image))
    return gray, mask


def _decode(records: list[BusiRecord], size: tuple[int, int], progress: ProgressFn | None) -> dict:
    n = len(records)
    images = np.zeros((n, *size), np.uint8)
    masks = np.zeros((n, *size), bool)
    orig = np.zeros((n, 2), np.int32)
    thumbs = np.zeros((n, 2, THUMB, THUMB), np.float32)
    shas = []
    for i, rec in enumerate(records):
        gray, mask = read_record(rec)
        images[i] = to_model_input(gray, *size)  # the deployed preprocessing, the same function
        masks[i] = mask_to_model(mask, *size)
        orig[i] = gray.shape
        thumbs[i] = _thumbs(gray)
        shas.append(hashlib.sha256(gray.tobytes() + str(gray.shape).encode()).hexdigest())
        if progress:
            progress(i + 1, n)
    return {"images": images, "masks": masks, "orig_hw": orig, "thumbs": thumbs, "shas": shas}


def load_busi(
    root: Path,
    size: tuple[int, int] = (128, 128),
    cache_dir: Path | None = None,
    use_cache: bool = True,
    progress: ProgressFn | None = None,
) -> BusiArrays:
    """Scan, validate, decode and preprocess a BUSI root, through the on-disk cache.

    Args:
        root: class-folder root (see :func:`training.data.locate.resolve_busi_root`).
        size: (height, width) of the preprocessed images; the paper uses 128x128.
        cache_dir: where cached arrays live (default ``$QDEV_CACHE`` or ``~/.cache/qdev``).
        use_cache: read and write the cache.
        progress: called as ``progress(done, total)`` while decoding.

    Raises:
        DataError: anything wrong with the files (names the file).
    """
    return load_records(root, scan_busi(root), size, cache_dir, use_cache, progress)


def load_records(
    root: Path,
    records: list[BusiRecord],
    size: tuple[int, int] = (128, 128),
    cache_dir: Path | None = None,
    use_cache: bool = True,
    progress: ProgressFn | None = None,
    kind: str = "busi",
    options: dict | None = None,
) -> BusiArrays:
    """Decode and preprocess scanned records of any layout, through the on-disk cache (see
    :func:`load_busi`; ``options`` are the reading options that enter the data hash)."""
    if not records:
        from qdev.core.errors import DataError

        raise DataError(f"{root}: the dataset holds no images")
    digest = dataset_hash(root, records, options)
    cache_dir = cache_dir or default_cache_dir()
    key = f"{kind}-{digest[:20]}-{size[0]}x{size[1]}-v{PREPROCESS_VERSION}.npz"
    path = cache_dir / key
    data = None
    if use_cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
            data["shas"] = json.loads(str(data.pop("shas_json")))
            log.info("BUSI cache hit: %s", path)
        except (OSError, ValueError, KeyError) as exc:  # damaged cache: rebuild it
            log.warning("ignoring unreadable cache %s (%s)", path, exc)
            data = None
    if data is None:
        data = _decode(records, size, progress)
        if use_cache:
            with atomic_writer(path) as fh:
                np.savez(
                    fh,
                    images=data["images"],
                    masks=data["masks"],
                    orig_hw=data["orig_hw"],
                    thumbs=data["thumbs"],
                    shas_json=np.array(json.dumps(data["shas"])),
                )
    return BusiArrays(
        root=root,
        data_hash=digest,
        ids=[r.id for r in records],
        labels=np.array([r.label for r in records], np.int64),
        images=data["images"],
        masks=data["masks"].astype(bool),
        orig_hw=data["orig_hw"],
        n_mask_files=np.array([len(r.masks) for r in records], np.int32),
        thumbs=data["thumbs"],
        pixel_sha=list(data["shas"]),
        patients=[str(r.patient) for r in records] if all(r.patient for r in records) else None,
        kind=kind,
    )
