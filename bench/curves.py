"""Validation curves of training runs, one line per run, coloured by recipe: what a schedule or
loss change does over the epochs, not just at the chosen checkpoint.

Reads each run's ``train/log.jsonl`` (the validated model's lesion Dice per epoch: the EMA where
the run has one) and marks the chosen checkpoint and the epoch the widths froze. Prints a table
per run (best validation lesion Dice, its epoch, the mean over the frozen epochs).

Usage: .venv/bin/python bench/curves.py RUN [RUN ...] [--out bench/curves.png]
"""

from __future__ import annotations

import argparse
import json
import statistics as st
from pathlib import Path

from pareto import _run_name, recipe_of  # bench/ is on the path of a script run from it


def load(run: Path) -> tuple[str, list[dict]]:
    """(the name the run was trained under, its epoch records)."""
    recs = [json.loads(x) for x in (run / "train" / "log.jsonl").read_text().splitlines()]
    return _run_name(run), recs


def chosen(recs: list[dict]) -> dict | None:
    """The record of the chosen checkpoint so far (None before the widths freeze)."""
    best = [r for r in recs if r.get("best")]
    return best[-1] if best else None


def summary(name: str, recs: list[dict]) -> dict:
    best = chosen(recs) or {
        "epoch": None,
        "val": {"dice_lesion": float("nan"), "dice": float("nan")},
    }
    frozen = [r["val"]["dice_lesion"] for r in recs if r.get("bits_frozen")]
    return {
        "run": name,
        "epochs": len(recs),
        "best_epoch": best["epoch"],
        "best_val_lesion": best["val"]["dice_lesion"],
        "best_val_all": best["val"]["dice"],
        "frozen_mean": st.mean(frozen) if frozen else None,
        "frozen_std": st.stdev(frozen) if len(frozen) > 1 else None,
    }


def plot(runs: list[tuple[str, list[dict]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recipes = sorted({recipe_of(n) for n, _ in runs})
    colours = {r: f"C{i}" for i, r in enumerate(recipes)}
    fig, ax = plt.subplots(figsize=(9, 5))
    for name, recs in runs:
        recipe = recipe_of(name)
        ep = [r["epoch"] for r in recs]
        ax.plot(
            ep,
            [r["val"]["dice_lesion"] for r in recs],
            color=colours[recipe],
            lw=1.2,
            alpha=0.85,
            label=name,
        )
        best = chosen(recs)
        if best is not None:
            ax.plot([best["epoch"]], [best["val"]["dice_lesion"]], "o", color=colours[recipe], ms=6)
        frozen = [r["epoch"] for r in recs if r.get("bits_frozen")]
        if frozen:
            ax.axvline(frozen[0], color=colours[recipe], ls=":", lw=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation lesion Dice (the validated model: EMA where kept)")
    ax.set_ylim(0.4, 0.8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Validation curves (dot: chosen checkpoint; dotted: widths frozen)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("bench/curves.png"))
    a = ap.parse_args()
    runs = [load(r) for r in a.runs]
    print(
        "| run | epochs | best epoch | best val lesion | best val all | frozen epochs: mean ± std |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, recs in runs:
        s = summary(name, recs)
        fz = (
            f"{s['frozen_mean']:.4f} ± {s['frozen_std']:.4f}"
            if s["frozen_std"] is not None
            else "-"
        )
        print(
            f"| {name} | {s['epochs']} | {s['best_epoch']} | {s['best_val_lesion']:.4f} "
            f"| {s['best_val_all']:.4f} | {fz} |"
        )
    plot(runs, a.out)
    print(f"plot: {a.out}")


if __name__ == "__main__":
    main()
