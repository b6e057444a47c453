"""`qdev data ...`: inspect BUSI (or the phantom), write splits, write a phantom dataset."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from qdev.host.cli.dataopts import data_options_of, dataset_options
from qdev.host.cli.progress import progress_bar

__all__ = ["data"]


def _size(value: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in value.lower().split("x")]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not N or HxW") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 8 or max(parts) > 2048:
        raise click.BadParameter(f"{value!r}: size must be N or HxW with 8 <= N <= 2048")
    return parts[0], parts[1]


@click.group()
def data() -> None:
    """The BUSI dataset: inspect, split, pack, phantom."""


@data.command("inspect")
@click.option(
    "--data",
    "data_path",
    type=str,
    default=None,
    help="BUSI location, a folder or a pack (else $QDEV_BUSI, else ../shared/data/busi, else the "
    "phantom).",
)
@click.option("--size", default="128", show_default=True, help="Preprocessed size N or HxW.")
@click.option("--seed", default=0, show_default=True, help="Split seed.")
@click.option(
    "--threshold", default=0.92, show_default=True, help="Near-duplicate correlation threshold."
)
@click.option("--no-cache", is_flag=True, help="Decode everything again, ignore the cache.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@dataset_options
def inspect_cmd(
    data_path: str | None,
    size: str,
    seed: int,
    threshold: float,
    no_cache: bool,
    as_json: bool,
    mask_colours: str | None,
    patient_pattern: str | None,
    site: str | None,
) -> None:
    """Counts per class, image sizes, duplicate groups (or patients) and split sizes."""
    from qdev.host.dataset_info import InspectConfig, inspect_dataset

    cfg = InspectConfig(
        data_path,
        _size(size),
        seed,
        threshold,
        not no_cache,
        data_options_of(mask_colours, patient_pattern, site),
    )
    with progress_bar("decoding images", disable=as_json) as cb:
        report = inspect_dataset(cfg, progress=cb)
    if as_json:
        click.echo(json.dumps(report, indent=1))
        return
    _print_report(report)


def _print_report(r: dict) -> None:
    con = Console()
    if r["source"] == "phantom":
        con.print(
            "[yellow]BUSI not found (no --data, QDEV_BUSI or ../shared/data/busi): "
            "inspecting the synthetic phantom dataset instead.[/]"
        )
    con.print(
        f"[bold]{r['root']}[/]  data hash {r['data_hash'][:16]}  preprocessed "
        f"to {r['size'][0]}x{r['size'][1]}"
    )
    t = Table(title="Images per class")
    for col in ("class", "images", "mask files", ">1 mask", "with lesion", "width px", "height px"):
        t.add_column(col, justify="right" if col != "class" else "left")
    for c, v in r["classes"].items():
        t.add_row(
            c,
            str(v["images"]),
            str(v["mask_files"]),
            str(v["multi_mask_images"]),
            str(v["lesion_images"]),
            "{}–{}".format(*v["width_px"]),
            "{}–{}".format(*v["height_px"]),
        )
    t.add_row(
        "[bold]total",
        f"[bold]{r['images']}",
        f"[bold]{r['mask_files']}",
        f"[bold]{r['multi_mask_images']}",
        "",
        "{}–{}".format(*r["width_px"]),
        "{}–{}".format(*r["height_px"]),
    )
    con.print(t)
    if r.get("patients"):
        con.print(
            f"Patients: [bold]{r['patients']}[/] (splits keep each patient's images together)"
        )
    d = r["duplicates"]
    con.print(
        f"Duplicates ({d['method']}, threshold {d['threshold']}): [bold]{d['groups']}[/] groups, "
        f"{d['images_in_groups']} images in groups (largest {d['largest_group']}), "
        f"{d['exact_duplicate_pairs']} exact pair(s), [bold]{d['groups_spanning_classes']}[/] "
        "groups span classes"
    )
    for g in d["spanning"]:
        con.print("  spans classes: " + ", ".join(g))
    t = Table(title="Splits (70/15/15)")
    for col in ("split kind", "split", *r["classes"].keys(), "total", "dup groups crossing"):
        t.add_column(col, justify="left" if col in ("split kind", "split") else "right")
    for kind, v in r["splits"].items():
        for name, sizes in v["sizes"].items():
            t.add_row(
                kind,
                name,
                *(str(sizes[c]) for c in r["classes"]),
                str(sizes["total"]),
                str(v["groups_crossing_splits"]) if name == "train" else "",
            )
    con.print(t)


@data.command("split")
@click.option(
    "--data", "data_path", type=str, default=None, help="BUSI location (a folder or a pack)."
)
@click.option(
    "--kind", type=click.Choice(["grouped", "paper"]), default="grouped", show_default=True
)
@click.option("--seed", default=0, show_default=True)
@click.option("--threshold", default=0.92, show_default=True, help="Near-duplicate threshold.")
@click.option(
    "--fractions", default="0.70,0.15,0.15", show_default=True, help="train,val,test fractions."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Split JSON to write.",
)
@dataset_options
def split_cmd(
    data_path: str | None,
    kind: str,
    seed: int,
    threshold: float,
    fractions: str,
    out: Path,
    mask_colours: str | None,
    patient_pattern: str | None,
    site: str | None,
) -> None:
    """Write a train/val/test split JSON (grouped = leak-free: by patient where known)."""
    from qdev.training.data import DedupConfig, find_duplicates, make_split, open_busi, write_split

    fr = _fractions(fractions)
    with progress_bar("decoding images") as cb:
        arrays = open_busi(
            data_path,
            (128, 128),
            progress=cb,
            options=data_options_of(mask_colours, patient_pattern, site),
        )
    split = make_split(arrays, find_duplicates(arrays, DedupConfig(threshold)), kind, seed, fr)
    write_split(split, out)
    sizes = split.sizes()
    click.echo(
        f"wrote {out}: "
        + ", ".join(f"{n} {sizes[n]['total']}" for n in sizes)
        + f"; {len(split.crossing_groups())} duplicate groups cross splits; unit: {split.unit}"
    )


def _fractions(text: str) -> tuple[float, float, float]:
    from qdev.core.errors import ConfigError

    try:
        parts = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(
            f"--fractions {text!r}: expected three numbers like 0.7,0.15,0.15"
        ) from None
    if len(parts) != 3:
        raise ConfigError(f"--fractions {text!r}: expected three numbers like 0.7,0.15,0.15")
    return parts  # type: ignore[return-value]


@data.command("pack")
@click.option(
    "--data",
    "data_path",
    type=str,
    default=None,
    help="BUSI location (else $QDEV_BUSI, else ../shared/data/busi).",
)
@click.option("--size", default="128", show_default=True, help="Preprocessed size N or HxW.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Pack file to write (.npz).",
)
@dataset_options
def pack_cmd(
    data_path: str | None,
    size: str,
    out: Path,
    mask_colours: str | None,
    patient_pattern: str | None,
    site: str | None,
) -> None:
    """Write the preprocessed dataset as one file, to train where the images are not (``--data
    PACK``)."""
    from qdev.core.errors import DataError
    from qdev.training.data import dataset_kind, open_dataset, write_pack

    if dataset_kind(data_path) == "pack":
        raise DataError(f"{data_path}: already a pack")
    with progress_bar("decoding images") as cb:
        arrays = open_dataset(
            data_path,
            _size(size),
            progress=cb,
            options=data_options_of(mask_colours, patient_pattern, site),
        )
    write_pack(arrays, out)
    click.echo(
        f"wrote {out}: {len(arrays)} images at {arrays.size[0]}x{arrays.size[1]}, "
        f"{out.stat().st_size / 1e6:.1f} MB, data hash {arrays.data_hash[:16]}"
    )


@data.command("phantom")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option(
    "--per-class", default="24,12,8", show_default=True, help="benign,malignant,normal counts."
)
@click.option("--seed", default=0, show_default=True)
def phantom_cmd(out: Path, per_class: str, seed: int) -> None:
    """Write a BUSI-layout dataset of synthetic phantom images with exact masks."""
    from qdev.core.errors import ConfigError
    from qdev.training.data.synth import write_phantom_busi

    try:
        counts = tuple(int(v) for v in per_class.split(","))
    except ValueError:
        raise ConfigError(
            f"--per-class {per_class!r}: expected three integers like 24,12,8"
        ) from None
    if len(counts) != 3 or min(counts) < 1:
        raise ConfigError(f"--per-class {per_class!r}: expected three positive integers")
    write_phantom_busi(out, counts, seed=seed)
    click.echo(f"wrote phantom dataset to {out}")
