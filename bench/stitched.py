"""The stitched dataflow of the shipped builds, as a whole, at pixel granularity
(training/compile/dataflow_sim.py): the chosen skip-FIFO depths against the smallest depths at
which the simulation still completes (bisection, the other FIFOs at their chosen depths), four
golden frames back to back at the chosen depths, and FINN's default depths reported as a deadlock.

Usage: .venv/bin/python bench/stitched.py [--boards KV260 Pynq-Z2] [--frames 4]
       [--cycles compile/KV260/report/estimate_layer_cycles.json]

With ``--cycles`` (FINN's per-layer cycle estimates of a compile of the same model, e.g. from
``qdev compile models/quantunet-w8 --board KV260`` on a copy), the timed token model
(``dataflow_sim.timed``) also reports cycles per frame at the chosen depths and with FIFOs of a
whole frame each, beside FINN's bottleneck (several minutes each on this VM).

What it is: a token model (no pixel values, no clock): each node reads as far ahead as its line
buffer allows; a FIFO shallower than one pixel counts as one. Pixel values are checked per node by
cppsim/Verilator (bench/cppsim.py), not here.
"""

from __future__ import annotations

import argparse
import time

from qdev import assets
from qdev.core.intmodel import IntModel
from qdev.training.compile.dataflow_sim import (
    build_graph,
    choose_skip_depths,
    min_skip_depth,
    nodes_from_intmodel,
    simulate,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--boards", nargs="+", default=["KV260", "Pynq-Z2"])
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument(
        "--cycles", default=None, help="FINN's estimate_layer_cycles.json for the first board"
    )
    args = ap.parse_args()
    for board in args.boards:
        model = IntModel.load(assets.shipped_bundle(board) / "intmodel.npz")
        h, w = model.input["shape"][1:3]
        g = build_graph(nodes_from_intmodel(model), (h, w))
        chosen = choose_skip_depths(g)
        depths = {s: v["depth"] for s, v in chosen.items()}
        print(f"\n{board}: {len(g.nodes)} nodes, {len(g.pixels)} streams, {len(chosen)} skip FIFOs")
        print(
            "| skip stream (fork -> concat) | map | analytic bound px | chosen px | smallest "
            "completing px "
            "(bisection) | chosen / smallest | bisection s |"
        )
        print("|---|---|---:|---:|---:|---:|---:|")
        for d, s, c in g.skips():
            t = time.perf_counter()
            mn = min_skip_depth(g, s, depths, frames=2, hi=depths[s])
            side = int(round(g.pixels[s] ** 0.5))
            print(
                f"| {s} ({d} -> {c}) | {side}x{side} | {chosen[s]['must']:,} | {depths[s]:,} "
                f"| {mn:,} | "
                f"{depths[s] / mn:.3f} | {time.perf_counter() - t:.1f} |"
            )
        t = time.perf_counter()
        r = simulate(g, depths, frames=args.frames)
        print(
            f"chosen depths, {args.frames} frames back to back: {r.summary()} "
            f"({r.events:,} node firings, {time.perf_counter() - t:.1f} s); peak skip occupancy "
            + ", ".join(f"{r.peak[s]:,}/{depths[s]:,} px" for s in depths)
        )
        t = time.perf_counter()
        r = simulate(g, {}, frames=1)
        print(
            f"FINN's default depth (2 words: under one pixel): {r.summary()} "
            f"(reported after {time.perf_counter() - t:.2f} s)"
        )
        t = time.perf_counter()
        r = simulate(g, {s: v // 2 for s, v in depths.items()}, frames=1)
        print(
            f"skip FIFOs at half their chosen depth: {r.summary()} (reported "
            f"after {time.perf_counter() - t:.2f} s)"
        )
        if args.cycles and board == args.boards[0]:
            import json

            from qdev.training.compile.dataflow_sim import timed

            cycles = json.loads(open(args.cycles).read())
            for label, dep in (
                ("chosen depths (other streams 1 px)", depths),
                ("every FIFO a whole frame", {s: 3 * g.pixels[s] for s in g.pixels}),
            ):
                t = time.perf_counter()
                tr = timed(g, dep, cycles, frames=3)
                print(
                    f"timed, {label}: {tr.cycles_per_frame:,.0f} cycles/frame in steady state, "
                    "first frame "
                    f"{tr.first_frame_cycles:,.0f}; FINN's bottleneck {tr.bottleneck_cycles:,.0f} "
                    f"(ratio {tr.bottleneck_cycles / tr.cycles_per_frame:.2f}; "
                    f"converged {tr.converged} in "
                    f"{tr.iterations} passes, {time.perf_counter() - t:.0f} s)"
                )


if __name__ == "__main__":
    main()
