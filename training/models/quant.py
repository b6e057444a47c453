"""QuantU-Net's quantizers, declared once (Brevitas style: composed classes, `.let` overrides).

* Weights: signed narrow-range per-tensor int, scale from the max |w|, bit width a trainable
  parameter (``bit_width_impl_type = PARAMETER``: ``round_ste(clamp(|offset| + min, min, max))``;
  the
  trainer also projects the offsets back into range after every step).
* Activations after ReLU: unsigned per-tensor int, scale learned (initialised from runtime
  percentile statistics), trainable bit width in the same range.
* Input: fixed 8-bit unsigned with scale 1/255, so the accelerator takes raw 8-bit pixels.
* Output head: fixed 8-bit signed logits; the hardware mask is ``code > 0`` (logit > 0 <=>
  sigmoid > 0.5), so no sigmoid is ever mapped to hardware. Its scale is learned, initialised
  from the first steps' statistics (the default) or, with :func:`logit_output_quant`, at a given
  logit range: logits at initialisation are small, and a scale taken from them can leave the
  learned range so narrow (measured: logits clipped at about +-2) that no pixel's probability
  gets below ~0.11, which blurs the soft Dice and caps BCE.
"""

from __future__ import annotations

from brevitas.core.bit_width import BitWidthImplType
from brevitas.core.restrict_val import RestrictValueType
from brevitas.core.scaling import ScalingImplType
from brevitas.quant import (
    Int8ActPerTensorFloat,
    Int8WeightPerTensorFloat,
    Uint8ActPerTensorFloat,
)

__all__ = [
    "TrainableBitsWeightQuant",
    "TrainableBitsUintActQuant",
    "PixelUint8InputQuant",
    "LogitInt8OutputQuant",
    "weight_quant",
    "relu_act_quant",
    "logit_output_quant",
]


class TrainableBitsWeightQuant(Int8WeightPerTensorFloat):
    """Per-tensor signed weights with a learned integer bit width."""

    bit_width_impl_type = BitWidthImplType.PARAMETER


class TrainableBitsUintActQuant(Uint8ActPerTensorFloat):
    """Per-tensor unsigned activations (after ReLU) with a learned integer bit width."""

    bit_width_impl_type = BitWidthImplType.PARAMETER
    collect_stats_steps = 100


class PixelUint8InputQuant(Uint8ActPerTensorFloat):
    """Fixed 8-bit input, scale exactly 1/255: the integer input is the 8-bit pixel."""

    scaling_impl_type = ScalingImplType.CONST
    restrict_scaling_type = RestrictValueType.FP
    scaling_init = 255.0 / 255.0  # max value 1.0 -> scale = 1/255 for 8 unsigned bits
    bit_width = 8


class LogitInt8OutputQuant(Int8ActPerTensorFloat):
    """Fixed 8-bit signed logits from the 1x1 head."""

    bit_width = 8
    collect_stats_steps = 100


def logit_output_quant(out_range: float) -> type:
    """The output quantizer; ``out_range`` > 0 starts its learned scale at logits of +-out_range.

    0 keeps :class:`LogitInt8OutputQuant` (scale from runtime statistics of the first steps).
    """
    if out_range <= 0:
        return LogitInt8OutputQuant
    return LogitInt8OutputQuant.let(
        scaling_impl_type=ScalingImplType.PARAMETER, scaling_init=float(out_range)
    )


def _trainable_bits(quant: type, init_bits: int, min_bits: int, max_bits: int) -> type:
    return quant.let(
        bit_width=init_bits,
        min_bit_width=min_bits,
        # despite the names, Brevitas clamps the *total* width with these (and only if both are set)
        bit_width_offset_min_val=min_bits,
        bit_width_offset_max_val=max_bits,
    )


def weight_quant(init_bits: int, min_bits: int, max_bits: int) -> type:
    """The weight quantizer with a trainable bit width initialised at ``init_bits``."""
    return _trainable_bits(TrainableBitsWeightQuant, init_bits, min_bits, max_bits)


def relu_act_quant(init_bits: int, min_bits: int, max_bits: int) -> type:
    """The post-ReLU activation quantizer with a trainable bit width."""
    return _trainable_bits(TrainableBitsUintActQuant, init_bits, min_bits, max_bits)
