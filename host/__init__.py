"""qdev host side: the Click tool `qdev` and the typed API behind it."""

from __future__ import annotations

from device import __version__
from device.errors import QdevError

__all__ = ["QdevError", "__version__"]
