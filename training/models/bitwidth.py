"""Bit-width bookkeeping of QuantU-Net: which layer has which trainable width, and the averages.

Averages (all in bits):

* ``mean``    -- mean over every trainable width (23 weight + 18 activation); the default bit-width
  loss, the paper's "average bitwidth" applied to everything that is quantized.
* ``weights`` -- mean over the 23 weight widths (the paper's wording, weights only).
* ``acts``    -- mean over the 18 trainable activation widths.
* ``size``    -- parameter-count-weighted weight width: true model bits / number of weights.
* ``bops``    -- sqrt(sum MAC_i * w_i * a_in_i / sum MAC_i): the width that a uniform WnAn net with
  the same bit operations (BOPs) would have. Input activation of the first conv is the fixed
  8-bit pixel.

Every value comes from the forward of Brevitas's ``BitWidthParameter`` (``round_ste``), so it is
an integer whose gradient passes straight through to the offset parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from qdev.training.config import BIT_LOSS_MODES

__all__ = ["LayerBits", "BitWidthTracker", "BIT_LOSS_MODES"]


def _bw_module(quant_proxy: nn.Module) -> nn.Module:
    for name, m in quant_proxy.named_modules():
        if name.endswith("msb_clamp_bit_width_impl") and hasattr(m, "bit_width_offset"):
            return m
    raise ValueError("no trainable bit width in this quantizer")


@dataclass
class LayerBits:
    """One conv layer: its weight width module and the activation modules around it."""

    name: str
    weight_bw: nn.Module
    in_act: str | None  # name of the activation feeding it (None: the fixed 8-bit input)
    out_act: str | None  # name of its output activation (None: the fixed 8-bit logits)
    params: int
    macs: int = 0


def _act_names(model: nn.Module) -> list[tuple[str, str | None, str | None]]:
    """(conv name, input activation, output activation) in forward order, from the topology."""
    rows: list[tuple[str, str | None, str | None]] = []
    prev: str | None = None
    for blk in ("enc1", "enc2", "enc3", "enc4", "bottleneck"):
        rows.append((f"{blk}.conv1", prev, f"{blk}.act1"))
        rows.append((f"{blk}.conv2", f"{blk}.act1", f"{blk}.act2"))
        prev = f"{blk}.act2"
    for up, skip in (("up4", "enc4"), ("up3", "enc3"), ("up2", "enc2"), ("up1", "enc1")):
        rows.append((f"{up}.up", prev, f"{skip}.act2"))
        rows.append((f"{up}.block.conv1", f"{skip}.act2", f"{up}.block.act1"))
        rows.append((f"{up}.block.conv2", f"{up}.block.act1", f"{up}.block.act2"))
        prev = f"{up}.block.act2"
    rows.append(("head", prev, None))
    return rows


class BitWidthTracker:
    """Reads and averages the trainable bit widths of a QuantU-Net.

    Args:
        model: a quant :class:`~training.models.unet.UNet` (unwrapped, not DDP).
        input_hw: input size used to count MACs per layer.
    """

    def __init__(self, model: nn.Module, input_hw: tuple[int, int] = (128, 128)) -> None:
        mods = dict(model.named_modules())
        self.max_bits = float(getattr(getattr(model, "cfg", None), "max_bits", 8))
        self.layers: list[LayerBits] = []
        self.acts: dict[str, nn.Module] = {}
        for conv, a_in, a_out in _act_names(model):
            m = mods[conv]
            self.layers.append(
                LayerBits(conv, _bw_module(m.weight_quant), a_in, a_out, m.weight.numel())
            )
            for a in (a_in, a_out):
                if a is not None and a not in self.acts:
                    self.acts[a] = _bw_module(mods[a].act_quant)
        self._count_macs(model, mods, input_hw)
        n_weights = sum(layer.params for layer in self.layers)
        self.other_params = (
            sum(
                p.numel()
                for n, p in model.named_parameters()
                if "bit_width" not in n and "scaling" not in n
            )
            - n_weights
        )

    def _count_macs(self, model: nn.Module, mods: dict, hw: tuple[int, int]) -> None:
        """Analytic MACs per layer (no forward pass: it would disturb Brevitas's runtime stats)."""
        level = {
            "enc1": 0,
            "enc2": 1,
            "enc3": 2,
            "enc4": 3,
            "bottleneck": 4,
            "up4": 3,
            "up3": 2,
            "up2": 1,
            "up1": 0,
            "head": 0,
        }
        for layer in self.layers:
            m = mods[layer.name]
            lv = level[layer.name.split(".")[0]]
            h, w = hw[0] >> lv, hw[1] >> lv
            k = m.weight.shape[2] * m.weight.shape[3]
            if layer.name.endswith(".up"):  # transposed conv: every input pixel is one k*k update
                h, w = h // 2, w // 2
            layer.macs = int(m.in_channels * m.out_channels * k * h * w)

    def parameters(self) -> list[nn.Parameter]:
        """Every bit-width offset parameter (for their own optimizer group)."""
        mods = [layer.weight_bw for layer in self.layers] + list(self.acts.values())
        return [m.bit_width_offset for m in mods]

    def check_bound(self, model: nn.Module) -> None:
        """Raise if the tracked bit widths are not the model's own parameters (a stale tracker)."""
        own = {id(p) for p in model.parameters()}
        stale = [i for i, p in enumerate(self.parameters()) if id(p) not in own]
        if stale:
            raise RuntimeError(
                f"{len(stale)} tracked bit widths are not parameters of the model "
                "(tracker built before load_state_dict?)"
            )

    @torch.no_grad()
    def project_(self) -> None:
        """Keep every offset inside [0, max - min] (the clamp's STE would let it drift past)."""
        for m in [layer.weight_bw for layer in self.layers] + list(self.acts.values()):
            hi = self.max_bits - float(m.bit_width_base)
            m.bit_width_offset.copy_(m.bit_width_offset.abs().clamp_(0.0, hi))

    @torch.no_grad()
    def freeze_(self) -> None:
        """Snap every offset to the integer its forward rounds to (the caller stops stepping them;
        ``requires_grad`` stays on, which DDP's reducer expects of every parameter it was built
        with)."""
        for m in [layer.weight_bw for layer in self.layers] + list(self.acts.values()):
            m.bit_width_offset.copy_(m.bit_width_offset.abs().round_())

    def widths(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weight widths [23] (forward order) and activation widths by name (differentiable)."""
        w = torch.stack([layer.weight_bw() for layer in self.layers])
        a = {name: m() for name, m in self.acts.items()}
        return w, a

    def average(self, mode: str = "mean") -> torch.Tensor:
        """The differentiable average width used by the bit-width loss (see module doc)."""
        w, a = self.widths()
        if mode == "mean":
            return torch.cat([w, torch.stack(list(a.values()))]).mean()
        if mode == "weights":
            return w.mean()
        if mode == "size":
            n = torch.tensor([float(layer.params) for layer in self.layers], device=w.device)
            return (n * w).sum() / n.sum()
        if mode == "bops":
            macs = torch.tensor([float(layer.macs) for layer in self.layers], device=w.device)
            eight = torch.tensor(8.0, device=w.device)
            a_in = torch.stack(
                [a[layer.in_act] if layer.in_act else eight for layer in self.layers]
            )
            return torch.sqrt((macs * w * a_in).sum() / macs.sum())
        raise ValueError(f"bit-width loss mode must be one of {BIT_LOSS_MODES}, not {mode!r}")

    @torch.no_grad()
    def report(self) -> dict:
        """Integer widths per layer, the averages, and model size in bits."""
        w, a = self.widths()
        weights = {layer.name: int(round(float(v))) for layer, v in zip(self.layers, w)}
        acts = {name: int(round(float(v))) for name, v in a.items()}
        raw = {
            layer.name: float(
                layer.weight_bw.bit_width_offset.abs() + layer.weight_bw.bit_width_base
            )
            for layer in self.layers
        }
        raw.update(
            {
                f"{name}": float(m.bit_width_offset.abs() + m.bit_width_base)
                for name, m in self.acts.items()
            }
        )
        weight_bits = sum(layer.params * weights[layer.name] for layer in self.layers)
        return {
            "avg_bits": float(self.average("mean")),
            "avg_weight_bits": float(self.average("weights")),
            "avg_act_bits": float(sum(acts.values()) / max(len(acts), 1)),
            "size_weighted_bits": float(self.average("size")),
            "bops_weighted_bits": float(self.average("bops")),
            "weight_bits": weights,
            "act_bits": acts,
            "raw_bits": raw,
            # conv weights at their widths + the rest (biases, BN, folded later) at 32 bits
            "model_bits": int(weight_bits + 32 * self.other_params),
            "bops": int(
                sum(
                    layer.macs * weights[layer.name] * (acts[layer.in_act] if layer.in_act else 8)
                    for layer in self.layers
                )
            ),
        }
