"""``qdev postprocess RUN``: choose the run's mask rule (core/maskrule.py) on the validation split.

The rule is searched over a grid of thresholds on the network's integer output codes (given in
logit units, each turned into the code it means for this model's output scale), minimum mask
areas, and image-level peak thresholds (an image keeps its mask only where its highest output is
above the peak; off is part of the grid). Rules are scored by **validation Dice over all images**
(lesion images and normal scans alike, so it counts both failure modes: a missed lesion and a
false lesion on a normal scan).

The search goes in steps of complexity, from the network's own masks (code > 0) to the best rule
without a peak, then to the best rule with one, and takes a step only where the gain is more than
a handful of images: a paired bootstrap over the validation images (the same resampled images
scored under both rules) must find the gain above 0 in at least ``level`` of the resamples (0.95
by default). With 20 normal validation scans, one cleared scan is worth most of a point of
all-image Dice, so without the margin a rule can be chosen on two or three images. Within a step,
ties go to the simpler rule (no peak, then smaller areas, then thresholds nearer 0, then lower
peaks). The test split is never read. The choice is written to ``postprocess/rule.json`` with the
whole validation grid and each step's gain and bootstrap probability; ``qdev evaluate`` and
``qdev bundle`` then apply it, and the device runs it after the accelerator.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from qdev.core.errors import QdevError
from qdev.core.masks import SMOOTH
from qdev.core.maskrule import DEFAULT_RULE, MaskRule
from qdev.training.config import CRITERIA_NAMES
from qdev.core.preprocess import to_unit_float
from qdev.training.checkpoint import load_checkpoint_model
from qdev.training.data import open_run_data, read_split
from qdev.training.data.busi import CLASSES
from qdev.training.mask_rule import RULE_FILE
from qdev.training.runs import RunFolder, atomic_write_text
from qdev.training.stages import StageRecord

__all__ = [
    "RuleSearch",
    "RuleStep",
    "RuleChoice",
    "output_scale",
    "model_codes",
    "logit_codes",
    "per_image_dice",
    "rule_figures",
    "paired_bootstrap",
    "search_rules",
    "choose_rule",
    "split_codes",
]

NORMAL = CLASSES.index("normal")


@dataclass(frozen=True)
class RuleSearch:
    """The grid: thresholds in logit units (-> codes), minimum mask areas in pixels, and peak
    thresholds in logit units (None: no peak rule). A peak at or below the threshold changes
    nothing and is left out. ``level``: the bootstrap probability of a positive gain a step to a
    more complex rule must reach (0: any gain is taken, i.e. the grid's best rule wins);
    ``resamples``: the bootstrap's resamples (seeded, so a search is reproducible)."""

    logit_thresholds: tuple[float, ...] = (-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5)
    min_areas: tuple[int, ...] = (0, 10, 25, 50, 100, 150, 200, 300)
    peak_logits: tuple[float | None, ...] = (None, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0)
    level: float = 0.95
    resamples: int = 2000
    criterion: str = "all"

    def __post_init__(self) -> None:
        if self.criterion not in CRITERIA:
            raise QdevError(
                f"rule search: criterion must be one of {', '.join(CRITERIA)}, "
                f"not {self.criterion!r}"
            )
        if not 0.0 <= self.level < 1.0:
            raise QdevError(f"rule search: level {self.level} must be in [0, 1)")
        if self.resamples < 1:
            raise QdevError(f"rule search: resamples {self.resamples} must be at least 1")

    def rules(self, scale: float) -> list[MaskRule]:
        codes = sorted({_code(t, scale) for t in self.logit_thresholds})
        peaks = sorted({_code(t, scale) for t in self.peak_logits if t is not None})
        off = [None] if None in self.peak_logits else []
        return [
            MaskRule(c, a, p)
            for c in codes
            for a in sorted(set(self.min_areas))
            for p in off + [q for q in peaks if q > c]
        ]


CRITERIA = CRITERIA_NAMES  # declared with the configs that offer them
"""What a rule is scored by: ``all``, the mean Dice over all images (the shipped default's; a
split's prevalence weighs its two failure modes), or ``balanced``, the mean of the lesion images'
mean Dice and the normal scans' mean Dice (each failure mode half, whatever the prevalence: a new
site's validation patients can be two-thirds normal scans, and then ``all`` trades lesions for
normals; ``qdev adapt`` uses it)."""


def criterion_weights(truth: np.ndarray, criterion: str) -> np.ndarray:
    """Per-image weights (mean 1) under which the weighted mean Dice is the criterion's score."""
    n = len(truth)
    w = np.ones(n)
    if criterion == "balanced":
        lesion = truth.reshape(n, -1).any(1)
        k = int(lesion.sum())
        if 0 < k < n:
            w = np.where(lesion, n / (2.0 * k), n / (2.0 * (n - k)))
    return w


def _code(logit: float, scale: float) -> int:
    lim = 2**15 - 1  # within MaskRule's code bound
    return int(np.clip(np.floor(logit / scale), -lim, lim))


def output_scale(model: torch.nn.Module) -> float:
    """The scale of a QuantU-Net's output codes (logit = code x scale)."""
    act = getattr(getattr(model, "out", None), "act_quant", None)
    if act is None:
        raise QdevError(
            "a float model has no integer output codes: the mask rule is for QuantU-Nets"
        )
    return float(act.scale().detach())


@torch.no_grad()
def model_codes(
    model: torch.nn.Module, images: np.ndarray, batch: int = 32
) -> tuple[np.ndarray, float]:
    """(integer output codes [N, H, W], output scale) of a QuantU-Net on uint8 images [N, H, W]."""
    scale = output_scale(model)
    x = torch.from_numpy(to_unit_float(images)).unsqueeze(1)
    logits = torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])[:, 0].numpy()
    return logit_codes(logits, scale), scale


