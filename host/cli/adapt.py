"""``qdev adapt BASE --data SITE --out RUN``: fine-tune a network on a new site, offered only
where it beats the base on the site's validation patients (training/adapt.py)."""

from __future__ import annotations

from pathlib import Path

import click

from qdev.host.cli.dataopts import data_options_of, dataset_options

__all__ = ["adapt_cmd"]


@click.command("adapt")
@click.argument("base", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--data", required=True, help="The site's labelled images: images/ + masks/ folder, datalist or pack.")
@dataset_options
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="New run folder.")
@click.option("--fractions", default="0.6,0.2,0.2", show_default=True, help="adapt,val,test fractions of the site's patients.")
@click.option("--images", type=int, default=None, help="Keep this many adapt images (default: all).")
@click.option("--epochs", default=20, show_default=True)
@click.option("--lr", default=3e-4, show_default=True)
@click.option("--augment", type=click.Choice(["full", "flips", "strong", "scanner", "none"]), default="scanner",
              show_default=True)
@click.option("--replay", default=0.5, show_default=True,
              help="Base training images drawn per site image each epoch, against forgetting (0: none).")
@click.option("--replay-data", default=None, help="Where the base's training data is (default: its own record).")
@click.option("--candidates", default=1, show_default=True,
              help="Adapted candidates you compare (the margin is corrected for them).")
@click.option("--criterion", type=click.Choice(["balanced", "all"]), default="balanced", show_default=True,
              help="Score masks (rule search and decision): lesion images and normal scans half each, or all images alike.")
@click.option("--seed", default=0, show_default=True)
@click.option("--threads", type=int, default=None)
def adapt_cmd(base: Path, data: str, mask_colours: str | None, patient_pattern: str | None, site: str | None, out: Path,
              fractions: str, images: int | None, epochs: int, lr: float, augment: str, replay: float,
              replay_data: str | None, candidates: int, criterion: str, seed: int, threads: int | None) -> None:
    """Fine-tune BASE (a QuantU-Net run, e.g. models/quantunet-w8) on a new site's images at the
    same bit widths; search its mask rule on the site's validation patients; offer it only where
    it beats the base there by the guarded margin; compare both on the site's test patients and
    on the base's own test split."""
    from rich.console import Console

    from qdev.host.cli.data import _fractions
    from qdev.host.cli.progress import training_progress
    from qdev.training.adapt import AdaptConfig, adapt

    cfg = AdaptConfig(base=base, data=data, out=out, options=data_options_of(mask_colours, patient_pattern, site),
                      fractions=_fractions(fractions), images=images, epochs=epochs, lr=lr, augment=augment,
                      replay=replay, replay_data=replay_data, seed=seed, threads=threads, candidates=candidates, criterion=criterion)
    cfg.check()
    with training_progress(Console(), epochs) as progress:
        d = adapt(cfg, progress=progress)
    b, a = d["base"], d["adapted"]
    click.echo(f"site validation ({d['n_patients']} patients, {d['n_images']} images): base Dice {b['dice_all']:.3f} "
               f"(lesion {b['dice_lesion']:.3f}, {b['missed']}/{b['n_lesion']} missed, {b['normal_marked']}/"
               f"{b['n_normal']} normals marked) -> adapted {a['dice_all']:.3f} (lesion {a['dice_lesion']:.3f}, "
               f"{a['missed']}/{a['n_lesion']} missed, {a['normal_marked']}/{a['n_normal']} normals marked)")
    click.echo(f"{d['rule']} ({d['criterion']} Dice gain {d['gain']:+.4f}, P(gain > 0) {d['p_gain']:.3f}, needed {d['level']:.3f})")
    click.echo(f"report: {out / 'adapt' / 'report.html'}")
