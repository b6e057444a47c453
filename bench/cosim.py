"""The whole accelerator in its hardware languages, at once: the stitched co-simulation of a
compiled build (``qdev compile --verify stitched``) at qdev's FIFO depths, at FINN's default
depths, and with the skip FIFOs cut to half; prints one row per run.

Usage: .venv/bin/python bench/cosim.py RUN --board KV260 [--frames 4]
(RUN compiled for the board first: ``qdev compile RUN --board KV260``). Builds are cached
($QDEV_CACHE/stitch, $QDEV_CACHE/verilator), so a second call costs only the simulations.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--board", default="KV260")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--modes", nargs="+", default=["chosen", "finn-default", "half-skips"])
    args = ap.parse_args()

    from qonnx.core.modelwrapper import ModelWrapper

    from qdev.training.compile.boards import get_board
    from qdev.training.compile.cppsim import find_hls_deps
    from qdev.training.compile.finn_env import boot_finn
    from qdev.training.compile.stitch import (
        StitchConfig,
        build_processes,
        run_stitched,
        stitched_graph,
    )
    from qdev.training.compile.builder import export_golden
    from qdev.training.compile.verilate import VerilatorConfig, find_verilator
    from qdev.training.runs import RunFolder

    board = get_board(args.board)
    out = args.run / "compile" / board.name
    boot_finn(out / "finn_build")
    model = ModelWrapper(str(out / "intermediate_models" / "qdev_integer_model.onnx"))
    plan = json.loads((out / "report" / "fifo_depths.json").read_text())["fifos"]
    summary = json.loads((out / "summary.json").read_text())
    clock = float(summary.get("clock_ns") or board.clock_ns)
    golden = export_golden(RunFolder.existing(args.run))
    pixels, codes = golden.pixels, golden.codes
    depths = {
        "chosen": None,
        "finn-default": {f["stream"]: 2 for f in plan},
        "half-skips": {f["stream"]: max(1, f["depth"] // 2) for f in plan if f["role"] == "skip"},
    }
    print(
        f"{args.board} build of {args.run} "
        f"({platform.node()}, {platform.processor() or platform.machine()})"
    )
    print(
        "| FIFOs | processes (HLS + RTL + io) | channels | build s (cached) | status | output "
        "words "
        "| "
        "elements differing | detected after s | run s |"
    )
    print("|---|---|---:|---:|---|---:|---:|---:|---:|")
    for mode in args.modes:
        fm = stitched_graph(model, plan, board.part, depths[mode])
        work = Path(f"/tmp/qdev-cosim-{args.board}-{mode}")
        cfg = StitchConfig(frames=args.frames, keep=work)
        t0 = time.perf_counter()
        hls, rtl, facts = build_processes(
            fm,
            work,
            find_hls_deps(None),
            find_verilator(),
            cfg,
            VerilatorConfig(),
            clock,
            board.part,
        )
        t_build = time.perf_counter() - t0
        rep = run_stitched(fm, pixels, codes, hls, rtl, cfg)
        cached = facts["hls_cached"] + facts["rtl_cached"]
        ow = rep["output_words"]
        print(
            f"| {mode} | {rep['hls_processes']} + {rep['rtl_processes']} + 2 "
            f"| {rep['channels_count']} | "
            f"{t_build:.0f} ({cached}/{facts['hls_built'] + facts['rtl_built']}) | {rep['status']} "
            "| "
            f"{ow['received']:,}/{ow['expected']:,} | {rep.get('elements_differing', '-')} | "
            f"{rep.get('detected_after_s', '-')} | {rep['run_s']} |"
        )
        print(f"  {rep['summary']}")
        if mode == "chosen":
            for c in rep["channels"]:
                if c["capacity"] > 2:
                    print(
                        f"  skip FIFO {c['stream']} -> {c['consumer']}: capacity {c['capacity']:,} "
                        "words, "
                        f"peak {c['peak']:,}"
                    )


if __name__ == "__main__":
    main()
