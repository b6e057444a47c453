"""Compile the default QuantU-Net for every board and print estimates beside the resource bound.

Usage:
    .venv/bin/python bench/compile_boards.py [--run runs/bench-quant-s0] [--no-compile]

Per board: estimated frames/s and latency (FINN's analytical models at the board's clock),
LUT/BRAM/URAM/DSP use and utilisation, wall-clock compile time, and the resource-bound limit.

Resource-bound model (ours, stated): a MAC of a w-bit weight and an a-bit activation per clock
costs ``w*a`` LUTs for the partial products plus ``w + a + 4`` LUTs as its share of the adder tree
and accumulator when built from LUTs, or one DSP slice. With ``u`` = 0.85 of the part usable
(the rest is the shell), the part sustains ``clock * (u*LUT / lut_per_mac + u*DSP)`` MAC/s; the
FPS limit is that divided by the MACs per frame that FINN counts in the compiled graph
(``op_and_param_counts.json``, which includes the zeros that the transposed-conv lowering inserts).
Reference: FINN's closest published image-to-image design, ESPCN-W4A4 on KV260, runs 45.3
frames/s at 128x128 input (finn-examples; quoted by this project's issue, not re-measured here).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

BOARDS = ["KV260", "ZCU104", "Ultra96-V2", "Pynq-Z2"]
U = 0.85


def lut_per_mac(w: int, a: int) -> float:
    return w * a + w + a + 4


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/bench-quant-s0")
    ap.add_argument(
        "--no-compile", action="store_true", help="only read existing compile summaries"
    )
    args = ap.parse_args()
    run = Path(args.run)
    rows = []
    for b in BOARDS:
        wall = None
        if not args.no_compile:
            t = time.perf_counter()
            r = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "qdev.host.cli",
                    "compile",
                    str(run),
                    "--board",
                    b,
                    "--json",
                ],
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - t
            if r.returncode != 0:
                print(f"{b}: compile failed: {r.stderr.strip().splitlines()[-1]}")
                continue
        sp = run / "compile" / b / "summary.json"
        if not sp.is_file():
            print(f"{b}: not compiled yet ({sp} missing)")
            continue
        s = json.loads(sp.read_text())
        ops = json.loads((run / "compile" / b / "report" / "op_and_param_counts.json").read_text())[
            "total"
        ]
        macs = {k: v for k, v in ops.items() if k.startswith("op_mac_")}
        total_macs = sum(macs.values())
        lut_cost = (
            sum(v * lut_per_mac(*map(int, re.findall(r"(\d+)b", k))) for k, v in macs.items())
            / total_macs
        )
        from qdev.training.compile.boards import get_board

        bd = get_board(b)
        clock_hz = 1e9 / s["clock_ns"]
        peak = clock_hz * (U * bd.lut / lut_cost + U * bd.dsp)
        bound = peak / total_macs
        res = s["resources"]
        rows.append((b, s, res, bound, total_macs, wall))
    print(
        f"\nrun {run}; MACs/frame counted by FINN: {rows[0][4] / 1e6:.1f} M"
        if rows
        else "no results"
    )
    print(
        "| board | clock MHz | est. FPS | target met | latency ms | LUT | BRAM18 | URAM | DSP | "
        "resource-bound FPS | "
        "fraction | compile wall s |"
    )
    print("|---|---:|---:|---|---:|---|---|---|---|---:|---:|---:|")
    for b, s, res, bound, _, wall in rows:

        def u(k: str) -> str:
            r = res[k]
            return (
                f"{r['used']:,.0f} ({(r['utilisation'] or 0):.0%})" if r["available"] else "0 (n/a)"
            )

        f = s.get("folding") or {}
        print(
            f"| {b} | {s['clock_mhz']:.0f} | {s['estimated_fps']:.1f} | {f.get('met')} "
            f"(asked {f.get('requested_fps')}) | "
            f"{s['estimated_latency_ms']:.1f} | {u('LUT')} | {u('BRAM_18K')} | {u('URAM')} "
            f"| {u('DSP')} | {bound:.0f} | "
            f"{s['estimated_fps'] / bound:.1%} | {wall:.0f} |"
            if wall
            else f"| {b} | {s['clock_mhz']:.0f} | {s['estimated_fps']:.1f} | {f.get('met')} "
            f"| {s['estimated_latency_ms']:.1f} | "
            f"{u('LUT')} | {u('BRAM_18K')} | {u('URAM')} | {u('DSP')} | {bound:.0f} "
            f"| {s['estimated_fps'] / bound:.1%} | "
            f"({s['compile_seconds']:.0f} in steps) |"
        )
    print("\nReference: ESPCN-W4A4 on KV260 (finn-examples): 45.3 frames/s at 128x128.")


if __name__ == "__main__":
    main()
