"""qdev host side: the Click tool `qdev` and the typed API behind it."""

from __future__ import annotations

from qdev import __version__
from qdev.core.errors import QdevError

__all__ = ["QdevError", "__version__"]