def split_codes(
    model: torch.nn.Module, arrays, split, names: tuple[str, ...] = ("val", "test")
) -> dict:  # noqa: ANN001
    """name -> (output codes, truth masks, labels, output scale) of ``model`` on each named split of
    ``split`` (a :class:`training.data.Split` over ``arrays``): what the rule figures are made
    of."""
    out = {}
    for name in names:
        idx = split.indices(arrays, name)
        codes, scale = model_codes(model, arrays.images[idx])
        out[name] = (codes, arrays.masks[idx] > 0, arrays.labels[idx], scale)
    return out


def logit_codes(logits: np.ndarray, scale: float) -> np.ndarray:
    """The 8-bit output's integer codes (int32) of its dequantised logits."""
    return np.round(logits / scale).astype(np.int32)


def per_image_dice(masks: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Dice of each image of masks [N, H, W] against truth (device/masks.dice, all images at once:
    the grid scores hundreds of rules); a normal scan scores 1 unmarked and about 0 marked."""
    t = truth.astype(bool).reshape(len(truth), -1)
    m = masks.astype(bool).reshape(len(masks), -1)
    return (2.0 * (m & t).sum(1) + SMOOTH) / (m.sum(1) + t.sum(1) + SMOOTH)


def rule_figures(
    masks: np.ndarray, truth: np.ndarray, labels: np.ndarray, d: np.ndarray | None = None
) -> dict:
    """Dice over all images and lesion images, and the two failure modes, of masks [N, H, W]
    (``d``: their per-image Dice where the caller has it)."""
    d = per_image_dice(masks, truth) if d is None else d
    lesion = truth.reshape(len(truth), -1).any(1)
    normal = labels == NORMAL
    marked = masks.reshape(len(masks), -1).any(1)
    return {
        "dice_all": float(d.mean()),
        "dice_lesion": float(d[lesion].mean()) if lesion.any() else None,
        "normal_marked": int(marked[normal].sum()),
        "n_normal": int(normal.sum()),
        "missed": int((d[lesion] < 0.1).sum()),
        "n_lesion": int(lesion.sum()),
    }


def paired_bootstrap(gain: np.ndarray, resamples: int, seed: int = 0) -> float:
    """The fraction of bootstrap resamples of the images whose mean per-image gain is above 0."""
    if len(gain) == 0:
        return 0.0
    idx = np.random.default_rng(seed).integers(0, len(gain), (resamples, len(gain)))
    return float((gain[idx].mean(1) > 0).mean())


@dataclass(frozen=True)
class RuleStep:
    """One step of the search: the best rule of a stage against the rule held so far."""

    stage: str
    candidate: MaskRule
    gain: float  # validation all-image Dice, candidate minus the rule held
    p_gain: float  # paired-bootstrap probability that the gain is above 0
    taken: bool

    def to_dict(self, scale: float) -> dict:
        return {
            "stage": self.stage,
            "candidate": self.candidate.to_dict(),
            "describe": self.candidate.describe(),
            "logit_threshold": self.candidate.logit_threshold(scale),
            "peak_logit": self.candidate.peak_logit(scale),
            "gain": self.gain,
            "p_gain": self.p_gain,
            "taken": self.taken,
        }


@dataclass(frozen=True)
class RuleChoice:
    """What the search found on one split: the rule kept and its figures, the default rule's
    figures, the whole grid [(rule, figures)] and the steps that led to the choice."""

    rule: MaskRule
    figures: dict
    default: dict
    grid: list[tuple[MaskRule, dict]]
    steps: list[RuleStep]


# the search's stages, simplest first: the grid's rules that each admits
STAGES: dict[str, Callable[[MaskRule], bool]] = {
    "threshold and area": lambda r: r.min_peak is None,
    "peak": lambda r: r.min_peak is not None,
}


def _preference(rule: MaskRule, score: float) -> tuple:
    return (
        round(score, 6),
        rule.is_default,
        rule.min_peak is None,
        -rule.min_area,
        -abs(rule.min_code),
        -(rule.min_peak or 0),
    )


def search_rules(
    codes: np.ndarray,
    truth: np.ndarray,
    labels: np.ndarray,
    scale: float,
    search: RuleSearch = RuleSearch(),
) -> RuleChoice:
    """Search ``search`` on one split (see the module doc for the steps and their margin)."""
    grid, per_image, score = [], {}, {}
    w = criterion_weights(truth, search.criterion)
    for r in [DEFAULT_RULE, *search.rules(scale)]:
        masks = r.apply(codes)
        per_image[r] = (
            per_image_dice(masks, truth) * w
        )  # weighted: its mean is the criterion's score
        score[r] = float(per_image[r].mean())
        grid.append((r, rule_figures(masks, truth, labels, per_image[r] / w)))
    (_, default), grid = grid[0], grid[1:]
    held, held_fig, held_d = DEFAULT_RULE, default, per_image[DEFAULT_RULE]
    steps = []
    for stage, admits in STAGES.items():
        cands = [(r, f) for r, f in grid if admits(r) and r != held]
        if not cands:
            continue
        best, best_fig = max(cands, key=lambda rf: _preference(rf[0], score[rf[0]]))
        gain = per_image[best] - held_d
        p = paired_bootstrap(gain, search.resamples)
        taken = gain.mean() > 0 and p >= search.level
        steps.append(RuleStep(stage, best, float(gain.mean()), p, bool(taken)))
        if taken:
            held, held_fig, held_d = best, best_fig, per_image[best]
    return RuleChoice(held, held_fig, default, grid, steps)


def choose_rule(run_dir: Path, data: str | None = None, search: RuleSearch = RuleSearch()) -> dict:
    """Search ``search`` on the run's validation split; write and return
    ``postprocess/rule.json``."""
    run = RunFolder.existing(run_dir)
    st = run.stage("train")
    rec = StageRecord(run, "postprocess", {"search": asdict(search), "split": "val"})
    model, ckpt = load_checkpoint_model(rec.input("train/best.pt"))
    if ckpt["model_config"]["kind"] != "quant":
        raise QdevError(
            f"{run_dir}: a float model has no integer output codes; the mask rule is for "
            "QuantU-Nets"
        )
    size = int(ckpt["size"])
    arrays = open_run_data(st["config"], data, (size, size))
    idx = read_split(rec.input("train/split.json")).indices(arrays, "val")
    if len(idx) == 0:
        raise QdevError(f"{run_dir}: the run's validation split is empty")
    codes, scale = model_codes(model, arrays.images[idx])
    truth, labels = arrays.masks[idx] > 0, arrays.labels[idx]
    rec.begin()
    found = search_rules(codes, truth, labels, scale, search)
    chosen, figures = found.rule, found.figures
    what = (
        "Dice over all images"
        if search.criterion == "all"
        else "balanced Dice (mean of lesion images' and normal scans' mean Dice)"
    )
    doc = {
        "run": run.path.name,
        "split": "val",
        "n_images": int(len(idx)),
        "checkpoint_epoch": ckpt["epoch"],
        "criterion": search.criterion,
        "chosen_by": (
            f"validation {what}, a step to a more complex rule taken where a paired bootstrap "
            f"gives P(gain > 0) >= {search.level} (ties: the simpler rule)"
        ),
        "output_scale": scale,
        "rule": chosen.to_dict(),
        "describe": chosen.describe(),
        "logit_threshold": chosen.logit_threshold(scale),
        "peak_logit": chosen.peak_logit(scale),
        "chosen": figures,
        "default": found.default,
        "steps": [st.to_dict(scale) for st in found.steps],
        "grid": [
            {
                "rule": r.to_dict(),
                "logit_threshold": r.logit_threshold(scale),
                "peak_logit": r.peak_logit(scale),
                **f,
            }
            for r, f in found.grid
        ],
    }
    path = run.path / RULE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    rec.finish()
    return doc
