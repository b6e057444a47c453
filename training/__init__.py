"""qdev workstation side: BUSI data, U-Net / QuantU-Net models, training, export and FINN
compile."""

from __future__ import annotations

from qdev import __version__

__all__ = ["__version__"]
