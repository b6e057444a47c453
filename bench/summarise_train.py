"""Tabulate the BUSI training benchmark (runs/bench-*/evaluate/metrics.json) as markdown: one row
per
(model, width, lambda, split) over its seeds, mean ± std where there are several.

Usage: .venv/bin/python bench/summarise_train.py
"""

from __future__ import annotations

import json
import re
import statistics as st
from pathlib import Path


def load(name: str) -> dict | None:
    p = Path("runs") / name / "evaluate" / "metrics.json"
    return json.loads(p.read_text()) if p.is_file() else None


def seconds_per_epoch(name: str) -> float:
    log = Path("runs") / name / "train" / "log.jsonl"
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    return st.median(r["seconds"] for r in recs)


def fmt(vals: list[float], pct: bool = False) -> str:
    k = 100 if pct else 1
    if len(vals) == 1:
        return f"{vals[0] * k:.4g}" if not pct else f"{vals[0] * k:.2f}%"
    m, s = st.mean(vals) * k, st.stdev(vals) * k
    return f"{m:.2f} ± {s:.2f}%" if pct else f"{m:.4f} ± {s:.4f}"


NAME = re.compile(
    r"bench-(?P<kind>float|quant)(?:-w(?P<width>\d+))?(?:-lam(?P<lam>\d+))?(?P<paper>-paper)?-s(?P<seed>\d+)$"
)


def groups() -> dict[tuple, list[tuple[int, str]]]:
    """(kind, width, lambda digits, split) -> [(seed, run name)], from bench/train_busi.sh's
    names."""
    out: dict[tuple, list[tuple[int, str]]] = {}
    for p in sorted(Path("runs").glob("bench-*-s*")):
        m = NAME.match(p.name)
        if m and load(p.name):
            key = (m["kind"], int(m["width"] or 8), m["lam"], "paper" if m["paper"] else "grouped")
            out.setdefault(key, []).append((int(m["seed"]), p.name))
    return out


def best_val(name: str) -> float:
    """Validation lesion Dice of the best checkpoint (what the checkpoint was chosen by)."""
    log = Path("runs") / name / "train" / "log.jsonl"
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    return [r for r in recs if r.get("best")][-1]["val"]["dice_lesion"]


def main() -> None:
    print(
        "| model | width | split | seeds | val Dice (lesion) | test Dice (lesion) | test Dice "
        "(all) "
        "| IoU (lesion) | "
        "pixel acc | avg bits (all / w / a) | size-weighted bits | model bits | float/quant bits | "
        "s/epoch | best epoch |"
    )
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for (kind, width, lam, split), members in sorted(
        groups().items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2] or "", kv[0][3])
    ):
        seeds, names = zip(*sorted(members))
        runs = [load(n) for n in names]
        ms = [m["metrics"] for m in runs]
        bits = [m.get("bits") for m in runs]
        label = kind + (
            f" (λ {lam[0]}.{lam[1:]})" if lam else (" (λ 0.25)" if kind == "quant" else "")
        )
        row = [
            label,
            str(width),
            split,
            ",".join(map(str, seeds)),
            fmt([best_val(n) for n in names]),
            fmt([m["dice_lesion"] for m in ms]),
            fmt([m["dice"] for m in ms]),
            fmt([m["iou_lesion"] for m in ms]),
            fmt([m["pixel_acc"] for m in ms], pct=True),
        ]
        if bits[0] is not None:
            row += [
                " / ".join(
                    f"{st.mean(b[k] for b in bits):.2f}"
                    for k in ("avg_bits", "avg_weight_bits", "avg_act_bits")
                ),
                f"{st.mean(b['size_weighted_bits'] for b in bits):.2f}",
                f"{st.mean(b['model_bits'] for b in bits):,.0f}",
                f"{st.mean(m['compression_vs_float'] for m in runs):.1f}x",
            ]
        else:
            row += ["32 (float)", "32", f"{runs[0]['float_model_bits']:,}", "1x"]
        row += [
            f"{st.mean(seconds_per_epoch(n) for n in names):.1f}",
            ",".join(str(m["checkpoint_epoch"]) for m in runs),
        ]
        print("| " + " | ".join(row) + " |")
    exps: dict[str, list[str]] = {}
    for p in sorted(Path("runs").glob("exp-*-s*")):
        if load(p.name):
            exps.setdefault(p.name.rsplit("-s", 1)[0], []).append(p.name)
    if exps:
        print()
        print(
            "| runs | recipe | seeds | val Dice (lesion) | test Dice (lesion) | test Dice (all) | "
            "avg bits | "
            "float/quant bits | s/epoch | best epoch |"
        )
        print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for prefix, names in exps.items():
            ms = [load(n) for n in names]
            q = ms[0].get("bits") is not None
            print(
                f"| {prefix} | {recipe(names[0])} "
                f"| {','.join(n.rsplit('-s', 1)[1] for n in names)} "
                "| "
                f"{fmt([best_val(n) for n in names])} "
                f"| {fmt([m['metrics']['dice_lesion'] for m in ms])} | "
                f"{fmt([m['metrics']['dice'] for m in ms])} | "
                f"{st.mean(m['bits']['avg_bits'] for m in ms) if q else 32:.2f} | "
                f"{st.mean(m['compression_vs_float'] for m in ms) if q else 1:.1f}x | "
                f"{st.mean(seconds_per_epoch(n) for n in names):.1f} "
                f"| {','.join(str(m['checkpoint_epoch']) for m in ms)} |"
            )


def recipe(name: str) -> str:
    """The training options of a run, from its manifest, in qdev train's words."""
    c = json.loads((Path("runs") / name / "manifest.json").read_text())["stages"]["train"]["config"]
    mc = c["model"]
    parts = [
        mc["kind"],
        f"width {mc['width']}",
        f"{c['epochs']} epochs",
        f"augment {c.get('augment')}",
    ]
    if not mc.get("batchnorm", True):
        parts.append("no BN")
    if mc["kind"] == "quant":
        bits = (
            f"bits {mc['min_bits']}"
            if mc["min_bits"] == mc["max_bits"]
            else f"bits {mc['min_bits']}..{mc['max_bits']} (init {mc['init_bits']})"
        )
        parts += [bits, f"λ {c['lam']:g}", "from " + ("float" if c.get("init_from") else "scratch")]
    return ", ".join(parts)


if __name__ == "__main__":
    main()
