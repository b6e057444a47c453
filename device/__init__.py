"""qdev board-side runtime.

Runs on the board's Python (PYNQ image, numpy<2) and on the workstation (numpy 2.x).
It must never import torch, Brevitas, FINN or Click: everything here is numpy + stdlib, with
optional readers (OpenCV, pydicom, pynq) imported where they are used.
"""

from __future__ import annotations

from qdev import __version__

from qdev.device.errors import QdevError

__all__ = ["QdevError", "__version__"]
