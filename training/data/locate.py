"""Where the BUSI copy is: ``--data PATH``, else ``$QDEV_BUSI``, else ``../shared/data/busi``."""

from __future__ import annotations

import os
from pathlib import Path

from qdev.core.errors import DataError

__all__ = ["BUSI_HELP", "DEFAULT_SHARED", "resolve_busi_root", "find_default_busi"]

ARCHIVE_DIR = "Dataset_BUSI_with_GT"
# Relative to the current directory, the layout of this project's workspace (repo beside shared/).
DEFAULT_SHARED = Path("..") / "shared" / "data" / "busi"

BUSI_HELP = (
    "get BUSI (Al-Dhabyani et al., Data in Brief 28 (2020) 104863; e.g. the Kaggle mirror "
    "'aryashah2k/breast-ultrasound-images-dataset', CC0), unpack it so that "
    f"{ARCHIVE_DIR}/{{benign,malignant,normal}}/ exists, and pass --data PATH or set QDEV_BUSI"
)


def _normalise(path: Path) -> Path:
    """Accept either the folder holding ``Dataset_BUSI_with_GT`` or that folder itself."""
    if (path / ARCHIVE_DIR).is_dir():
        return path / ARCHIVE_DIR
    return path


def find_default_busi() -> Path | None:
    """The BUSI root found without an explicit location (``$QDEV_BUSI`` or ../shared), or None."""
    env = os.environ.get("QDEV_BUSI")
    if env:
        return _normalise(Path(env).expanduser())
    candidates = [DEFAULT_SHARED, Path(__file__).resolve().parents[3] / "shared" / "data" / "busi"]
    for cand in candidates:
        if (cand / ARCHIVE_DIR).is_dir():
            return _normalise(cand)
    return None


def resolve_busi_root(data: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the BUSI class-folder root.

    Args:
        data: explicit location (``--data``); may point at the archive folder or its parent.

    Returns:
        The folder that holds ``benign/``, ``malignant/`` and ``normal/``.

    Raises:
        DataError: the location does not exist, or none was given and none was found.
    """
    if data is not None:
        root = _normalise(Path(data).expanduser())
        if not root.is_dir():
            raise DataError(f"{data}: no such folder; {BUSI_HELP}")
        return root
    env = os.environ.get("QDEV_BUSI")
    if env:
        root = _normalise(Path(env).expanduser())
        if not root.is_dir():
            raise DataError(f"QDEV_BUSI={env}: no such folder; {BUSI_HELP}")
        return root
    found = find_default_busi()
    if found is None:
        raise DataError(
            f"BUSI not found (no --data, no QDEV_BUSI, no {DEFAULT_SHARED}); {BUSI_HELP}"
        )
    return found
