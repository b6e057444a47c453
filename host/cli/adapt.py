"""``qdev adapt BASE --data SITE --out RUN``: fine-tune a network on a new site, offered only
where it beats the base on the site's validation patients (training/adapt.py)."""

from __future__ import annotations

from pathlib import Path

import click

from qdev.host.cli.dataopts import data_options_of, dataset_options
from qdev.host.cli.dcopts import build_config, config_options
from qdev.training.config import AdaptConfig

__all__ = ["adapt_cmd"]


@click.command("adapt")
@click.argument("base", type=click.Path(path_type=Path, exists=True, file_okay=False))
@config_options(AdaptConfig)
@dataset_options
@click.option(
    "--fractions",
    default=",".join(map(str, AdaptConfig.fractions)),
    show_default=True,
    help="adapt,val,test fractions of the site's patients.",
)
def adapt_cmd(
    base: Path,
    mask_colours: str | None,
    patient_pattern: str | None,
    site: str | None,
    fractions: str,
    **values: object,
) -> None:
    """Fine-tune BASE (a QuantU-Net run, e.g. models/quantunet-w8) on a new site's images at the
    same bit widths; search its mask rule on the site's validation patients; offer it only where
    it beats the base there by the guarded margin; compare both on the site's test patients and
    on the base's own test split."""
    from rich.console import Console

    from qdev.host.cli.data import _fractions
    from qdev.host.cli.progress import training_progress
    from qdev.training.adapt import adapt

    cfg = build_config(
        AdaptConfig,
        values,
        base=base,
        fractions=_fractions(fractions),
        options=data_options_of(mask_colours, patient_pattern, site),
    )
    cfg.check()
    out = cfg.out
    with training_progress(Console(), cfg.epochs) as progress:
        d = adapt(cfg, progress=progress)
    b, a = d["base"], d["adapted"]
    click.echo(
        f"site validation ({d['n_patients']} patients, {d['n_images']} images): base "
        f"Dice {b['dice_all']:.3f} "
        f"(lesion {b['dice_lesion']:.3f}, {b['missed']}/{b['n_lesion']} "
        f"missed, {b['normal_marked']}/"
        f"{b['n_normal']} normals marked) -> adapted {a['dice_all']:.3f} "
        f"(lesion {a['dice_lesion']:.3f}, "
        f"{a['missed']}/{a['n_lesion']} missed, {a['normal_marked']}/{a['n_normal']} normals "
        "marked)"
    )
    click.echo(
        f"{d['rule']} ({d['criterion']} Dice gain {d['gain']:+.4f}, P(gain > 0) {d['p_gain']:.3f}, "
        f"needed {d['level']:.3f})"
    )
    click.echo(f"report: {out / 'adapt' / 'report.html'}")
