"""Exponential moving average of a model's weights, BatchNorm statistics included.

The averaged model is a second instance of the same architecture whose floating-point state
(parameters *and* buffers: BatchNorm running mean/var, Brevitas scale buffers) follows the live
one as ``ema = decay * ema + (1 - decay) * live`` after every optimiser step. Integer buffers
(``num_batches_tracked``) are copied. Averaging the BN statistics alongside the weights, rather
than keeping the live model's, is what timm's ``ModelEmaV2`` and torch's
``AveragedModel(use_buffers=True)`` do: the statistics then describe activations of (nearly) the
averaged weights.

QuantU-Net: the averaged copy is (re)started from the live model when the bit widths freeze, so
it only ever averages weights on the final integer grid; averaging across width changes would
mix weights trained for different grids.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """EMA of ``model``'s state. ``decay`` in (0, 1); ``module`` is the averaged model (eval)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), not {decay}")
        self.decay = decay
        self._copy(model)

    def _copy(self, model: nn.Module) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def reset(self, model: nn.Module) -> None:
        """Restart the average at the live model's current state."""
        src = model.state_dict()
        for k, dst in self.module.state_dict().items():
            dst.copy_(src[k])
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        # warm-up as in timm/TF: the early average is not dominated by the initial weights
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        # by key: Brevitas may rebuild quantizer modules on load. keep_vars: no detach() per
        # tensor (under no_grad the lerp reads the parameters as they are)
        src = model.state_dict(keep_vars=True)
        own = self.module.state_dict(keep_vars=True)
        if own.keys() != src.keys():
            # Brevitas's runtime-stats activation scales only become state once the live model has
            # collected its statistics (its first training steps): start the average there
            self._copy(model)
            return
        floats = [k for k, v in own.items() if v.dtype.is_floating_point]
        # one fused lerp over all floating-point tensors instead of one kernel each: on a GPU a
        # width-8 step is launch-bound, and the per-tensor loop was 1 in 8 of a step's operators
        torch._foreach_lerp_([own[k] for k in floats], [src[k] for k in floats], 1.0 - d)
        for k, dst in own.items():
            if not dst.dtype.is_floating_point:
                dst.copy_(src[k])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "model": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])  # Brevitas marks loaded scales as initialised
        self.updates = int(state["updates"])
