"""The training run's configuration, without torch: ``TrainConfig`` and ``ModelConfig``.

Each field says what it is once (:func:`qdev.core.fields.opt`): ``qdev train`` generates its
options, defaults, choices and help from these, the run manifest and checkpoints store them, and
``check()`` refuses what cannot train. The names of the augmentation presets, Dice terms,
bit-width losses and selection scores live here so that the command line needs no torch; the
torch modules that implement them are tested to implement exactly these
(``tests/training/test_config_options.py``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qdev.core.errors import ConfigError
from qdev.core.fields import no_option, opt

if TYPE_CHECKING:
    from qdev.training.data import DataOptions

__all__ = [
    "ModelConfig",
    "TrainConfig",
    "AdaptConfig",
    "CRITERIA_NAMES",
    "AUGMENT_NAMES",
    "BIT_LOSS_MODES",
    "DICE_NAMES",
    "SELECT_MODES",
    "MODEL_KINDS",
]

MODEL_KINDS = ("float", "quant")
#: presets of :data:`qdev.training.augment.AUGMENT_PRESETS`
AUGMENT_NAMES = ("full", "flips", "strong", "scanner", "none")
#: averages of the bit widths the bit loss penalises (:mod:`qdev.training.models.bitwidth`)
BIT_LOSS_MODES = ("mean", "weights", "size", "bops")
#: Dice terms of :data:`qdev.training.losses.DICE_MODES`
DICE_NAMES = ("batch", "image")
#: validation scores that pick the best checkpoint (:func:`qdev.training.trainer.selection_score`)
SELECT_MODES = ("lesion", "balanced")
#: how masks are scored in a rule search (:data:`qdev.training.postprocess.CRITERIA`)
CRITERIA_NAMES = ("all", "balanced")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture settings (each field's help says what it is)."""

    kind: str = opt(
        "quant",
        decl="--model",
        choices=MODEL_KINDS,
        help="float: the paper's U-Net; quant: QuantU-Net with trainable per-layer bit widths.",
    )
    width: int = opt(8, help="Channels of the first block (paper: 64).")
    batchnorm: bool = opt(
        True,
        decl="--bn/--no-bn",
        help="BatchNorm after each 3x3 conv (--no-bn: the paper's Table 1 literally; "
        "FINN folds BN into thresholds, so it costs no hardware).",
    )
    init_bits: int = opt(4, help="Initial weight/activation bit width of QuantU-Net (starts low).")
    min_bits: int = no_option("set with --bits MIN..MAX", 2)
    max_bits: int = no_option("set with --bits MIN..MAX", 8)
    out_range: float = opt(
        0.0,
        help="Initial logit range of the 8-bit output's learned scale "
        "(0: from the first steps' statistics).",
    )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the run manifest and checkpoints).

    ``mix`` adds training data: each entry ``{"data", "data_options", "split", "weight"}`` is the
    train split (a split JSON path, or ``grouped``) of another dataset, drawn ``weight`` times as
    often per epoch as the main dataset's training images are (0.5: one image of it for every two
    of the main set). Validation stays the main dataset's. Empty: every epoch is one permutation of
    the main training set.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    out: str = opt("runs/default", required=True, help="Run folder, e.g. runs/quant-w8.")
    data: str | None = opt(None, help="BUSI location (default: $QDEV_BUSI or ../shared/data/busi).")
    split: str = opt(
        "grouped",
        help="grouped (leak-free, by patient) | paper (random stratified) | a split JSON path.",
    )
    size: int = opt(128, help="Input side in pixels (the paper: 128).")
    epochs: int = opt(60, help="Number of epochs.")
    batch_size: int = opt(16, help="Global batch size (split across DDP ranks).")
    lr: float = opt(
        1e-3, help="Learning rate of the weights (AdamW, cosine decay to 1% over the run)."
    )
    bits_lr: float = opt(0.1, help="Learning rate of the bit widths (constant).")
    bits_optimizer: str = opt(
        "sgd",
        choices=("sgd", "adam"),
        help="Optimizer of the bit widths: sgd (momentum 0.9, see training/trainer.py) or adam.",
    )
    weight_decay: float = opt(1e-4, help="AdamW weight decay (not on bit widths, BN or biases).")
    lam: float = opt(0.25, decl="--lambda", help="Weight of the bit-width loss.")
    bit_loss: str = opt(
        "mean", choices=BIT_LOSS_MODES, help="Which average of the bit widths the loss penalises."
    )
    augment: str = opt(
        "full", choices=AUGMENT_NAMES, help="Training augmentation preset (training/augment.py)."
    )
    init_from: str | None = opt(
        None,
        path="file",
        help="Checkpoint to initialise weights from (e.g. the float twin's best.pt).",
    )
    finetune_from: str | None = opt(
        None,
        path="file",
        help="Fine-tune this checkpoint: its whole state and model options "
        "(with --freeze-bits 0, its bit widths stay).",
    )
    seed: int = opt(0, help="Seed of everything: split, init, order, augmentation.")
    device: str = opt("auto", help="auto | cpu | cuda.")
    threads: int | None = opt(None, help="Torch CPU threads (default: torch's).")
    freeze_bits: float = opt(
        0.75,
        help="Freeze the widths at their integer values after this fraction of the "
        "epochs; the best checkpoint is chosen among the frozen epochs (1: never).",
    )
    ema: float = opt(
        0.0, help="Weight EMA decay used for validation and best.pt (0: none; e.g. 0.995)."
    )
    normal_weight: float = opt(
        1.0, help="Weight of a normal scan's BCE against a lesion image's (1: the paper's loss)."
    )
    dice: str = opt(
        "batch",
        choices=DICE_NAMES,
        help="Dice term over the whole batch (the paper's) or per lesion image, averaged.",
    )
    data_options: dict | None = no_option(
        "how qdev adapt reads a site's data (its dataset options); qdev train reads BUSI", None
    )
    mix: list = no_option(
        "more training data with weights, set by qdev adapt (replay of the base's data)",
        default_factory=list,
    )
    select: str = opt(
        "lesion",
        choices=SELECT_MODES,
        help="What picks the best checkpoint on validation: lesion images' Dice, or the mean of "
        "lesion images' and normal scans' Dice.",
    )

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> TrainConfig:
        d = dict(d)
        d["model"] = ModelConfig(**d["model"])
        d.setdefault("freeze_bits", 1.0)  # runs made before freezing existed never froze
        d.setdefault("ema", 0.0)  # runs made before the EMA existed had none
        d.setdefault("normal_weight", 1.0)  # runs made before the weighting: the paper's loss
        d.setdefault("dice", "batch")  # runs made before the per-image Dice: the paper's
        d.setdefault("finetune_from", None)
        d.setdefault("data_options", None)
        d.setdefault("mix", [])
        d.setdefault("select", "lesion")
        if isinstance(d.get("augment"), bool):  # runs made before the presets: on/off
            d["augment"] = "full" if d["augment"] else "none"
        return TrainConfig(**d)

    def freeze_epoch(self) -> int | None:
        """First epoch trained with frozen widths (None: widths train to the end)."""
        if self.model.kind != "quant" or self.freeze_bits >= 1.0:
            return None
        return max(1, min(self.epochs, int(math.floor(self.freeze_bits * self.epochs)) + 1))

    def check(self) -> None:
        """Refuse a configuration that cannot train (one-line errors naming the option)."""
        m = self.model
        if m.kind not in MODEL_KINDS:
            raise ConfigError(f"--model must be float or quant, not {m.kind!r}")
        if not 2 <= m.min_bits <= m.init_bits <= m.max_bits <= 16:
            raise ConfigError(
                f"bit widths need 2 <= min ({m.min_bits}) <= init ({m.init_bits}) "
                f"<= max ({m.max_bits}) <= 16"
            )
        if self.size % 16 or self.size < 16:
            raise ConfigError(f"--size {self.size}: must be a multiple of 16 (four 2x2 poolings)")
        if m.width < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("--width, --epochs and --batch-size must be positive")
        for name, value, allowed in (
            ("--bit-loss", self.bit_loss, BIT_LOSS_MODES),
            ("--augment", self.augment, AUGMENT_NAMES),
            ("--dice", self.dice, DICE_NAMES),
            ("--select", self.select, SELECT_MODES),
        ):
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        self._check_ranges()

    def _check_ranges(self) -> None:
        if self.lam < 0:
            raise ConfigError("--lambda must be >= 0")
        if not 0.0 <= self.freeze_bits <= 1.0:
            raise ConfigError(f"--freeze-bits {self.freeze_bits}: must be a fraction in [0, 1]")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"--ema {self.ema}: must be a decay in [0, 1) (0: no EMA)")
        if not 0.0 < self.normal_weight <= 100.0:
            raise ConfigError(
                f"--normal-weight {self.normal_weight}: must be in (0, 100] (1: the paper's loss)"
            )
        for m in self.mix:
            if (
                not isinstance(m, dict)
                or "data" not in m
                or not 0.0 < float(m.get("weight", 0)) <= 100.0
            ):
                raise ConfigError(
                    f"mix entry {m!r}: needs a data location and a weight in (0, 100]"
                )
        if not 0.0 <= self.model.out_range <= 64.0:
            raise ConfigError(
                f"--out-range {self.model.out_range}: must be in [0, 64] (0: from statistics)"
            )


