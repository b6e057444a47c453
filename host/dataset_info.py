"""`qdev data inspect`: the dataset report (counts, sizes, duplicates, splits) as a dict."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qdev.training.data import (
    CLASSES,
    DedupConfig,
    find_duplicates,
    load_busi,
    make_split,
    resolve_busi_root,
)
from qdev.training.data.cache import default_cache_dir
from qdev.training.data.locate import find_default_busi
from qdev.training.data.layouts import DataOptions
from qdev.training.data.pack import dataset_kind, open_dataset, read_pack
from qdev.training.data.synth import write_phantom_busi

__all__ = ["InspectConfig", "inspect_dataset", "phantom_root"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InspectConfig:
    """Options of `qdev data inspect`."""

    data: str | None = None
    size: tuple[int, int] = (128, 128)
    seed: int = 0
    threshold: float = DedupConfig.threshold
    use_cache: bool = True
    options: DataOptions = DataOptions()


def phantom_root() -> Path:
    """The BUSI-layout phantom dataset in the cache (written on first use)."""
    root = default_cache_dir() / "phantom-busi-v1"
    if not (root / "normal").is_dir():
        write_phantom_busi(root)
    return root


def _open(cfg: InspectConfig, progress: Callable[[int, int], None] | None):  # noqa: ANN202
    """(arrays, root, source) of the dataset ``cfg`` names (the phantom where nothing is named
    and BUSI is not in the default places)."""
    location = cfg.data if cfg.data is not None else os.environ.get("QDEV_BUSI")
    kind = dataset_kind(location)
    if kind == "pack":  # `qdev data pack`'s file: the arrays as they were packed
        root = Path(location).expanduser()  # type: ignore[arg-type]
        return read_pack(root, cfg.size), root, "pack"
    if kind != "busi":  # an images/ + masks/ folder or a datalist
        root = Path(location).expanduser()  # type: ignore[arg-type]
        return open_dataset(location, cfg.size, progress, cfg.options), root, kind
    if cfg.data is None and find_default_busi() is None:
        root, source = phantom_root(), "phantom"
    else:
        root, source = resolve_busi_root(cfg.data), "busi"
    return load_busi(root, cfg.size, use_cache=cfg.use_cache, progress=progress), root, source


def _class_figures(arrays, sel: np.ndarray) -> dict:  # noqa: ANN001
    """Images, mask files, lesion images and image sizes of the images ``sel`` selects."""
    if not sel.any():
        blank = {"images": 0, "mask_files": 0, "multi_mask_images": 0, "lesion_images": 0}
        return {**blank, "width_px": [0, 0], "height_px": [0, 0]}
    hw = arrays.orig_hw[sel]
    return {
        "images": int(sel.sum()),
        "mask_files": int(arrays.n_mask_files[sel].sum()),
        "multi_mask_images": int((arrays.n_mask_files[sel] > 1).sum()),
        "lesion_images": int(arrays.masks[sel].reshape(int(sel.sum()), -1).any(1).sum()),
        "width_px": [int(hw[:, 1].min()), int(hw[:, 1].max())],
        "height_px": [int(hw[:, 0].min()), int(hw[:, 0].max())],
    }


def inspect_dataset(cfg: InspectConfig, progress: Callable[[int, int], None] | None = None) -> dict:
    """Load a dataset and describe it.

    Falls back to the synthetic phantom only when no location was given and BUSI is not found
    in the default places; an explicit ``--data`` or ``$QDEV_BUSI`` that is wrong is an error.
    """
    arrays, root, source = _open(cfg, progress)
    dups = find_duplicates(arrays, DedupConfig(threshold=cfg.threshold))
    classes = {}
    for k, c in enumerate(CLASSES):
        sel = arrays.labels == k
        if sel.any() or c != "lesion":  # "lesion": only where a dataset says no benign/malignant
            classes[c] = _class_figures(arrays, sel)
    splits = {}
    for kind in ("grouped", "paper"):
        sp = make_split(arrays, dups, kind, cfg.seed)
        splits[kind] = {"sizes": sp.sizes(), "groups_crossing_splits": len(sp.crossing_groups())}
    hw = arrays.orig_hw
    return {
        "source": source,
        "root": str(root),
        "data_hash": arrays.data_hash,
        "size": list(cfg.size),
        "images": len(arrays),
        "mask_files": int(arrays.n_mask_files.sum()),
        "multi_mask_images": int((arrays.n_mask_files > 1).sum()),
        "width_px": [int(hw[:, 1].min()), int(hw[:, 1].max())],
        "height_px": [int(hw[:, 0].min()), int(hw[:, 0].max())],
        "median_hw": [int(np.median(hw[:, 0])), int(np.median(hw[:, 1]))],
        "classes": classes,
        "patients": len(set(arrays.patients)) if arrays.patients is not None else None,
        "duplicates": dups.summary(arrays),
        "splits": splits,
    }
