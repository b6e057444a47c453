"""``qdev evaluate RUN|BUNDLE --data DATASET``: how a model does on any dataset, as deployed or as
trained, image by image, with confidence intervals over patients.

* **As deployed** (a signed bundle folder): the bundle is verified against the trusted keys, its
  integer model runs in the same software executor the device's ``software`` backend runs
  (:class:`qdev.core.software.SoftwareExecutor`, bit-exact with FINN's and the accelerator's
  codes), and its signed mask rule turns codes into masks.
* **As trained** (a run folder): the best checkpoint in PyTorch, under the run's mask rule.

Masks are compared at the model's resolution with the dataset's masks preprocessed the way
training reads them. A lesion is *missed* where its image's Dice is under 0.1, a normal scan
*marked* where any pixel is. Intervals are percentile bootstraps that resample **patients**
(where the dataset names them; else duplicate groups), so that 30 near-identical frames of one
patient count as one patient, not 30 independent images.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qdev.core.errors import QdevError
from qdev.core.maskrule import MaskRule
from qdev.training.data import BusiArrays, find_duplicates
from qdev.training.data.busi import CLASSES
from qdev.training.postprocess import per_image_dice, rule_figures
from qdev.training.runs import atomic_write_text, atomic_writer

__all__ = [
    "Subject",
    "load_subject",
    "ImageRow",
    "SiteEvaluation",
    "evaluate_subject",
    "bootstrap_ci",
    "write_evaluation",
    "MISSED_DICE",
    "unit_resamples",
]

MISSED_DICE = 0.1  # a lesion image under this Dice counts as missed (as in rule_figures)
_NORMAL = CLASSES.index("normal")


@dataclass
class Subject:
    """What is evaluated: its name, ``bundle`` or ``run``, an output-code function and its rule."""

    name: str
    kind: str
    path: Path
    rule: MaskRule
    size: int
    meta: dict

    def codes(self, images: np.ndarray) -> np.ndarray:  # pragma: no cover - replaced per kind
        raise NotImplementedError


class _BundleSubject(Subject):
    def codes(self, images: np.ndarray) -> np.ndarray:
        from qdev.core.intmodel import IntModel
        from qdev.core.software import SoftwareExecutor

        ex = SoftwareExecutor(IntModel.load(self.path / "intmodel.npz"))
        return np.concatenate(
            [ex.run(images[i : i + 16])[..., 0] for i in range(0, len(images), 16)]
        )


class _RunSubject(Subject):
    def codes(self, images: np.ndarray) -> np.ndarray:
        from qdev.training.checkpoint import load_checkpoint_model, run_checkpoint
        from qdev.training.postprocess import model_codes
        from qdev.training.runs import RunFolder

        model, _ = load_checkpoint_model(run_checkpoint(RunFolder.existing(self.path), "best"))
        return model_codes(model, images)[0]


def load_subject(path: Path, trusted: list) -> Subject:  # noqa: ANN001
    """A bundle folder (verified first: nothing of it is read before its signature checks) or a run.

    Raises:
        QdevError: neither, a bundle that fails verification, a float run (no integer codes).
    """
    path = Path(path)
    if (
        (path / "manifest.json.sig").is_file()
        or (path / "manifest.json").is_file()
        and not (path / "train").is_dir()
    ):
        from qdev.core.bundle import verify_bundle

        vb = verify_bundle(path, trusted)
        m = vb.manifest
        if "intmodel.npz" not in m.get("files", {}):
            raise QdevError(f"{path}: the bundle has no integer model (intmodel.npz) to evaluate")
        size = int(m["io"]["ishape_normal"][1])
        return _BundleSubject(
            f"{m.get('model')}@{m.get('board')}",
            "bundle",
            path,
            MaskRule.from_manifest(m.get("mask_rule")),
            size,
            {
                "signer": vb.signer,
                "version": m.get("version"),
                "run_id": m.get("run_id"),
                "board": m.get("board"),
                "model": m.get("model"),
            },
        )
    if (path / "train").is_dir():
        from qdev.training.mask_rule import run_mask_rule
        from qdev.training.runs import RunFolder

        run = RunFolder.existing(path)
        cfg = run.stage("train")["config"]
        if cfg["model"]["kind"] != "quant":
            raise QdevError(
                f"{path}: a float run has no integer output codes to evaluate as deployed"
            )
        rule, src = run_mask_rule(run)
        return _RunSubject(run.path.name, "run", path, rule, int(cfg["size"]), {"rule_source": src})
    raise QdevError(f"{path}: neither a bundle (manifest.json + .sig) nor a run folder (train/)")


@dataclass(frozen=True)
class ImageRow:
    id: str
    file: str
    patient: str
    cls: str
    dice: float
    truth_px: int
    pred_px: int
    missed: bool
    marked: bool


@dataclass
class SiteEvaluation:
    subject: dict
    site: str
    data_hash: str
    split: str
    figures: dict
    ci: dict
    rows: list[ImageRow]
    unit: str

    def to_dict(self) -> dict:
        return {
            "subject": self.subject,
            "site": self.site,
            "data_hash": self.data_hash,
            "split": self.split,
            "figures": self.figures,
            "ci95": self.ci,
            "resampled_unit": self.unit,
            "missed_means": f"a lesion image with Dice < {MISSED_DICE}",
            "marked_means": "a normal scan with any pixel marked",
        }


def _units(arrays: BusiArrays, idx: np.ndarray) -> tuple[np.ndarray, str]:
    if arrays.patients is not None:
        names = [arrays.patients[i] for i in idx]
        _, inv = np.unique(names, return_inverse=True)
        return inv, "patient"
    group_of = find_duplicates(arrays).group_of
    _, inv = np.unique([group_of[i] for i in idx], return_inverse=True)
    return inv, "duplicate group (the dataset names no patients)"


def _stats(d: np.ndarray, lesion: np.ndarray, normal: np.ndarray, marked: np.ndarray) -> np.ndarray:
    les = d[lesion]
    return np.array(
        [
            les.mean() if len(les) else np.nan,
            d.mean(),
            (les < MISSED_DICE).mean() if len(les) else np.nan,
            marked[normal].mean() if normal.any() else np.nan,
        ]
    )


_STAT_NAMES = ("dice_lesion", "dice_all", "missed_fraction", "normal_marked_fraction")


def unit_resamples(units: np.ndarray, resamples: int, seed: int = 0):  # noqa: ANN201 - an iterator of index arrays
    """Image indices of ``resamples`` bootstrap draws of whole units (patients), with replacement;
    ``units`` are 0..k-1 per image (as ``np.unique(..., return_inverse=True)`` gives them)."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(units == u) for u in range(int(units.max()) + 1)]
    for _ in range(resamples):
        yield np.concatenate([members[u] for u in rng.integers(0, len(members), len(members))])


