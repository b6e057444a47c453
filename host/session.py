"""A streaming session folder: ``frames.csv`` (one row per frame) + ``manifest.json``, and at the
end ``frames.parquet`` (the same rows, columnar, with :data:`PARQUET_SCHEMA`).

Rows are written to the CSV as they come and flushed, so Ctrl-C or a crash keeps every frame
logged so far; the manifest is written atomically at the start and rewritten with the totals at
the end, when the Parquet file is written (atomically) from the same rows. Readers prefer the
Parquet file when it is there and whole, and fall back to the CSV: old sessions (CSV only) and
sessions that were killed still load.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qdev.core.fsutil import atomic_write_text

MASKS_FILE = "masks.bin"

__all__ = [
    "COLUMNS",
    "device_fields",
    "MASKS_FILE",
    "SessionWriter",
    "read_masks",
    "read_session",
    "write_json_atomic",
    "parquet_schema",
    "PARQUET_COLUMNS",
]

COLUMNS = [
    "frame_id",
    "status",
    "t_capture",
    "t_sent",
    "t_received",
    "rtt_ms",
    "device_ms",
    "device_t_start",
    "device_t_end",
    "power_w",
    "energy_mj",
    "energy_kind",
    "mask_area",
    "dice_vs_truth",
    "source",
]


PARQUET_COLUMNS: dict[str, str] = {
    "frame_id": "int64",
    "status": "string",
    "t_capture": "float64 (unix s, probe clock read time)",
    "t_sent": "float64 (unix s)",
    "t_received": "float64 (unix s)",
    "rtt_ms": "float64",
    "device_ms": "float64 (device compute per frame)",
    "device_t_start": "float64 (device monotonic s)",
    "device_t_end": "float64 (device monotonic s)",
    "power_w": "float64 (board power, see energy_kind)",
    "energy_mj": "float64 (per frame)",
    "energy_kind": "string (measured | estimated)",
    "mask_area": "int64 (pixels at the model's resolution)",
    "dice_vs_truth": "float64 (where truth exists)",
    "source": "string (the frame's file, where the probe is a set of files)",
}
"""The Parquet log's columns and what they hold (nullable: a lost frame has only its times)."""


def device_fields(meta: dict) -> dict:
    """The row columns a frame's device answer (or LIVE push) fills: its time on the device,
    power and energy (and which kind), the mask's area."""
    return {
        "device_ms": meta.get("device_ms"),
        "device_t_start": meta.get("t_start"),
        "device_t_end": meta.get("t_end"),
        "power_w": meta.get("power_w"),
        "energy_mj": meta.get("energy_mj"),
        "energy_kind": meta.get("energy_kind"),
        "mask_area": meta.get("mask_area"),
    }


def parquet_schema():  # noqa: ANN201 - pyarrow is imported lazily
    import pyarrow as pa

    t = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}
    return pa.schema(
        [pa.field(k, t[v.split()[0]], nullable=True) for k, v in PARQUET_COLUMNS.items()],
        metadata={b"format": b"qdev-session-frames", b"version": b"1"},
    )


def _write_parquet(path: Path, rows: list[dict]) -> bool:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return False
    schema = parquet_schema()
    cols = {}
    for f in schema:
        vals = [r.get(f.name) for r in rows]
        if pa.types.is_integer(f.type):
            vals = [None if v is None else int(v) for v in vals]
        cols[f.name] = pa.array(vals, type=f.type)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.table(cols, schema=schema), tmp)
    os.replace(tmp, path)
    return True


def _read_parquet(path: Path) -> list[dict] | None:
    """Rows of a whole Parquet log, or None (absent, no pyarrow, unreadable: use the CSV)."""
    if not path.is_file():
        return None
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception:  # noqa: BLE001 - any failure means: fall back to the CSV
        return None
    rows = table.to_pylist()
    for r in rows:
        for k in COLUMNS:
            r.setdefault(k, None)
            if k not in TEXT_COLUMNS and r[k] is not None:
                r[k] = float(r[k])
    return rows


def write_json_atomic(path: Path, doc: dict) -> None:
    atomic_write_text(path, json.dumps(doc, indent=1, default=str))


