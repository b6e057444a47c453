"""The hardware's own code of the shipped QuantU-Net's KV260 build, simulated per node type:
HLS nodes in C++ (cppsim), RTL nodes in Verilator. Node count, bit-exact or not, build time cold
and cached, run time; any node not simulated listed with why. One run: FINN compile of a copy of
models/quantunet-w8 with ``--verify cppsim --verify verilator`` (cold: empty simulator caches),
then both simulation steps again (cached).

    .venv/bin/python bench/cppsim.py [--opt -O2] [--vl-opt -O1] [--board KV260] [--modes cppsim
    verilator]
                                     [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def compile_once(run: Path, a, env: dict, start: str | None) -> tuple[dict, float]:  # noqa: ANN001
    cmd = [
        str(REPO / ".venv" / "bin" / "qdev"),
        "compile",
        str(run),
        "--board",
        a.board,
        "--cppsim-opt",
        a.opt,
        "--verilator-opt",
        a.vl_opt,
        "--json",
        *[x for m in a.modes for x in ("--verify", m)],
    ]
    cmd += ["--start-step", start] if start else []
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        for mode in a.modes:
            rep = run / "compile" / a.board / mode / "report.json"
            if rep.is_file():  # the check ran and failed: say where
                doc = json.loads(rep.read_text())
                bad = {
                    k: v
                    for k, v in doc["nodes"].items()
                    if v.get("bit_exact") is False or v.get("simulated") is False
                }
                print(json.dumps({mode: bad}, indent=1))
        sys.exit(
            f"bench/cppsim.py: compile failed (work folder kept: {run.parent}): "
            f"{r.stderr.strip().splitlines()[-1:]}"
        )
    return json.loads(r.stdout), time.perf_counter() - t0


def _row(mode: str, op: str, t: dict, w: dict) -> str:
    lang = {"cppsim": "HLS C++ (g++)", "verilator": "SystemVerilog (Verilator)"}[mode]
    if not t["simulated"]:
        return f"| {op} | {lang} | {t['nodes']} | 0 | - | - | - | - ({t['reason']}) |"
    build = "compile_s" if mode == "cppsim" else "build_s"
    return (
        f"| {op} | {lang} | {t['nodes']} | {t['simulated']} | {t['bit_exact']} | {t[build]:.0f} | "
        f"{w[build]:.2f} | {t['run_s']:.1f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--opt", default="-O2", help="g++ optimisation of the HLS node simulators")
    ap.add_argument("--vl-opt", default="-O1", help="C++ optimisation of the verilated RTL layers")
    ap.add_argument("--board", default="KV260")
    ap.add_argument(
        "--modes", nargs="+", default=["cppsim", "verilator"], choices=["cppsim", "verilator"]
    )
    ap.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep the compiled run here (e.g. to sign a bundle that records these checks)",
    )
    ap.add_argument(
        "--run",
        type=Path,
        default=REPO / "models" / "quantunet-w8",
        help="the run folder to copy and compile (default: the shipped model)",
    )
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="qdev-cppsim-bench-")  # kept when the check fails, to look at
    run = Path(tmp) / a.run.name
    shutil.copytree(a.run, run, ignore=shutil.ignore_patterns("compile"))
    env = {
        **os.environ,
        "QDEV_CACHE": str(Path(tmp) / "cache"),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    cold, cold_s = compile_once(run, a, env, None)
    d = run / "compile" / a.board
    reps_cold = {m: json.loads((d / m / "report.json").read_text()) for m in a.modes}
    first = {"cppsim": "qdev_cppsim", "verilator": "qdev_verilator"}[a.modes[0]]
    _, warm_s = compile_once(run, a, env, first)
    reps_warm = {m: json.loads((d / m / "report.json").read_text()) for m in a.modes}
    if a.keep is not None:
        shutil.copytree(run, a.keep, ignore=shutil.ignore_patterns("finn_build"))
    shutil.rmtree(tmp, ignore_errors=True)
    inside = ", ".join(f"{m} {reps_warm[m]['seconds']:.1f} s" for m in a.modes)
    print(
        f"{a.board} build of {a.run}, g++ {a.opt} (HLS), Verilator model C++ {a.vl_opt} (RTL), "
        f"{os.cpu_count()} parallel builds; whole compile with {' + '.join(a.modes)} {cold_s:.0f} "
        "s "
        "(cold caches); "
        f"the simulation steps alone again {warm_s:.1f} s (cached; inside the steps: {inside})"
    )
    print(
        "| node type | simulated as | nodes | simulated | bit-exact | build s, cold (sum over "
        "nodes) | build s, cached | "
        "run s (4 frames) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    total = covered = 0
    for mode in a.modes:
        for op, t in sorted(reps_cold[mode]["by_type"].items()):
            own = op.endswith("_hls") if mode == "cppsim" else op.endswith("_rtl")
            if not own:
                continue
            print(_row(mode, op, t, reps_warm[mode]["by_type"][op]))
            total += t["nodes"]
            covered += t["bit_exact"]
    if "cppsim" in reps_cold:
        e = reps_cold["cppsim"]["end_to_end"]
        print(
            f"cppsim end to end: {e['frames']} frames, {e['differing_from_python']} elements "
            "differ "
            "from python, "
            f"{e.get('differing_from_golden_codes')} from the golden codes; python equals the "
            "graph "
            "before "
            f"specialisation: {e['python_equals_unspecialised_graph']}"
        )
    if "verilator" in reps_cold:
        v = reps_cold["verilator"]
        print(
            f"verilator: {v['verilator']}, {v['frames']} frames streamed back to back per node, "
            f"{v['stall_permille'] / 10:.0f}% of cycles stalled on each side"
        )
    print(f"nodes simulated in their hardware language and bit-exact: {covered} of {total}")
    print(
        json.dumps(
            {
                "verification": cold["verification"]["modes_run"],
                "layers": cold["verification"]["layers"],
            }
        )
    )


if __name__ == "__main__":
    main()
