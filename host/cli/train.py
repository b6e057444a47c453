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
    from qdev.host.train_tables import print_run_metrics
    from qdev.training.evaluate import evaluate_run

    out = evaluate_run(run, data, split_name or "test", checkpoint)
    if as_json:
        click.echo(json.dumps(out, indent=1))
        return
    print_run_metrics(out)


def _evaluate_dataset(
    target: Path,
    data: str | None,
    split: str,
    split_file: Path | None,
    out: Path | None,
    options,
    as_json: bool,
) -> None:  # noqa: ANN001
    from qdev.host.cli.progress import progress_bar
    from qdev.host.local import default_trusted
    from qdev.host.train_tables import print_site_evaluation
    from qdev.training.site_eval import EvalConfig, evaluate_dataset

    with progress_bar("reading the dataset", disable=as_json) as cb:
        ev, paths = evaluate_dataset(
            EvalConfig(target, data, options, split, split_file, out), default_trusted(), cb
        )
    if as_json:
        written = {k: str(v) for k, v in paths.items()}
        click.echo(json.dumps({**ev.to_dict(), "written": written}, indent=1))
        return
    print_site_evaluation(ev, paths, split)


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
    from qdev.host.train_tables import print_rule_search
    from qdev.training.postprocess import RuleSearch, choose_rule

    doc = choose_rule(run, data, RuleSearch(criterion=criterion))
    if as_json:
        click.echo(json.dumps(doc, indent=1))
        return
    print_rule_search(doc, run)
