"""Test and bench helper: a free TCP port on loopback."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on right now (bound and released; a test binds it again at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
