"""The paper's claim put to the test: learned per-layer bit widths against uniform fixed widths
(W2A2, W3A3, W4A4), lesion Dice against model bits. Reads every evaluated QuantU-Net run folder
under ``runs/`` (``evaluate/metrics.json``), groups seeds of one recipe (the run name without its
``-sN``), and prints a markdown table (validation Dice of the chosen checkpoint, test Dice,
average and model bits) and writes the Pareto plot.

Usage: .venv/bin/python bench/pareto.py [--runs runs models] [--out bench/pareto.png]
       .venv/bin/python bench/pareto.py --record RUN [RUN ...] --note "how they were made"
         (keeps those runs' points in bench/pareto_recorded.json, for when runs/ is gone)
Runs come from ``bench/train_busi.sh`` (``uniform B SEED...`` for the fixed widths; ``recipes``
and ``long`` for learned widths).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics as st
import time
from pathlib import Path


def _best_val(run: Path) -> float:
    recs = [json.loads(x) for x in (run / "train" / "log.jsonl").read_text().splitlines()]
    return [r for r in recs if r.get("best")][-1]["val"]["dice_lesion"]


_SEED = re.compile(r"-s\d+$")


def recipe_of(run_name: str) -> str:
    """A run's recipe: its name without the trailing seed (``...-s2``)."""
    return _SEED.sub("", run_name)


def has_seed(run_name: str) -> bool:
    return bool(_SEED.search(run_name))


def _run_name(run: Path) -> str:
    """The name the run was trained under (its manifest's; a shipped copy keeps it), else its
    folder's."""
    try:
        return json.loads((run / "manifest.json").read_text())["name"]
    except (OSError, ValueError, KeyError):
        return run.name


def collect(roots: list[Path]) -> dict[str, list[dict]]:
    """recipe -> one record per seed (quant runs only), from every run folder under ``roots``."""
    out: dict[str, list[dict]] = {}
    seen: set[str] = set()
    for m in sorted(p for root in roots for p in root.glob("*/evaluate/metrics.json")):
        run = m.parents[1]
        doc = json.loads(m.read_text())
        name = _run_name(run)
        if doc["model"]["kind"] != "quant" or not doc.get("bits") or name in seen:
            continue
        seen.add(name)
        b = doc["bits"]
        uniform = doc["model"]["min_bits"] == doc["model"]["max_bits"]
        out.setdefault(recipe_of(name), []).append(
            {
                "run": name,
                "kind": f"uniform W{doc['model']['min_bits']}A{doc['model']['min_bits']}"
                if uniform
                else "learned",
                "val": _best_val(run),
                # the network's own masks (logit > 0): a run's mask rule is not part of the width
                # recipe
                "test": (doc.get("metrics_without_rule") or doc["metrics"])["dice_lesion"],
                "avg_bits": b["avg_bits"],
                "model_bits": b["model_bits"],
                "compression": doc.get("compression_vs_float"),
            }
        )
    return out


def _ms(v: list[float]) -> str:
    return f"{v[0]:.4f}" if len(v) == 1 else f"{st.mean(v):.4f} ± {st.stdev(v):.4f}"


def _rec(p: dict, split: str) -> str:
    sd = p[f"{split}_std"]
    return f"{p[f'{split}_mean']:.4f}" + ("" if sd is None else f" ± {sd:.4f}")