def _data_options() -> DataOptions:
    """A default DataOptions, imported on first use: the command line loads this module to make
    its options and should not pay for the data readers (numpy, Pillow) to start."""
    from qdev.training.data import DataOptions

    return DataOptions()


@dataclass
class AdaptConfig:
    """Options of ``qdev adapt`` (see :mod:`qdev.training.adapt`)."""

    base: Path = no_option(
        "the BASE argument: run folder of the network to adapt (e.g. models/quantunet-w8)"
    )
    data: str = opt(
        required=True, help="The site's labelled images: images/ + masks/ folder, datalist or pack."
    )
    out: Path = opt(required=True, path="newdir", help="New run folder.")
    options: DataOptions = no_option(
        "how to read the site's data: the dataset options --mask-colours, "
        "--patient-pattern, --site",
        default_factory=_data_options,
    )
    fractions: tuple[float, float, float] = no_option(
        "--fractions A,V,T (three numbers in one option)", (0.6, 0.2, 0.2)
    )
    images: int | None = opt(None, help="Keep this many adapt images (default: all).")
    epochs: int = opt(20, help="Epochs of the fine-tune.")
    lr: float = opt(3e-4, help="Learning rate of the fine-tune (cosine decay).")
    batch_size: int = opt(16, help="Batch size of the fine-tune.")
    augment: str = opt(
        "scanner", choices=AUGMENT_NAMES, help="Augmentation preset of the fine-tune."
    )
    ema: float = opt(0.99, help="Weight EMA decay of the fine-tune (0: none).")
    replay: float = opt(
        0.5,
        help="Base training images drawn per site image each epoch, against forgetting (0: none).",
    )
    replay_data: str | None = opt(
        None, help="Where the base's training data is (default: its own record)."
    )
    seed: int = opt(0, help="Seed of the split, the image draw and the fine-tune.")
    threads: int | None = opt(None, help="Torch CPU threads.")
    candidates: int = opt(
        1, help="Adapted candidates you compare (the margin is corrected for them)."
    )
    level: float = opt(0.95, help="Uncorrected bootstrap level of the decision.")
    resamples: int = opt(2000, help="Bootstrap resamples of the decision.")
    criterion: str = opt(
        "balanced",
        choices=CRITERIA_NAMES,
        help="Score masks (rule search and decision): lesion images and normal scans half each, "
        "or all images alike.",
    )

    def check(self) -> None:
        if self.images is not None and self.images < 1:
            raise ConfigError(f"--images {self.images}: must be at least 1")
        if not 0.0 <= self.replay <= 10.0:
            raise ConfigError(f"--replay {self.replay}: must be in [0, 10]")
        if self.epochs < 1 or self.candidates < 1 or self.batch_size < 1:
            raise ConfigError("--epochs, --candidates and --batch-size must be positive")
        if not 0.5 <= self.level < 1.0 or not 100 <= self.resamples <= 1_000_000:
            raise ConfigError(
                f"--level {self.level} must be in [0.5, 1) and --resamples {self.resamples} "
                "in [100, 1000000]"
            )
        if self.criterion not in CRITERIA_NAMES or self.augment not in AUGMENT_NAMES:
            raise ConfigError(
                f"--criterion must be one of {', '.join(CRITERIA_NAMES)} and --augment one of "
                f"{', '.join(AUGMENT_NAMES)}"
            )
        if abs(sum(self.fractions) - 1) > 1e-6 or min(self.fractions) <= 0:
            raise ConfigError(
                f"--fractions {self.fractions}: three positive fractions summing to 1"
            )
