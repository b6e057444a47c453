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


def inspect_dataset(cfg: InspectConfig, progress: Callable[[int, int], None] | None = None) -> dict:
    """Load a dataset and describe it.

    Falls back to the synthetic phantom only when no location was given and BUSI is not found
    in the default places; an explicit ``--data`` or ``$QDEV_BUSI`` that is wrong is an error.
    """
    source = "busi"
    location = cfg.data if cfg.data is not None else os.environ.get("QDEV_BUSI")
    kind = dataset_kind(location)
    if kind == "pack":  # `qdev data pack`'s file: the arrays as they were packed
        root, source = Path(location).expanduser(), "pack"  # type: ignore[arg-type]
        arrays = read_pack(root, cfg.size)
    elif kind != "busi":  # an images/ + masks/ folder or a datalist
        root, source = Path(location).expanduser(), kind  # type: ignore[arg-type]
        arrays = open_dataset(location, cfg.size, progress, cfg.options)
    else:
        if cfg.data is None and find_default_busi() is None:
            root = phantom_root()
            source = "phantom"
        else:
            root = resolve_busi_root(cfg.data)
        arrays = load_busi(root, cfg.size, use_cache=cfg.use_cache, progress=progress)
    dups = find_duplicates(arrays, DedupConfig(threshold=cfg.threshold))
    classes = {}
    for k, c in enumerate(CLASSES):
        sel = arrays.labels == k
        if not sel.any() and c == "lesion":
            continue  # the class a dataset only has when it does not say benign or malignant
        if not sel.any():
            classes[c] = {
                "images": 0,
                "mask_files": 0,
                "multi_mask_images": 0,
                "lesion_images": 0,
                "width_px": [0, 0],
                "height_px": [0, 0],
            }
            continue
        hw = arrays.orig_hw[sel]
        classes[c] = {
            "images": int(sel.sum()),
            "mask_files": int(arrays.n_mask_files[sel].sum()),
            "multi_mask_images": int((arrays.n_mask_files[sel] > 1).sum()),
            "lesion_images": int(arrays.masks[sel].reshape(int(sel.sum()), -1).any(1).sum()),
            "width_px": [int(hw[:, 1].min()), int(hw[:, 1].max())],
            "height_px": [int(hw[:, 0].min()), int(hw[:, 0].max())],
        }
    splits = {}
    for kind in ("grouped", "paper"):
        sp = make_split(arrays, dups, kind, cfg.seed)
        splits[kind] = {"sizes": sp.sizes(), "groups_crossing_splits": len(sp.crossing_groups())}
    return {
        "source": source,
        "root": str(root),
        "data_hash": arrays.data_hash,
        "size": list(cfg.size),
        "images": len(arrays),
        "mask_files": int(arrays.n_mask_files.sum()),
        "multi_mask_images": int((arrays.n_mask_files > 1).sum()),
        "width_px": [int(arrays.orig_hw[:, 1].min()), int(arrays.orig_hw[:, 1].max())],
        "height_px": [int(arrays.orig_hw[:, 0].min()), int(arrays.orig_hw[:, 0].max())],
        "median_hw": [int(np.median(arrays.orig_hw[:, 0])), int(np.median(arrays.orig_hw[:, 1]))],
        "classes": classes,
        "patients": len(set(arrays.patients)) if arrays.patients is not None else None,
        "duplicates": dups.summary(arrays),
        "splits": splits,
    }
