"""The one error family of qdev.

Every error a user can cause (bad input, missing data, bad bundle, link failure) is a
:class:`QdevError`; the CLI maps it to ``qdev: <message>`` and exit status 2. It lives in
``device`` because the board-side runtime must not import the host package, while the host
and training packages import it from here.
"""

from __future__ import annotations

__all__ = [
    "QdevError",
    "DataError",
    "ConfigError",
    "ToolchainError",
]


class QdevError(Exception):
    """Base class of every user-facing qdev error (exit status 2)."""

    exit_code = 2


class DataError(QdevError):
    """The dataset (or a file in it) is missing, malformed or inconsistent."""


class ConfigError(QdevError):
    """An option or configuration value is invalid."""


class ToolchainError(QdevError):
    """An external tool (Vivado, FINN, pynq) is missing or failed."""
