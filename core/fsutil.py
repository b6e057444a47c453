"""Crash-safe file writes, shared by every package (stdlib only, so the board runtime can use it).

``atomic_writer(path)`` writes beside ``path`` and renames onto it after an fsync: a reader, or
the next start after a kill, sees the old file or the new one, never half of one.
``FolderBuild`` does the same for a folder (bundles, phantom datasets, the store's installs):
built aside under a dot-name, renamed into place whole, removed if anything fails first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["atomic_writer", "atomic_write_text", "fsync_dir", "FolderBuild"]


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


class FolderBuild:
    """``with FolderBuild(parent) as b:`` fill ``b.path`` (a fresh ``parent/.build-*`` folder),
    then ``b.commit(final)``. Not committed (an exception, an early return): the folder is
    removed. ``commit`` renames it onto ``final`` in one step; where ``final`` already exists it
    is replaced (``replace=True``) or the new folder is dropped (``replace=False``, returns False).
    """

    def __init__(self, parent: Path, prefix: str = ".build-") -> None:
        self.parent, self.prefix = Path(parent), prefix
        self.path: Path | None = None

    def __enter__(self) -> FolderBuild:
        self.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(dir=self.parent, prefix=self.prefix))
        return self

    def commit(self, final: Path, replace: bool = False, durable: bool = False) -> bool:
        """Move the built folder to ``final``; ``durable`` fsyncs it and the parent (power cuts)."""
        assert self.path is not None, "commit() outside the with block"
        final = Path(final)
        if durable:
            fsync_dir(self.path)
        if final.exists():
            if not replace:
                shutil.rmtree(self.path, ignore_errors=True)
                return False
            shutil.rmtree(final)
        os.replace(self.path, final)
        if durable:
            fsync_dir(final.parent)
        return True

    def __exit__(self, *exc: object) -> None:
        if self.path is not None and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