@dataclass
class SessionWriter:
    folder: Path
    manifest: dict
    counts: dict = field(
        default_factory=lambda: {"ok": 0, "lost": 0, "timeout": 0, "error": 0, "dropped": 0}
    )

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=False)
        self.manifest = {
            "format": "qdev-session",
            "version": 1,
            "started": time.time(),
            **self.manifest,
        }
        write_json_atomic(self.folder / "manifest.json", self.manifest)
        self._fh = open(self.folder / "frames.csv", "w", newline="")
        self._w = csv.DictWriter(self._fh, COLUMNS, extrasaction="ignore")
        self._w.writeheader()
        self._rows: list[dict] = []
        self._masks = None
        self._mask_shape: tuple[int, ...] | None = None

    def mask(self, frame_id: int, mask: np.ndarray) -> None:
        """Append a frame's mask to ``masks.bin`` (flushed: a crash keeps every mask so far).

        Records of fixed size: frame id (int64, little-endian) then the mask's bits
        (``np.packbits`` of the row-major bool array); the shape is in the manifest."""
        m = np.asarray(mask).astype(bool)
        if self._masks is None:
            self._masks = open(self.folder / MASKS_FILE, "wb")
            self._mask_shape = m.shape
            self.manifest["masks"] = {
                "file": MASKS_FILE,
                "shape": list(m.shape),
                "record_bytes": 8 + (m.size + 7) // 8,
                "layout": "int64 frame id (little-endian) + numpy.packbits(mask)",
            }
            write_json_atomic(self.folder / "manifest.json", self.manifest)
        if m.shape != self._mask_shape:
            return  # one shape per session (the model's); never the case with one bundle
        self._masks.write(
            int(frame_id).to_bytes(8, "little", signed=True) + np.packbits(m).tobytes()
        )
        self._masks.flush()

    def row(self, r: dict) -> None:
        self._w.writerow(r)
        self._fh.flush()
        self._rows.append({k: r.get(k) for k in COLUMNS})
        key = r.get("status", "ok")
        self.counts[key if key in self.counts else "error"] += 1

    def close(self, **extra) -> None:  # noqa: ANN003
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        if self._masks is not None:
            os.fsync(self._masks.fileno())
            self._masks.close()
        logs = ["frames.csv"] + (
            ["frames.parquet"] if _write_parquet(self.folder / "frames.parquet", self._rows) else []
        )
        self.manifest.update(
            {"finished": time.time(), "counts": self.counts, "logs": logs, **extra}
        )
        write_json_atomic(self.folder / "manifest.json", self.manifest)


def read_masks(folder: Path, manifest: dict) -> dict[int, np.ndarray]:
    """frame id -> bool mask of a session's ``masks.bin`` (a cut last record is ignored).

    Raises:
        DataError: the session has no masks, or its record layout is not what the manifest says.
    """
    from qdev.core.errors import DataError

    info = manifest.get("masks")
    path = Path(folder) / MASKS_FILE
    if not info or not path.is_file():
        raise DataError(f"{folder}: the session kept no masks (sessions before qdev 0.3 did not)")
    try:
        h, w = (int(v) for v in info["shape"])
        rec = int(info["record_bytes"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{folder}: the manifest's mask layout is damaged") from None
    if rec != 8 + (h * w + 7) // 8 or not (0 < h <= 4096 and 0 < w <= 4096):
        raise DataError(f"{folder}: the manifest's mask layout is damaged")
    raw = path.read_bytes()
    out = {}
    for off in range(0, len(raw) - rec + 1, rec):
        fid = int.from_bytes(raw[off : off + 8], "little", signed=True)
        bits = np.frombuffer(raw, np.uint8, rec - 8, off + 8)
        out[fid] = np.unpackbits(bits, count=h * w).reshape(h, w).astype(bool)
    return out


STATUSES = ("ok", "lost", "timeout", "error")
TEXT_COLUMNS = ("status", "energy_kind", "source")


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
    cut mid-line by a crash, a garbled line) are skipped; ``manifest["read_warnings"]`` names
    them."""
    from qdev.core.errors import DataError

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
    pq_rows = (
        _read_parquet(folder / "frames.parquet")
        if "frames.parquet" in (manifest.get("logs") or [])
        else None
    )
    if pq_rows is not None and len(pq_rows) >= len(raw_rows):
        manifest["read_warnings"], manifest["read_from"] = [], "frames.parquet"
        return manifest, pq_rows
    if "frames.parquet" in (manifest.get("logs") or []):
        warnings.append("frames.parquet unreadable or short; read frames.csv")
    for i, raw in enumerate(raw_rows, start=2):  # line 1 is the header
        try:
            rows.append(_parse_row(raw))
        except ValueError as exc:
            warnings.append(f"frames.csv line {i}: {exc}; skipped")
    manifest["read_warnings"], manifest["read_from"] = warnings, "frames.csv"
    return manifest, rows
