"""BUSI data pipeline: locate, scan and validate, preprocess with an on-disk cache, find
near-duplicates, and split leak-free by duplicate group. Nothing here imports torch."""

from __future__ import annotations

from qdev.training.data.busi import CLASSES, BusiRecord, scan_busi
from qdev.training.data.cache import BusiArrays, load_busi
from qdev.training.data.dedup import DedupConfig, DuplicateReport, find_duplicates
from qdev.training.data.locate import BUSI_HELP, resolve_busi_root
from qdev.training.data.layouts import DataOptions, parse_colours
from qdev.training.data.pack import (
    dataset_kind,
    open_busi,
    open_dataset,
    open_run_data,
    read_pack,
    write_pack,
)
from qdev.training.data.split import Split, make_split, read_split, write_split

__all__ = [
    "BUSI_HELP",
    "CLASSES",
    "BusiArrays",
    "BusiRecord",
    "DataOptions",
    "dataset_kind",
    "open_dataset",
    "open_run_data",
    "parse_colours",
    "DedupConfig",
    "DuplicateReport",
    "Split",
    "find_duplicates",
    "load_busi",
    "make_split",
    "open_busi",
    "read_pack",
    "read_split",
    "resolve_busi_root",
    "scan_busi",
    "write_pack",
    "write_split",
]
