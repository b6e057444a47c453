"""Crash-safe file writes, shared by every package (stdlib only, so the board runtime can use it).

``atomic_writer(path)`` writes beside ``path`` and renames onto it after an fsync: a reader, or
the next start after a kill, sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["atomic_writer", "atomic_write_text", "fsync_dir"]


def fsync_dir(path: Path) -> None:
    """Make a rename (or a new entry) in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_writer(path: Path, mode: str = "wb", sync_dir: bool = False) -> Iterator[IO]:
    """Open a temporary file beside ``path`` (``.<name>.*.tmp``); on a clean exit fsync it and
    rename it onto ``path`` (mode 0644), on an exception remove it. ``sync_dir`` also fsyncs the
    folder, so that the rename itself survives a power cut."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        if sync_dir:
            fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str, sync_dir: bool = False) -> None:
    with atomic_writer(path, "w", sync_dir) as fh:
        fh.write(text)
