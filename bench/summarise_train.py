"""Tabulate the BUSI training benchmark (runs/bench-*/evaluate/metrics.json) as markdown.

Usage: .venv/bin/python bench/summarise_train.py
"""

from __future__ import annotations

import json
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


def main() -> None:
    print("| model | split | seeds | test Dice (lesion) | test Dice (all) | IoU (lesion) | pixel acc | "
          "avg bits (all / w / a) | size-weighted bits | model bits | float/quant bits | s/epoch | best epoch |")
    print("|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    groups = [(kind, split, prefix) for kind in ("float", "quant")
              for split, prefix in (("grouped", f"bench-{kind}-s"), ("paper", f"bench-{kind}-paper-s"))]
    # lambda studies: runs/bench-quant-lam<digits>-s<seed> (bench/train_busi.sh with QUANT_PREFIX)
    for lam in sorted({p.name.rsplit("-s", 1)[0] for p in Path("runs").glob("bench-quant-lam*-s*")}):
        digits = lam.rsplit("lam", 1)[1]  # "005" -> 0.05
        groups.append((f"quant (λ {digits[0]}.{digits[1:]})", "grouped", f"{lam}-s"))
    for kind, split, prefix in groups:
        runs = [(s, load(f"{prefix}{s}")) for s in range(3)]
        runs = [(s, m) for s, m in runs if m]
        if not runs:
            continue
        ms = [m["metrics"] for _, m in runs]
        bits = [m.get("bits") for _, m in runs]
        q = bits[0] is not None
        row = [kind, split, ",".join(str(s) for s, _ in runs),
               fmt([m["dice_lesion"] for m in ms]), fmt([m["dice"] for m in ms]),
               fmt([m["iou_lesion"] for m in ms]), fmt([m["pixel_acc"] for m in ms], pct=True)]
        if q:
            row += [" / ".join(f"{st.mean(b[k] for b in bits):.2f}" for k in ("avg_bits", "avg_weight_bits", "avg_act_bits")),
                    f"{st.mean(b['size_weighted_bits'] for b in bits):.2f}",
                    f"{st.mean(b['model_bits'] for b in bits):,.0f}",
                    f"{st.mean(m['compression_vs_float'] for _, m in runs):.1f}x"]
        else:
            row += ["32 (float)", "32", f"{runs[0][1]['float_model_bits']:,}", "1x"]
        row += [f"{st.mean(seconds_per_epoch(f'{prefix}{s}') for s, _ in runs):.1f}",
                ",".join(str(m["checkpoint_epoch"]) for _, m in runs)]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