def record(runs: list[Path], path: Path, note: str) -> None:
    """Keep one point per run (one seed each) in the recorded file, replacing a point of the same
    run."""
    doc = json.loads(path.read_text()) if path.is_file() else {"note": "", "points": []}
    found = {
        r["run"]: r for rs in collect(sorted({run.parent for run in runs})).values() for r in rs
    }
    for run in runs:
        name = _run_name(run)
        rec = found.get(name)
        if rec is None:
            raise SystemExit(f"{run}: not an evaluated QuantU-Net run")
        doc["points"] = [p for p in doc["points"] if p["recipe"].split(" ")[0] != name]
        doc["points"].append(
            {
                "recipe": f"{name} ({time.strftime('%Y-%m-%d')})",
                "kind": rec["kind"],
                "seeds": 1,
                "avg_bits": round(rec["avg_bits"], 2),
                "model_bits": rec["model_bits"],
                "val_mean": round(rec["val"], 4),
                "val_std": None,
                "test_mean": round(rec["test"], 4),
                "test_std": None,
            }
        )
    doc["note"] = (doc["note"] + " " + note).strip()
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"recorded {len(runs)} run(s) in {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--runs",
        type=Path,
        nargs="+",
        default=[Path("runs"), Path("models")],
        help="folders of run folders (default: runs and models, where the shipped run is kept)",
    )
    ap.add_argument("--out", type=Path, default=Path("bench/pareto.png"))
    ap.add_argument(
        "--recorded",
        type=Path,
        default=Path("bench/pareto_recorded.json"),
        help="points recorded by earlier sessions whose run folders are gone (marked as such)",
    )
    ap.add_argument(
        "--record", type=Path, nargs="+", help="run folders to keep in the recorded file, then stop"
    )
    ap.add_argument(
        "--note",
        default="",
        help="with --record: how those runs were made (appended to the file's note)",
    )
    a = ap.parse_args()
    if a.record:
        record(a.record, a.recorded, a.note)
        return
    groups = collect(a.runs)
    recorded = json.loads(a.recorded.read_text())["points"] if a.recorded.is_file() else []
    have = {
        r["run"] for rs in groups.values() for r in rs
    }  # a recorded run whose folder is here: read it
    recorded = [p for p in recorded if p["recipe"].split(" ")[0] not in have]
    for p in [p for p in recorded if p["seeds"] == 1 and has_seed(p["recipe"].split(" ")[0])]:
        run = p["recipe"].split(" ")[
            0
        ]  # one recorded seed of a recipe: counted with its other seeds
        groups.setdefault(recipe_of(run), []).append(
            {
                "run": run + " *",
                "kind": p["kind"],
                "val": p["val_mean"],
                "test": p["test_mean"],
                "avg_bits": p["avg_bits"],
                "model_bits": p["model_bits"],
                "compression": None,
            }
        )
        recorded.remove(p)
    if not groups and not recorded:
        raise SystemExit(f"no evaluated QuantU-Net runs under {', '.join(map(str, a.runs))}")
    print(
        "| recipe | widths | seeds | avg bits | model bits | val Dice (lesion) | test Dice "
        "(lesion) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    rows = [
        (
            name,
            rs[0]["kind"],
            len(rs),
            st.mean(r["avg_bits"] for r in rs),
            st.mean(r["model_bits"] for r in rs),
            _ms([r["val"] for r in rs]),
            _ms([r["test"] for r in rs]),
        )
        for name, rs in groups.items()
    ]
    rows += [
        (
            p["recipe"] + " *",
            p["kind"],
            p["seeds"],
            p["avg_bits"],
            p["model_bits"],
            _rec(p, "val"),
            _rec(p, "test"),
        )
        for p in recorded
    ]
    for name, kind, n, ab, mb, v, t in sorted(rows, key=lambda r: r[4]):
        print(f"| {name} | {kind} | {n} | {ab:.2f} | {mb:,.0f} | {v} | {t} |")
    for name, rs in groups.items():
        if len(rs) > 1:
            print(
                f"\n{name}: "
                + ", ".join(f"{r['run']} val {r['val']:.4f} test {r['test']:.4f}" for r in rs)
            )
    if recorded or any(r["run"].endswith(" *") for rs in groups.values() for r in rs):
        print("\n\\* recorded by an earlier session (bench/pareto_recorded.json says how)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 5.6), sharey=True)
    for ax, split in zip(axes, ("val", "test")):
        for k, (name, rs) in enumerate(sorted(groups.items())):
            learned = rs[0]["kind"] == "learned"
            x = [r["model_bits"] / 1e6 for r in rs]
            y = [r[split] for r in rs]
            ax.scatter(
                x,
                y,
                marker="o" if learned else "s",
                s=50,
                label=f"{name} ({rs[0]['kind']})",
                facecolors=f"C{k}" if learned else "none",
                edgecolors=f"C{k}",
                linewidths=1.5,
            )
        for j, p in enumerate(recorded):
            k = len(groups) + j
            learned = p["kind"] == "learned"
            sd = p[f"{split}_std"]
            ax.errorbar(
                [p["model_bits"] / 1e6],
                [p[f"{split}_mean"]],
                yerr=None if sd is None else [sd],
                fmt="D" if learned else "s",
                mfc=f"C{k}" if learned else "none",
                color=f"C{k}",
                capsize=4,
                label=f"{p['recipe']} ({p['kind']}, "
                + (f"mean ± sd of {p['seeds']})" if sd is not None else "1 seed)"),
            )
        ax.set_xlabel("model bits (millions)")
        ax.set_title(f"{'validation' if split == 'val' else 'test'} lesion Dice")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("lesion Dice")
    # below both panels: inside either one it covers points once there are more than a few recipes
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=2, frameon=False)
    for ax in axes:
        ax.margins(x=0.15, y=0.15)
    fig.suptitle(
        "QuantU-Net on BUSI (grouped split; width 8, w12: width 12): learned per-layer widths vs "
        "uniform widths"
    )
    fig.tight_layout(rect=(0, 0.04 + 0.022 * ((len(labels) + 1) // 2), 1, 1))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=120)
    print(f"\nplot: {a.out}")


if __name__ == "__main__":
    main()
