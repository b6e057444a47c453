"""A BUSI *pack*: the preprocessed dataset in one file, for a machine that has no BUSI copy.

A pack holds exactly what :func:`training.data.cache.load_busi` returns (ids, labels, the
preprocessed images and masks, the thumbnails the duplicate finder reads, the per-image pixel
hashes) and the data hash of the copy it was made from. Training from a pack therefore sees the
same arrays, makes the same grouped split and records the same ``data_hash`` in its manifest as
training from the PNGs: a run trained on a rented GPU box is evaluated here against the real
copy without a second thought. A pack is about 10 MB at 128x128 (the PNGs: 108 MB).

``--data`` (or ``$QDEV_BUSI``) may name a pack file instead of a folder; :func:`open_busi` is
the one entry point the stages use. Packs are ``np.savez_compressed`` archives read with
``allow_pickle=False``; a damaged, foreign or mismatched pack is a :class:`DataError`.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from qdev.core.errors import DataError
from qdev.training.data.cache import (
    PREPROCESS_VERSION,
    THUMB,
    BusiArrays,
    ProgressFn,
    load_busi,
    load_records,
)
from qdev.training.data.layouts import DataOptions, scan_datalist, scan_pairs
from qdev.training.data.locate import resolve_busi_root
from qdev.training.runs import atomic_writer

__all__ = [
    "PACK_FORMAT",
    "write_pack",
    "read_pack",
    "open_busi",
    "open_dataset",
    "is_pack",
    "dataset_kind",
    "open_run_data",
]

PACK_FORMAT = "qdev-busi-pack-1"
_ARRAYS = ("labels", "images", "masks", "orig_hw", "n_mask_files", "thumbs")


def is_pack(location: str | os.PathLike[str] | None) -> bool:
    """True when ``location`` names an existing file (a pack), not a BUSI folder."""
    return location is not None and Path(location).expanduser().is_file()


def write_pack(arrays: BusiArrays, path: Path) -> Path:
    """Write ``arrays`` as a pack at ``path`` (atomically: a failed write leaves nothing).

    Raises:
        DataError: the file cannot be written (no space, no permission).
    """
    meta = {
        "format": PACK_FORMAT,
        "preprocess_version": PREPROCESS_VERSION,
        "data_hash": arrays.data_hash,
        "size": list(arrays.size),
        "ids": arrays.ids,
        "pixel_sha": arrays.pixel_sha,
        "source": str(arrays.root),
        "patients": arrays.patients,
        "kind": arrays.kind,
    }
    try:
        with atomic_writer(Path(path)) as fh:
            np.savez_compressed(
                fh,
                meta_json=np.array(json.dumps(meta)),
                labels=arrays.labels,
                images=arrays.images,
                masks=np.packbits(arrays.masks, axis=-1),
                orig_hw=arrays.orig_hw,
                n_mask_files=arrays.n_mask_files,
                thumbs=arrays.thumbs,
            )
    except OSError as exc:  # disk full, read-only folder: the temporary file is already gone
        raise DataError(f"{path}: cannot write the pack ({exc.strerror or exc})") from None
    return Path(path)


def _load(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("meta_json", *_ARRAYS) if k not in z.files]
            if missing:
                raise DataError(f"{path}: not a qdev BUSI pack (no {', '.join(missing)})")
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: unreadable BUSI pack ({exc.__class__.__name__}: {exc})") from None
    try:
        out["meta"] = json.loads(str(out.pop("meta_json")))
    except ValueError:
        raise DataError(f"{path}: damaged BUSI pack (its metadata is not JSON)") from None
    return out


def read_pack(path: Path, size: tuple[int, int]) -> BusiArrays:
    """Read a pack written by :func:`write_pack`.

    Raises:
        DataError: unreadable or damaged file, another format or preprocessing version, a pack
            made for another size, or arrays that disagree with each other.
    """
    path = Path(path).expanduser()
    z = _load(path)
    meta = z["meta"]
    if not isinstance(meta, dict) or meta.get("format") != PACK_FORMAT:
        raise DataError(
            f"{path}: not a qdev BUSI pack "
            f"(format {meta.get('format') if isinstance(meta, dict) else None!r})"
        )
    if meta.get("preprocess_version") != PREPROCESS_VERSION:
        raise DataError(
            f"{path}: made with preprocessing v{meta.get('preprocess_version')}, this qdev uses "
            f"v{PREPROCESS_VERSION}; make the pack again with `qdev data pack`"
        )
    if tuple(meta.get("size", ())) != tuple(size):
        raise DataError(
            f"{path}: a pack of {meta.get('size')} images, but {list(size)} is asked for; "
            f"make one with `qdev data pack --size {size[0]}x{size[1]}`"
        )
    n, (h, w) = len(meta.get("ids", [])), size
    masks = (
        np.unpackbits(z["masks"], axis=-1, count=w).astype(bool) if z["masks"].ndim == 3 else None
    )
    shapes = {
        "labels": (n,),
        "images": (n, h, w),
        "orig_hw": (n, 2),
        "n_mask_files": (n,),
        "thumbs": (n, 2, THUMB, THUMB),
    }
    bad = [k for k, s in shapes.items() if z[k].shape != s]
    if masks is None or masks.shape != (n, h, w) or len(meta.get("pixel_sha", [])) != n or bad:
        raise DataError(
            f"{path}: damaged BUSI pack (arrays disagree with its {n} "
            f"ids: {', '.join(bad) or 'masks'})"
        )
    return BusiArrays(
        root=path,
        data_hash=str(meta["data_hash"]),
        ids=list(meta["ids"]),
        labels=z["labels"].astype(np.int64),
        images=z["images"].astype(np.uint8),
        masks=masks,
        orig_hw=z["orig_hw"].astype(np.int32),
        n_mask_files=z["n_mask_files"].astype(np.int32),
        thumbs=z["thumbs"].astype(np.float32),
        pixel_sha=list(meta["pixel_sha"]),
        patients=_patients(path, meta.get("patients"), n),
        kind=str(meta.get("kind", "busi")),
    )


def _patients(path: Path, patients: object, n: int) -> list[str] | None:
    if patients is None:
        return None
    if (
        not isinstance(patients, list)
        or len(patients) != n
        or not all(isinstance(p, str) for p in patients)
    ):
        raise DataError(f"{path}: damaged pack (its patient list does not match its {n} ids)")
    return patients


def dataset_kind(location: str | os.PathLike[str] | None) -> str:
    """Which layout ``location`` holds: ``datalist`` (a .csv/.json file), ``pack`` (another file),
    ``pairs`` (a folder with images/ and masks/) or ``busi`` (anything else, checked when read)."""
    if location is None:
        return "busi"
    path = Path(location).expanduser()
    if path.is_file():
        return "datalist" if path.suffix.lower() in (".csv", ".json") else "pack"
    if (path / "images").is_dir() and (path / "masks").is_dir():
        return "pairs"
    return "busi"


def open_busi(
    data: str | os.PathLike[str] | None,
    size: tuple[int, int],
    progress: ProgressFn | None = None,
    options: DataOptions | None = None,
) -> BusiArrays:
    """The dataset at ``data`` (else ``$QDEV_BUSI``, else ../shared), in any layout
    :func:`dataset_kind` tells apart, read with ``options`` (colour map, patient pattern).

    Raises:
        DataError: nothing found there, files that do not fit the layout, or a bad pack.
    """
    location = data if data is not None else os.environ.get("QDEV_BUSI")
    options = options or DataOptions()
    kind = dataset_kind(location)
    if kind == "pack":
        return read_pack(Path(location), size)  # type: ignore[arg-type]
    if kind == "busi":
        if not options.is_default():
            raise DataError(
                "--mask-colours and --patient-pattern are for images/ + masks/ folders and "
                "datalists"
            )
        return load_busi(resolve_busi_root(data), size, progress=progress)
    path = Path(location).expanduser()  # type: ignore[arg-type]
    root, records = (
        scan_datalist(path, options) if kind == "datalist" else (path, scan_pairs(path, options))
    )
    opts = (
        {k: v for k, v in options.to_dict().items() if k != "site"}  # a report name is not data
        if not options.is_default()
        else None
    )
    return load_records(root, records, size, progress=progress, kind=kind, options=opts)


open_dataset = open_busi  # the neutral name, for new code


def open_run_data(
    config: dict, data: str | os.PathLike[str] | None, size: tuple[int, int]
) -> BusiArrays:
    """The dataset a run was trained on (its ``data`` and ``data_options``), or ``data`` instead."""
    if data is not None:
        return open_busi(data, size)
    return open_busi(
        config.get("data"), size, options=DataOptions.from_dict(config.get("data_options"))
    )
