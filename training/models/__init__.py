"""U-Net of the paper's Table 1, in float and as Brevitas QuantU-Net with trainable bit widths."""

from __future__ import annotations

from qdev.training.models.unet import ModelConfig, UNet, build_model

__all__ = ["ModelConfig", "UNet", "build_model"]