def bootstrap_ci(
    d: np.ndarray,
    lesion: np.ndarray,
    normal: np.ndarray,
    marked: np.ndarray,
    units: np.ndarray,
    resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """95% percentile intervals of lesion Dice, all-image Dice, missed and marked fractions,
    resampling whole units (patients) with replacement."""
    draws = [
        _stats(d[pick], lesion[pick], normal[pick], marked[pick])
        for pick in unit_resamples(units, resamples, seed)
    ]
    arr = np.array(draws)
    out = {}
    for k, name in enumerate(_STAT_NAMES):
        col = arr[:, k][~np.isnan(arr[:, k])]
        out[name] = (
            [float(np.percentile(col, 2.5)), float(np.percentile(col, 97.5))] if len(col) else None
        )
    return out


def evaluate_subject(
    subject: Subject,
    arrays: BusiArrays,
    idx: np.ndarray,
    site: str,
    split: str,
    resamples: int = 2000,
) -> tuple[SiteEvaluation, np.ndarray]:
    """(the evaluation, predicted masks [N, H, W]) of ``subject`` on the images ``idx`` of
    ``arrays``."""
    if arrays.size != (subject.size, subject.size):
        raise QdevError(
            f"the data was read at {arrays.size}, the model takes {subject.size}x{subject.size}"
        )
    if len(idx) == 0:
        raise QdevError(f"{site}: no images in split {split!r}")
    images, truth, labels = arrays.images[idx], arrays.masks[idx] > 0, arrays.labels[idx]
    masks = subject.rule.apply(subject.codes(images))
    d = per_image_dice(masks, truth)
    lesion = truth.reshape(len(truth), -1).any(1)
    normal = labels == _NORMAL
    marked = masks.reshape(len(masks), -1).any(1)
    units, unit = _units(arrays, idx)
    rows = [
        ImageRow(
            arrays.ids[i],
            arrays.ids[i].split("/", 1)[1],
            arrays.patients[i] if arrays.patients else "",
            CLASSES[int(arrays.labels[i])],
            float(d[k]),
            int(truth[k].sum()),
            int(masks[k].sum()),
            bool(lesion[k] and d[k] < MISSED_DICE),
            bool(normal[k] and marked[k]),
        )
        for k, i in enumerate(idx)
    ]
    figures = rule_figures(masks, truth, labels, d)
    figures["n_images"] = int(len(idx))
    figures["n_patients"] = int(units.max() + 1) if arrays.patients is not None else None
    ci = bootstrap_ci(d, lesion, normal, marked, units, resamples)
    subj = {
        "name": subject.name,
        "kind": subject.kind,
        "path": str(subject.path),
        "mask_rule": subject.rule.describe(),
        **subject.meta,
    }
    return SiteEvaluation(subj, site, arrays.data_hash, split, figures, ci, rows, unit), masks


def _csv(rows: list[ImageRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        ["id", "file", "patient", "class", "dice", "truth_px", "pred_px", "missed", "marked"]
    )
    for r in rows:
        w.writerow(
            [
                r.id,
                r.file,
                r.patient,
                r.cls,
                f"{r.dice:.4f}",
                r.truth_px,
                r.pred_px,
                int(r.missed),
                int(r.marked),
            ]
        )
    return buf.getvalue()


def write_evaluation(
    ev: SiteEvaluation,
    arrays: BusiArrays,
    idx: np.ndarray,
    masks: np.ndarray,
    out: Path,
    worst: int = 12,
) -> dict[str, Path]:
    """Write ``evaluation.json``, ``images.csv``, the worst cases as pictures and
    ``report.html``."""
    from qdev.training.site_report import render_report, worst_cases

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "evaluation.json",
        "csv": out / "images.csv",
        "html": out / "report.html",
        "worst": out / "worst.png",
    }
    atomic_write_text(paths["json"], json.dumps(ev.to_dict(), indent=1) + "\n")
    atomic_write_text(paths["csv"], _csv(ev.rows))
    picks = worst_cases(ev.rows, worst)
    with atomic_writer(paths["worst"]) as fh:
        fh.write(_worst_png(arrays, idx, masks, ev.rows, picks))
    atomic_write_text(paths["html"], render_report(ev, picks, paths["worst"].name))
    return paths


def _worst_png(
    arrays: BusiArrays, idx: np.ndarray, masks: np.ndarray, rows: list[ImageRow], picks: list[int]
) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(picks))
    cols = min(4, n)
    fig, axes = plt.subplots(
        (n + cols - 1) // cols,
        cols,
        figsize=(3.2 * cols, 3.4 * ((n + cols - 1) // cols)),
        squeeze=False,
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, k in zip(axes.flat, picks):
        i = idx[k]
        ax.imshow(arrays.images[i], cmap="gray", vmin=0, vmax=255)
        if arrays.masks[i].any():
            ax.contour(arrays.masks[i], levels=[0.5], colors="lime", linewidths=1.2)
        if masks[k].any():
            ax.contour(masks[k], levels=[0.5], colors="red", linewidths=1.2, linestyles="dashed")
        r = rows[k]
        what = "lesion missed" if r.missed else "scan marked" if r.marked else f"Dice {r.dice:.2f}"
        ax.set_title(f"{r.file}\n{r.cls}, {what}", fontsize=8)
    fig.suptitle("worst cases: truth solid green, model dashed red (model pixels)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


@dataclass(frozen=True)
class EvalConfig:
    """``qdev evaluate TARGET --data ...`` on any dataset.

    Attributes:
        target: a bundle folder (as deployed) or a run folder (as trained).
        data: the dataset (any layout :func:`qdev.training.data.dataset_kind` tells apart).
        options: how to read it (colour map, patient pattern, site name).
        split: ``all`` images, or ``train``/``val``/``test`` of ``split_file``.
        split_file: a split JSON made from this dataset (default for a run: its own split).
        out: folder for evaluation.json, images.csv, worst.png and report.html (None: none written).
        resamples: bootstrap resamples of the intervals.
    """

    target: Path
    data: str | None = None
    options: object = None
    split: str = "all"
    split_file: Path | None = None
    out: Path | None = None
    resamples: int = 2000


def evaluate_dataset(cfg: EvalConfig, trusted: list, progress=None) -> tuple[SiteEvaluation, dict]:  # noqa: ANN001
    """Evaluate ``cfg.target`` on ``cfg.data``; (evaluation, paths written).

    Raises:
        QdevError / DataError: a bad target, dataset, split or output folder (one line each).
    """
    from qdev.training.data import DataOptions, open_dataset, read_split

    if cfg.split not in ("all", "train", "val", "test"):
        raise QdevError(f"--split must be all, train, val or test, not {cfg.split!r}")
    subject = load_subject(Path(cfg.target), trusted)
    options = cfg.options or DataOptions()
    arrays = open_dataset(cfg.data, (subject.size, subject.size), progress, options)
    if cfg.split == "all":
        idx = np.arange(len(arrays))
    else:
        split_file = cfg.split_file
        if split_file is None and subject.kind == "run":
            split_file = Path(cfg.target) / "train" / "split.json"
        if split_file is None:
            raise QdevError(
                f"--split {cfg.split} of a bundle needs --split-file (a split made from this "
                "dataset)"
            )
        idx = read_split(Path(split_file)).indices(arrays, cfg.split)
    site = options.site or Path(str(arrays.root)).name
    ev, masks = evaluate_subject(subject, arrays, idx, site, cfg.split, cfg.resamples)
    paths = write_evaluation(ev, arrays, idx, masks, cfg.out) if cfg.out is not None else {}
    return ev, paths
