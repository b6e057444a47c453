"""qdev checkpoints: ``train/best.pt`` (the model chosen by validation, EMA weights where the
run has an EMA) and ``train/last.pt`` (everything a resume needs), written atomically.

A checkpoint is a dict with ``model_config``, ``config`` (the TrainConfig), ``size``, ``epoch``
and ``model`` (a state dict); ``last.pt`` adds optimiser, scheduler, EMA, RNG and history.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from qdev.core.errors import QdevError
from qdev.training.models import ModelConfig, build_model
from qdev.training.models.bitwidth import BitWidthTracker
from qdev.training.runs import RunFolder, atomic_writer

__all__ = [
    "save_checkpoint",
    "load_checkpoint_model",
    "run_checkpoint",
    "checkpoint_path",
    "init_weights_from",
]

log = logging.getLogger(__name__)


def save_checkpoint(obj: dict, path: Path) -> None:
    """Write ``obj`` with torch.save so that a kill leaves the old file or the new one."""
    with atomic_writer(path) as fh:
        torch.save(obj, fh)


def load_checkpoint_model(path: Path, map_location: str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model from a qdev checkpoint (best.pt/last.pt); returns (model in eval, ckpt)."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise QdevError(f"{path}: unreadable checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or "model_config" not in ckpt:
        raise QdevError(f"{path}: not a qdev checkpoint")
    model = build_model(ModelConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    model.eval()
    if ckpt.get("bits") is None and ckpt["model_config"]["kind"] == "quant":  # last.pt keeps none
        ckpt["bits"] = BitWidthTracker(model, (int(ckpt["size"]),) * 2).report()
    return model, ckpt


def checkpoint_path(which: str) -> str:
    """The run-relative path of checkpoint ``best`` (by validation lesion Dice) or ``last``."""
    if which not in ("best", "last"):
        raise QdevError(f"checkpoint must be best or last, not {which!r}")
    return f"train/{which}.pt"


def run_checkpoint(run: RunFolder, which: str = "best") -> Path:
    """A run's verified ``train/best.pt`` or ``train/last.pt``."""
    return run.verified("train", checkpoint_path(which))


def init_weights_from(model: nn.Module, path: str) -> None:
    """Initialise ``model``'s weights from another checkpoint (e.g. the float twin), quantizer
    state excluded; every non-quantizer tensor must be there with the same shape."""
    src = torch.load(path, map_location="cpu", weights_only=False)
    state = src.get("model", src)
    own = model.state_dict()
    loadable = {
        k: v for k, v in state.items() if k in own and own[k].shape == v.shape and "quant" not in k
    }
    missing = [k for k in own if k not in loadable and "quant" not in k]
    model.load_state_dict(loadable, strict=False)
    if missing:
        raise QdevError(
            f"{path}: cannot initialise from it, {len(missing)} tensors missing (e.g. {missing[0]})"
        )
    log.info("initialised %d tensors from %s", len(loadable), path)
