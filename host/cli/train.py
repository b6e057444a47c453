"""`qdev train` and `qdev evaluate`: thin wrappers over training.trainer / training.evaluate."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click

from qdev.host.cli.dataopts import data_options_of, dataset_options
from qdev.host.cli.dcopts import build_config, config_options
from qdev.training.config import ModelConfig, TrainConfig

from qdev.core.errors import ConfigError
from qdev.core.maskrule import MaskRule

__all__ = ["train_cmd", "evaluate_cmd", "postprocess_cmd"]


def _bits(value: str) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in value.split(".."))
    except ValueError:
        raise ConfigError(f"--bits {value!r}: expected MIN..MAX, e.g. 2..8") from None
    return lo, hi


@click.command("train")
@config_options(TrainConfig)
@click.option(
    "--bits",
    default=f"{ModelConfig().min_bits}..{ModelConfig().max_bits}",
    show_default=True,
    help="Trainable bit-width range MIN..MAX.",
)
@click.option("--no-augment", is_flag=True, help="Same as --augment none.")
@click.option(
    "--resume", is_flag=True, help="Continue a killed or finished run (may raise --epochs)."
)
def train_cmd(bits: str, no_augment: bool, resume: bool, **values: object) -> None:
    """Train the float U-Net or QuantU-Net (trainable per-layer bit widths).

    Every option but --bits, --no-augment and --resume is a field of TrainConfig / ModelConfig
    (training/config.py), generated from it."""
    from rich.console import Console

    from qdev.host.cli.progress import training_progress
    from qdev.training.trainer import train

    lo, hi = _bits(bits)
    cfg = build_config(TrainConfig, values, min_bits=lo, max_bits=hi)
    if no_augment:
        cfg = replace(cfg, augment="none")
    cfg.check()  # a bad option: its one-line error, before any progress display
    with training_progress(Console(), cfg.epochs) as progress:
        rec = train(cfg, resume=resume, progress=progress)
    click.echo(f"done: {cfg.out} (best checkpoint train/best.pt; last epoch {rec.get('epoch')})")


@click.command("evaluate")
@click.argument("run", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--data",
    default=None,
    help="Dataset: BUSI (default), an images/ + masks/ folder, a datalist (.csv/.json) or a pack.",
)
@click.option(
    "--split",
    "split_name",
    default=None,
    type=click.Choice(["all", "test", "val", "train"]),
    help="Images to score [default: test for a run on its own data; all on another dataset].",
)
@click.option(
    "--split-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="Split JSON made from --data (for --split test/val/train of a bundle or another dataset).",
)
@click.option(
    "--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Write evaluation.json, images.csv, worst.png and report.html here.",
)
@dataset_options
@click.option("--json", "as_json", is_flag=True)
def evaluate_cmd(
    run: Path,
    data: str | None,
    split_name: str | None,
    split_file: Path | None,
    checkpoint: str,
    out: Path | None,
    mask_colours: str | None,
    patient_pattern: str | None,
    site: str | None,
    as_json: bool,
) -> None:
    """Score a run (as trained) or a signed bundle (as deployed: its integer model and mask rule)
    on a dataset: per-image table, lesion/all-image Dice, missed lesions, normal scans marked, with
    patient-level 95% intervals. A run on its own BUSI data without other options keeps the
    classic report (metrics.json in the run)."""
    from qdev.training.data import dataset_kind

    options = data_options_of(mask_colours, patient_pattern, site)
    is_run = (run / "train").is_dir() and not (run / "manifest.json.sig").is_file()
    classic = (
        is_run
        and out is None
        and split_file is None
        and split_name != "all"
        and options.is_default()
        and site is None
        and dataset_kind(data) in ("busi", "pack")
    )
    if not classic:
        _evaluate_dataset(
            run,
            data,
            split_name or ("test" if split_file else "all"),
            split_file,
            out,
            options,
            as_json,
        )
        return
    split_name = split_name or "test"
    from rich.console import Console
    from rich.table import Table

    from qdev.training.evaluate import evaluate_run

    out = evaluate_run(run, data, split_name, checkpoint)
    if as_json:
        click.echo(json.dumps(out, indent=1))
        return
    m = out["metrics"]
    t = Table(
        title=f"{out['run']}: {split_name} split, {checkpoint} checkpoint "
        f"(epoch {out['checkpoint_epoch']})"
    )
    for c in ("images", "n", "Dice", "IoU", "pixel acc"):
        t.add_column(c, justify="right" if c != "images" else "left")
    t.add_row(
        "all", str(m["n_images"]), f"{m['dice']:.4f}", f"{m['iou']:.4f}", f"{m['pixel_acc']:.4f}"
    )
    t.add_row(
        "lesion images",
        str(m["n_lesion_images"]),
        f"{m['dice_lesion']:.4f}",
        f"{m['iou_lesion']:.4f}",
        "",
    )
    for c, v in m["per_class"].items():
        t.add_row(c, str(v["n"]), f"{v['dice']:.4f}", f"{v['iou']:.4f}", f"{v['pixel_acc']:.4f}")
    Console().print(t)
    rule = out.get("mask_rule") or {}
    if rule:
        line = f"masks: {rule['describe']} ({rule['source']})"
        w = out.get("metrics_without_rule")
        if w:
            line += (
                f"; without the rule (logit > 0): Dice {w['dice']:.4f}, "
                f"lesion images {w['dice_lesion']:.4f}"
            )
        click.echo(line)
    if out.get("bits"):
        b = out["bits"]
        click.echo(
            f"bits: mean {b['avg_bits']:.2f}, weights {b['avg_weight_bits']:.2f}, "
            f"acts {b['avg_act_bits']:.2f}, "
            f"size-weighted {b['size_weighted_bits']:.2f}; model {b['model_bits']} bits, "
            f"{out['compression_vs_float']:.1f}x smaller than float32"
        )


def _evaluate_dataset(
    target: Path,
    data: str | None,
    split: str,
    split_file: Path | None,
    out: Path | None,
    options,
    as_json: bool,
) -> None:  # noqa: ANN001
    from rich.console import Console
    from rich.table import Table

    from qdev.host.cli.progress import progress_bar
    from qdev.host.local import default_trusted
    from qdev.training.site_eval import EvalConfig, evaluate_dataset

    with progress_bar("reading the dataset", disable=as_json) as cb:
        ev, paths = evaluate_dataset(
            EvalConfig(target, data, options, split, split_file, out), default_trusted(), cb
        )
    if as_json:
        click.echo(
            json.dumps({**ev.to_dict(), "written": {k: str(v) for k, v in paths.items()}}, indent=1)
        )
        return
    f, ci = ev.figures, ev.ci

    def iv(name: str, pct: bool = False) -> str:
        v = ci.get(name)
        return (
            "-"
            if not v
            else (f"{100 * v[0]:.0f}-{100 * v[1]:.0f}%" if pct else f"{v[0]:.3f}-{v[1]:.3f}")
        )

    how = "as deployed" if ev.subject["kind"] == "bundle" else "as trained"
    t = Table(
        title=f"{ev.subject['name']} ({how}) on {ev.site}, {split}: {f['n_images']} images"
        + (f", {f['n_patients']} patients" if f.get("n_patients") else "")
    )
    for c in ("figure", "value", "95% interval"):
        t.add_column(c, justify="left" if c == "figure" else "right")
    t.add_row(
        "lesion Dice",
        "-" if f["dice_lesion"] is None else f"{f['dice_lesion']:.3f}",
        iv("dice_lesion"),
    )
    t.add_row("all-image Dice", f"{f['dice_all']:.3f}", iv("dice_all"))
    t.add_row("missed lesions", f"{f['missed']} of {f['n_lesion']}", iv("missed_fraction", True))
    t.add_row(
        "normal scans marked",
        f"{f['normal_marked']} of {f['n_normal']}",
        iv("normal_marked_fraction", True),
    )
    Console().print(t)
    click.echo(
        f"masks: {ev.subject['mask_rule']}; intervals resample {ev.unit}s; data "
        f"hash {ev.data_hash[:16]}"
    )
    if paths:
        click.echo(f"report: {paths['html']}")


@click.command("postprocess")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--data", default=None, help="Another BUSI copy (default: the run's).")
@click.option(
    "--criterion",
    type=click.Choice(["all", "balanced"]),
    default="all",
    show_default=True,
    help="Score rules by Dice over all images, or balanced (lesion images and normal scans half "
    "each).",
)
@click.option("--json", "as_json", is_flag=True)
def postprocess_cmd(run: Path, data: str | None, criterion: str, as_json: bool) -> None:
    """Choose the run's mask rule (threshold, minimum mask area, peak) on its validation split.

    A step away from the network's own masks (to a threshold/area rule, then to a peak) is taken
    only where a paired bootstrap over the validation images finds its gain above 0 in 95% of
    the resamples.

    The rule is signed into the run's bundles and applied by the device after the accelerator;
    `qdev evaluate` applies it too. The test split is not read.
    """
    from rich.console import Console
    from rich.table import Table

    from qdev.training.postprocess import choose_rule

    from qdev.training.postprocess import RuleSearch

    doc = choose_rule(run, data, RuleSearch(criterion=criterion))
    if as_json:
        click.echo(json.dumps(doc, indent=1))
        return
    # fits 80 columns with the rule on one line: the logits and the gains are in the lines below
    t = Table(title=f"{doc['run']}: mask rules on the validation split ({doc['n_images']} images)")
    t.add_column("rule", no_wrap=True)
    for c in ("search", "Dice all", "Dice lesion", "normals marked", "missed"):
        t.add_column(c, justify="right")

    def row(name: str, what: str, f: dict, style: str | None = None) -> None:
        t.add_row(
            name,
            what,
            f"{f['dice_all']:.4f}",
            f"{f['dice_lesion']:.4f}",
            f"{f['normal_marked']}/{f['n_normal']}",
            f"{f['missed']}/{f['n_lesion']}",
            style=style,
        )

    by_rule = {json.dumps(g["rule"], sort_keys=True): g for g in doc["grid"]}
    row("code > 0", "network", doc["default"])
    for st in doc.get(
        "steps", []
    ):  # each step's best candidate, whether the margin let it in or not
        g = by_rule.get(json.dumps(st["candidate"], sort_keys=True))
        if g is not None:
            row(_rule_name(st["candidate"]), "taken" if st["taken"] else "refused", g)
    row(_rule_name(doc["rule"]), "chosen", doc["chosen"], style="bold")
    Console().print(t)
    for st in doc.get("steps", []):
        crit = "balanced Dice" if doc.get("criterion") == "balanced" else "all-image Dice"
        click.echo(
            f"step to the best {st['stage']} rule, {st['describe']}: {crit} {st['gain']:+.4f}, "
            f"bootstrap P(gain > 0) {st['p_gain']:.3f}: {'taken' if st['taken'] else 'not taken'}"
        )
    click.echo(
        f"chosen: {doc['describe']} (by {doc['chosen_by']}; missed: lesion images with Dice < "
        "0.1); "
        f"written to {Path(run) / 'postprocess' / 'rule.json'}. Re-run qdev evaluate and qdev "
        "bundle "
        "create to apply it."
    )


def _rule_name(rule: dict) -> str:
    r = MaskRule.from_manifest(rule)
    return (
        f"code > {r.min_code}"
        + (f", area >= {r.min_area}" if r.min_area > 1 else "")
        + (f", peak > {r.min_peak}" if r.min_peak is not None else "")
    )
