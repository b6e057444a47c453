"""qdev host side: the Click tool `qdev` and the typed API behind it."""

from __future__ import annotations

from qdev.device import __version__
from qdev.device.errors import QdevError

__all__ = ["QdevError", "__version__"]
