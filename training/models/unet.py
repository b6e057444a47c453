"""The paper's U-Net (Table 1) in float or as QuantU-Net, from one topology.

23 conv layers: 9 ConvBlocks of two 3x3 convs (18), 4 ConvTranspose 2x2/2 (4), a 1x1 head (1).
Deviations from Table 1, each for deployment and each switchable:

* ``batchnorm`` (default on): BN between each 3x3 conv and its ReLU. FINN folds it into the
  thresholds of the following activation, so it costs nothing in hardware.
* Every transposed conv output passes through the *same* activation module as the encoder skip
  it is concatenated with (a ReLU, in QuantU-Net a shared QuantReLU): both concat inputs then have
  one data type and one scale, which FINN's StreamingConcat requires.
* The head returns logits; the sigmoid belongs to the loss (``BCEWithLogits``) and the mask is
  ``logit > 0`` -- in QuantU-Net an 8-bit quantized logit, so the hardware never maps a sigmoid.
"""

from __future__ import annotations

import math
import torch
from torch import nn

from qdev.training.config import ModelConfig

__all__ = ["ModelConfig", "UNet", "build_model", "N_CONV_LAYERS"]

N_CONV_LAYERS = 23


class _Layers:
    """Factory of float or quantized layers, so both models share one topology."""

    def __init__(self, cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.quant = cfg.kind == "quant"

    def conv(self, cin: int, cout: int, k: int, bias: bool) -> nn.Module:
        if not self.quant:
            return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)
        from brevitas.nn import QuantConv2d

        from qdev.training.models.quant import weight_quant

        c = self.cfg
        return QuantConv2d(
            cin,
            cout,
            k,
            padding=k // 2,
            bias=bias,
            weight_quant=weight_quant(c.init_bits, c.min_bits, c.max_bits),
        )

    def up(self, cin: int, cout: int) -> nn.Module:
        if not self.quant:
            return nn.ConvTranspose2d(cin, cout, 2, stride=2)
        from brevitas.nn import QuantConvTranspose2d

        from qdev.training.models.quant import weight_quant

        c = self.cfg
        return QuantConvTranspose2d(
            cin,
            cout,
            2,
            stride=2,
            weight_quant=weight_quant(c.init_bits, c.min_bits, c.max_bits),
        )

    def relu(self) -> nn.Module:
        if not self.quant:
            return nn.ReLU(inplace=False)
        from brevitas.nn import QuantReLU

        from qdev.training.models.quant import relu_act_quant

        c = self.cfg
        return QuantReLU(act_quant=relu_act_quant(c.init_bits, c.min_bits, c.max_bits))

    def input(self) -> nn.Module:
        if not self.quant:
            return nn.Identity()
        from brevitas.nn import QuantIdentity

        from qdev.training.models.quant import PixelUint8InputQuant

        return QuantIdentity(act_quant=PixelUint8InputQuant)

    def output(self) -> nn.Module:
        if not self.quant:
            return nn.Identity()
        from brevitas.nn import QuantIdentity

        from qdev.training.models.quant import logit_output_quant

        return QuantIdentity(act_quant=logit_output_quant(self.cfg.out_range))


class ConvBlock(nn.Module):
    """Two 3x3 conv (+BN) + ReLU; ``act2`` may be shared with a decoder up-step."""

    def __init__(self, layers: _Layers, cin: int, cout: int) -> None:
        super().__init__()
        bn = layers.cfg.batchnorm
        self.conv1 = layers.conv(cin, cout, 3, bias=not bn)
        self.bn1 = nn.BatchNorm2d(cout) if bn else nn.Identity()
        self.act1 = layers.relu()
        self.conv2 = layers.conv(cout, cout, 3, bias=not bn)
        self.bn2 = nn.BatchNorm2d(cout) if bn else nn.Identity()
        self.act2 = layers.relu()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(x)))


class UpStep(nn.Module):
    """ConvTranspose 2x2/2 -> the skip's activation -> concat(skip, up) -> ConvBlock."""

    def __init__(self, layers: _Layers, cin: int, cout: int) -> None:
        super().__init__()
        self.up = layers.up(cin, cout)
        self.block = ConvBlock(layers, 2 * cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, skip_act: nn.Module) -> torch.Tensor:
        x = skip_act(self.up(x))  # same quantizer as the skip: identical concat input types
        return self.block(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """The paper's U-Net / QuantU-Net. Input [B,1,H,W] in [0,1] (H, W divisible by 16); output
    logits."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.kind not in ("float", "quant"):
            raise ValueError(f"model kind must be float or quant, not {cfg.kind!r}")
        self.cfg = cfg
        L = _Layers(cfg)
        w = cfg.width
        self.inp = L.input()
        self.enc1 = ConvBlock(L, 1, w)
        self.enc2 = ConvBlock(L, w, 2 * w)
        self.enc3 = ConvBlock(L, 2 * w, 4 * w)
        self.enc4 = ConvBlock(L, 4 * w, 8 * w)
        self.pool = nn.MaxPool2d(2, 2)
        self.bottleneck = ConvBlock(L, 8 * w, 16 * w)
        self.up4 = UpStep(L, 16 * w, 8 * w)
        self.up3 = UpStep(L, 8 * w, 4 * w)
        self.up2 = UpStep(L, 4 * w, 2 * w)
        self.up1 = UpStep(L, 2 * w, w)
        self.head = L.conv(w, 1, 1, bias=True)
        self.out = L.output()
        if not cfg.batchnorm:
            self._he_init()

    def _he_init(self) -> None:
        """He (Kaiming-normal, fan-in, ReLU) weights and zero biases, for the net without BN.

        PyTorch's default conv init (Kaiming-uniform with a = sqrt(5)) keeps a third of the
        variance per layer; with nothing to renormalise, the signal of this 23-layer net fades
        until every initial logit is the same and training stalls on the all-background mask
        (measured: bench/RESULTS.md). With BN the default stays (BN renormalises each layer).
        """
        for _, m in self.conv_layers():
            if isinstance(m, nn.ConvTranspose2d):  # 2x2/2 taps do not overlap: fan-in = in channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / m.in_channels))
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        s1 = self.enc1(x)
        s2 = self.enc2(self.pool(s1))
        s3 = self.enc3(self.pool(s2))
        s4 = self.enc4(self.pool(s3))
        b = self.bottleneck(self.pool(s4))
        x = self.up4(b, s4, self.enc4.act2)
        x = self.up3(x, s3, self.enc3.act2)
        x = self.up2(x, s2, self.enc2.act2)
        x = self.up1(x, s1, self.enc1.act2)
        return self.out(self.head(x))

    def conv_layers(self) -> list[tuple[str, nn.Module]]:
        """The 23 conv/transposed-conv layers in forward order."""
        convs = (nn.Conv2d, nn.ConvTranspose2d)
        order = ["enc1", "enc2", "enc3", "enc4", "bottleneck", "up4", "up3", "up2", "up1", "head"]
        out = []
        for name in order:
            mod = getattr(self, name)
            for sub, m in [("", mod)] if isinstance(mod, convs) else mod.named_modules():
                if isinstance(m, convs):
                    out.append((f"{name}.{sub}" if sub else name, m))
        # forward order inside an UpStep is up -> block.conv1 -> block.conv2 (named_modules order)
        return out


def build_model(cfg: ModelConfig) -> UNet:
    """Build the float U-Net or QuantU-Net."""
    return UNet(cfg)
