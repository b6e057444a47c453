"""A wearable configuration per board: the lowest fabric clock at which the shipped model still
meets the probe's 30 frames/s with its FIFOs counted, its resources, and the estimated power split
into static and dynamic (device/power.py's model; what rests on an assumption is said).

Usage: .venv/bin/python bench/wearable.py [--run models/quantunet-w8] [--work /tmp/wearable]
       [--boards KV260 ZCU104 Ultra96-V2 Pynq-Z2] [--fps 30] [--clocks-ns 250 200 160 125 100 50 25
       10 5]

Per board: one full ``qdev compile`` of a copy of the run (its default clock and target: the
"previous" figures, layers only, beside the same build with FIFOs), then ``qdev compile
--start-step qdev_fold --stop-step step_generate_estimate_reports --fps 30 --clock-ns P`` for
each clock period P, slowest first. A clock qualifies when FINN's folding reaches the rate
(``folding.met``) and layers plus FIFOs fit 85 % of every resource. Estimates only: no Vivado here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from qdev.device.power import estimate_split

RES = ("LUT", "BRAM_18K", "URAM", "DSP")


def compile_json(run: Path, board: str, *extra: str) -> dict:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "qdev.host.cli",
            "compile",
            str(run),
            "--board",
            board,
            "--json",
            *extra,
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise SystemExit(f"compile {board} {extra}: {r.stderr[-2000:]}")
    return json.loads(r.stdout)


def fmt(res: dict) -> str:
    return ", ".join(
        f"{k} {res[k]['used']:,.0f} ({(res[k]['utilisation'] or 0):.0%})"
        for k in RES
        if res[k]["available"]
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="models/quantunet-w8")
    ap.add_argument("--work", default="/tmp/qdev-wearable")
    ap.add_argument("--boards", nargs="+", default=["KV260", "ZCU104", "Ultra96-V2", "Pynq-Z2"])
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument(
        "--clocks-ns", nargs="+", type=float, default=[250, 200, 160, 125, 100, 50, 25, 10, 5]
    )
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    run = work / Path(args.run).name
    shutil.copytree(args.run, run, ignore=shutil.ignore_patterns("compile"))
    rows = []
    for board in args.boards:
        base = compile_json(run, board)
        print(
            f"\n{board} at its default clock ({base['clock_mhz']:.0f} MHz, "
            f"--fps {base['folding']['requested_fps']:g}): "
            f"est. {base['estimated_fps']:.1f} frames/s"
        )
        print(f"  layers only (as before this change): {fmt(base['resources'])}")
        print(
            f"  with FIFOs ({base['fifos']['count']} FIFOs, {base['fifos']['dwcs']} width "
            "converters): "
            f"{fmt(base['resources_with_fifos'])}; fits: {base['fifos']['fits']}"
        )
        best = None
        for p in sorted(args.clocks_ns, reverse=True):  # slowest clock first
            s = compile_json(
                run,
                board,
                "--start-step",
                "qdev_fold",
                "--stop-step",
                "step_generate_estimate_reports",
                "--fps",
                f"{args.fps:g}",
                "--clock-ns",
                f"{p:g}",
            )
            ok = bool(s["folding"]["met"]) and bool(s["fifos"]["fits"])
            print(
                f"  {1e3 / p:6.1f} MHz: est. {s['estimated_fps']:7.1f} frames/s, "
                f"met {s['folding']['met']}, "
                f"fits {s['fifos']['fits']}"
                + ("" if s["folding"]["met"] else f" ({s['folding'].get('message')})")
            )
            if ok:
                best = (p, s)
                break
        if best is None:
            rows.append((board, None, None, None))
            continue
        p, s = best
        split = estimate_split(board, 1e3 / p, s["resources_with_fifos"])
        rows.append((board, p, s, split))
    print(
        f"\n| board | lowest clock meeting {args.fps:g} frames/s | est. frames/s | resources with "
        "FIFOs | "
        "static W | dynamic W (FPGA, est.) | energy mJ/frame (est.) |"
    )
    print("|---|---:|---:|---|---:|---:|---:|")
    notes = set()
    for board, p, s, split in rows:
        if s is None:
            print(f"| {board} | none of {args.clocks_ns} ns | - | - | - | - | - |")
            continue
        total = split["static_w"] + split["dynamic_w"]
        print(
            f"| {board} | {1e3 / p:.1f} MHz | {s['estimated_fps']:.1f} "
            f"| {fmt(s['resources_with_fifos'])} | "
            f"{split['static_w']:.2f} | {split['dynamic_w']:.3f} "
            f"| {1e3 * total / s['estimated_fps']:.1f} |"
        )
        notes.update(split["assumptions"])
    print("\nassumptions behind these power figures (device/power.py):")
    for n in sorted(notes):
        print(f"  - {n}")
    print("  - KV260 static 9.15 W: measured idle at the 12 V input (Simfero, March 2026), checked")


if __name__ == "__main__":
    main()
