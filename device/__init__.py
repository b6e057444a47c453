"""qdev board-side runtime: only what runs on the board (store, backends, power, the serve
loop and its service). What it shares with the host and training is :mod:`qdev.core`.

Runs on the board's Python (PYNQ image, numpy<2) and on the workstation (numpy 2.x).
It must never import torch, Brevitas, FINN or Click: everything here is numpy + stdlib, with
optional readers (OpenCV, pydicom, pynq) imported where they are used.
"""

from __future__ import annotations

from qdev import __version__

from qdev.core.errors import QdevError  # re-exported: the runtime's errors are the core's

__all__ = ["QdevError", "__version__"]
