"""``qdev postprocess RUN``: choose the run's mask rule (device/maskrule.py) on the validation split.

The rule is searched over a grid of thresholds on the network's integer output codes (given in
logit units, each turned into the code it means for this model's output scale), minimum mask
areas, and image-level peak thresholds (an image keeps its mask only where its highest output is
above the peak; off is part of the grid). The rule kept is the one with the highest **validation Dice over all images** (lesion
images and normal scans alike, so it counts both failure modes: a missed lesion and a false
lesion on a normal scan); ties go to the simpler rule (the default first, then no peak rule,
then smaller areas, then thresholds nearer 0, then lower peaks). The test split is never read. The choice is written to
``postprocess/rule.json`` with the whole validation grid; ``qdev evaluate`` and ``qdev bundle``
then apply it, and the device runs it after the accelerator.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from qdev.device.errors import QdevError
from qdev.device.masks import SMOOTH
from qdev.device.maskrule import DEFAULT_RULE, MaskRule
from qdev.device.preprocess import to_unit_float
from qdev.training.checkpoint import load_checkpoint_model, run_checkpoint
from qdev.training.data import load_busi, read_split, resolve_busi_root
from qdev.training.data.busi import CLASSES
from qdev.training.mask_rule import RULE_FILE
from qdev.training.runs import RunFolder, atomic_write_text

__all__ = ["RuleSearch", "output_scale", "model_codes", "logit_codes", "rule_figures", "search_rules", "choose_rule"]

NORMAL = CLASSES.index("normal")


@dataclass(frozen=True)
class RuleSearch:
    """The grid: thresholds in logit units (-> codes), minimum mask areas in pixels, and peak
    thresholds in logit units (None: no peak rule). A peak at or below the threshold changes
    nothing and is left out."""

    logit_thresholds: tuple[float, ...] = (-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5)
    min_areas: tuple[int, ...] = (0, 10, 25, 50, 100, 150, 200, 300)
    peak_logits: tuple[float | None, ...] = (None, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0)

    def rules(self, scale: float) -> list[MaskRule]:
        codes = sorted({_code(t, scale) for t in self.logit_thresholds})
        peaks = sorted({_code(t, scale) for t in self.peak_logits if t is not None})
        off = [None] if None in self.peak_logits else []
        return [MaskRule(c, a, p) for c in codes for a in sorted(set(self.min_areas))
                for p in off + [q for q in peaks if q > c]]


def _code(logit: float, scale: float) -> int:
    lim = 2**15 - 1  # within MaskRule's code bound
    return int(np.clip(np.floor(logit / scale), -lim, lim))


def output_scale(model: torch.nn.Module) -> float:
    """The scale of a QuantU-Net's output codes (logit = code x scale)."""
    act = getattr(getattr(model, "out", None), "act_quant", None)
    if act is None:
        raise QdevError("a float model has no integer output codes: the mask rule is for QuantU-Nets")
    return float(act.scale().detach())


@torch.no_grad()
def model_codes(model: torch.nn.Module, images: np.ndarray, batch: int = 32) -> tuple[np.ndarray, float]:
    """(integer output codes [N, H, W], output scale) of a QuantU-Net on uint8 images [N, H, W]."""
    scale = output_scale(model)
    x = torch.from_numpy(to_unit_float(images)).unsqueeze(1)
    logits = torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])[:, 0].numpy()
    return logit_codes(logits, scale), scale


def logit_codes(logits: np.ndarray, scale: float) -> np.ndarray:
    """The 8-bit output's integer codes (int32) of its dequantised logits."""
    return np.round(logits / scale).astype(np.int32)


def rule_figures(masks: np.ndarray, truth: np.ndarray, labels: np.ndarray) -> dict:
    """Dice over all images and lesion images, and the two failure modes, of masks [N, H, W]."""
    t = truth.astype(bool).reshape(len(truth), -1)
    m = masks.astype(bool).reshape(len(masks), -1)
    lesion = t.any(1)
    # device/masks.dice, per image at once (the grid scores hundreds of rules)
    d = (2.0 * (m & t).sum(1) + SMOOTH) / (m.sum(1) + t.sum(1) + SMOOTH)
    normal = labels == NORMAL
    marked = m.any(1)
    return {"dice_all": float(d.mean()), "dice_lesion": float(d[lesion].mean()) if lesion.any() else None,
            "normal_marked": int(marked[normal].sum()), "n_normal": int(normal.sum()),
            "missed": int((d[lesion] < 0.1).sum()), "n_lesion": int(lesion.sum())}


def _preference(rule: MaskRule, figures: dict) -> tuple:
    return (round(figures["dice_all"], 6), rule.is_default, rule.min_peak is None, -rule.min_area,
            -abs(rule.min_code), -(rule.min_peak or 0))


def search_rules(codes: np.ndarray, truth: np.ndarray, labels: np.ndarray, scale: float,
                 search: RuleSearch = RuleSearch()) -> tuple[MaskRule, dict, dict, list[tuple[MaskRule, dict]]]:
    """(the chosen rule, its figures, the default rule's figures, the grid [(rule, figures)]) on
    one split."""
    default = rule_figures(DEFAULT_RULE.apply(codes), truth, labels)
    grid = [(r, rule_figures(r.apply(codes), truth, labels)) for r in search.rules(scale)]
    chosen, figures = max([(DEFAULT_RULE, default), *grid], key=lambda rf: _preference(*rf))
    return chosen, figures, default, grid


def choose_rule(run_dir: Path, data: str | None = None, search: RuleSearch = RuleSearch()) -> dict:
    """Search ``search`` on the run's validation split; write and return ``postprocess/rule.json``."""
    run = RunFolder.existing(run_dir)
    st = run.stage("train")
    best = run_checkpoint(run, "best")
    model, ckpt = load_checkpoint_model(best)
    if ckpt["model_config"]["kind"] != "quant":
        raise QdevError(f"{run_dir}: a float model has no integer output codes; the mask rule is for QuantU-Nets")
    size = int(ckpt["size"])
    arrays = load_busi(resolve_busi_root(data if data is not None else st["config"].get("data")), (size, size))
    idx = read_split(run.verified("train", "train/split.json")).indices(arrays, "val")
    if len(idx) == 0:
        raise QdevError(f"{run_dir}: the run's validation split is empty")
    codes, scale = model_codes(model, arrays.images[idx])
    truth, labels = arrays.masks[idx] > 0, arrays.labels[idx]
    t0 = run.begin("postprocess", {"search": asdict(search), "split": "val"},
                   {"best.pt": st["outputs"]["train/best.pt"]})
    chosen, figures, default, grid = search_rules(codes, truth, labels, scale, search)
    doc = {
        "run": run.path.name, "split": "val", "n_images": int(len(idx)), "checkpoint_epoch": ckpt["epoch"],
        "chosen_by": "validation Dice over all images (ties: the simpler rule)",
        "output_scale": scale, "rule": chosen.to_dict(), "describe": chosen.describe(),
        "logit_threshold": chosen.logit_threshold(scale), "peak_logit": chosen.peak_logit(scale),
        "chosen": figures, "default": default,
        "grid": [{"rule": r.to_dict(), "logit_threshold": r.logit_threshold(scale), "peak_logit": r.peak_logit(scale), **f}
                 for r, f in grid],
    }
    path = run.path / RULE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    run.finish("postprocess", t0, [path])
    return doc
