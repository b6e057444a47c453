"""A streaming session folder: ``frames.csv`` (one row per frame) + ``manifest.json``.

Rows are written as they come and flushed, so Ctrl-C or a crash keeps every frame logged so
far; the manifest is written atomically at the start and rewritten with the totals at the end.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from qdev.device.fsutil import atomic_write_text

__all__ = ["COLUMNS", "SessionWriter", "read_session", "write_json_atomic"]

COLUMNS = [
    "frame_id", "status", "t_capture", "t_sent", "t_received", "rtt_ms", "device_ms",
    "device_t_start", "device_t_end", "power_w", "energy_mj", "energy_kind", "mask_area", "dice_vs_truth",
]


def write_json_atomic(path: Path, doc: dict) -> None:
    atomic_write_text(path, json.dumps(doc, indent=1, default=str))


@dataclass
class SessionWriter:
    folder: Path
    manifest: dict
    counts: dict = field(default_factory=lambda: {"ok": 0, "lost": 0, "timeout": 0, "error": 0, "dropped": 0})

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=False)
        self.manifest = {"format": "qdev-session", "version": 1, "started": time.time(), **self.manifest}
        write_json_atomic(self.folder / "manifest.json", self.manifest)
        self._fh = open(self.folder / "frames.csv", "w", newline="")
        self._w = csv.DictWriter(self._fh, COLUMNS, extrasaction="ignore")
        self._w.writeheader()

    def row(self, r: dict) -> None:
        self._w.writerow(r)
        self._fh.flush()
        key = r.get("status", "ok")
        self.counts[key if key in self.counts else "error"] += 1

    def close(self, **extra) -> None:  # noqa: ANN003
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self.manifest.update({"finished": time.time(), "counts": self.counts, **extra})
        write_json_atomic(self.folder / "manifest.json", self.manifest)


STATUSES = ("ok", "lost", "timeout", "error")
TEXT_COLUMNS = ("status", "energy_kind")


def _parse_row(raw: dict) -> dict:
    """One CSV row with its numbers parsed; ValueError says what is wrong with it."""
    if None in raw or any(raw.get(k) is None for k in COLUMNS if k in raw or k == "status"):
        raise ValueError("wrong number of fields (a cut or garbled line)")
    if raw.get("status") not in STATUSES:
        raise ValueError(f"status {raw.get('status')!r} is not one of {', '.join(STATUSES)}")
    row = {}
    for k in COLUMNS:
        v = raw.get(k, "")
        if k in TEXT_COLUMNS:
            row[k] = v or None
            continue
        try:
            row[k] = float(v) if v not in ("", None) else None
        except ValueError:
            raise ValueError(f"{k} {v!r} is not a number") from None
    if row["frame_id"] is None:
        raise ValueError("no frame_id")
    return row


def read_session(folder: Path) -> tuple[dict, list[dict]]:
    """(manifest, rows with numbers parsed) of a session folder. Rows that cannot be read (a log
    cut mid-line by a crash, a garbled line) are skipped; ``manifest["read_warnings"]`` names them."""
    from qdev.device.errors import DataError

    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        with open(folder / "frames.csv", newline="", errors="replace") as fh:
            raw_rows = list(csv.DictReader(fh))
    except (OSError, ValueError, csv.Error) as exc:
        raise DataError(f"{folder}: not a qdev session folder ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != "qdev-session":
        raise DataError(f"{folder}: manifest is not a qdev session")
    rows, warnings = [], []
    for i, raw in enumerate(raw_rows, start=2):  # line 1 is the header
        try:
            rows.append(_parse_row(raw))
        except ValueError as exc:
            warnings.append(f"frames.csv line {i}: {exc}; skipped")
    manifest["read_warnings"] = warnings
    return manifest, rows
