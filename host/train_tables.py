"""What ``qdev evaluate`` and ``qdev postprocess`` print: rich tables and one-line summaries.

Each function takes the result the training library returned (its ``--json`` form, or the site
evaluation object) and prints it; nothing here computes a figure.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from qdev.core.maskrule import MaskRule

__all__ = ["print_run_metrics", "print_site_evaluation", "print_rule_search", "rule_name"]


def _metrics_table(out: dict) -> Table:
    m = out["metrics"]
    t = Table(
        title=f"{out['run']}: {out['split']} split, {out['checkpoint']} checkpoint "
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
    return t


def print_run_metrics(out: dict, con: Console | None = None) -> None:
    """A run's metrics on one split (``evaluate_run``'s result), its mask rule and bit widths."""
    con = con or Console()
    con.print(_metrics_table(out))
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


def _interval(ci: dict, name: str, pct: bool = False) -> str:
    v = ci.get(name)
    if not v:
        return "-"
    return f"{100 * v[0]:.0f}-{100 * v[1]:.0f}%" if pct else f"{v[0]:.3f}-{v[1]:.3f}"


def print_site_evaluation(ev, paths: dict, split: str, con: Console | None = None) -> None:  # noqa: ANN001
    """A run or bundle scored on a dataset (``evaluate_dataset``'s result) with 95% intervals."""
    con = con or Console()
    f, ci = ev.figures, ev.ci
    how = "as deployed" if ev.subject["kind"] == "bundle" else "as trained"
    t = Table(
        title=f"{ev.subject['name']} ({how}) on {ev.site}, {split}: {f['n_images']} images"
        + (f", {f['n_patients']} patients" if f.get("n_patients") else "")
    )
    for c in ("figure", "value", "95% interval"):
        t.add_column(c, justify="left" if c == "figure" else "right")
    lesion = "-" if f["dice_lesion"] is None else f"{f['dice_lesion']:.3f}"
    t.add_row("lesion Dice", lesion, _interval(ci, "dice_lesion"))
    t.add_row("all-image Dice", f"{f['dice_all']:.3f}", _interval(ci, "dice_all"))
    t.add_row(
        "missed lesions",
        f"{f['missed']} of {f['n_lesion']}",
        _interval(ci, "missed_fraction", True),
    )
    t.add_row(
        "normal scans marked",
        f"{f['normal_marked']} of {f['n_normal']}",
        _interval(ci, "normal_marked_fraction", True),
    )
    con.print(t)
    click.echo(
        f"masks: {ev.subject['mask_rule']}; intervals resample {ev.unit}s; data "
        f"hash {ev.data_hash[:16]}"
    )
    if paths:
        click.echo(f"report: {paths['html']}")


def rule_name(rule: dict) -> str:
    """A mask rule in a few words: ``code > 3, area >= 40, peak > 9``."""
    r = MaskRule.from_manifest(rule)
    return (
        f"code > {r.min_code}"
        + (f", area >= {r.min_area}" if r.min_area > 1 else "")
        + (f", peak > {r.min_peak}" if r.min_peak is not None else "")
    )


def _rule_table(doc: dict) -> Table:
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
    for st in doc.get("steps", []):  # each step's best candidate, whether it was let in or not
        g = by_rule.get(json.dumps(st["candidate"], sort_keys=True))
        if g is not None:
            row(rule_name(st["candidate"]), "taken" if st["taken"] else "refused", g)
    row(rule_name(doc["rule"]), "chosen", doc["chosen"], style="bold")
    return t


def print_rule_search(doc: dict, run: Path, con: Console | None = None) -> None:
    """The mask-rule search (``choose_rule``'s result): candidates, steps taken, the choice."""
    con = con or Console()
    con.print(_rule_table(doc))
    crit = "balanced Dice" if doc.get("criterion") == "balanced" else "all-image Dice"
    for st in doc.get("steps", []):
        click.echo(
            f"step to the best {st['stage']} rule, {st['describe']}: {crit} {st['gain']:+.4f}, "
            f"bootstrap P(gain > 0) {st['p_gain']:.3f}: {'taken' if st['taken'] else 'not taken'}"
        )
    click.echo(
        f"chosen: {doc['describe']} (by {doc['chosen_by']}; missed: lesion images with Dice < "
        f"0.1); written to {Path(run) / 'postprocess' / 'rule.json'}. Re-run qdev evaluate and "
        "qdev bundle create to apply it."
    )
