"""HLS C++ simulation of the shipped QuantU-Net's KV260 build, per node type: node count,
bit-exact or not, compile time cold and cached, run time; the RTL nodes listed with why they were
not simulated. One run: FINN compile of a copy of models/quantunet-w8 with ``--verify cppsim``
(cold: an empty simulator cache), then the cppsim step again (cached).

    .venv/bin/python bench/cppsim.py [--opt -O2] [--board KV260]
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


def compile_once(run: Path, board: str, opt: str, env: dict, start: str | None) -> tuple[dict, float]:
    cmd = [str(REPO / ".venv" / "bin" / "qdev"), "compile", str(run), "--board", board, "--verify", "cppsim",
           "--cppsim-opt", opt, "--json"] + (["--start-step", start] if start else [])
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        rep = run / "compile" / board / "cppsim" / "report.json"
        if rep.is_file():  # the check ran and failed: say where
            doc = json.loads(rep.read_text())
            bad = {k: v for k, v in doc["nodes"].items() if v.get("bit_exact") is False or v.get("compiled") is False}
            print(json.dumps({"failing_nodes": bad, "end_to_end": doc["end_to_end"]}, indent=1))
        sys.exit(f"bench/cppsim.py: compile failed (work folder kept: {run.parent}): "
                 f"{r.stderr.strip().splitlines()[-1:]}")
    return json.loads(r.stdout), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--opt", default="-O2")
    ap.add_argument("--board", default="KV260")
    ap.add_argument("--run", type=Path, default=REPO / "models" / "quantunet-w8",
                    help="the run folder to copy and compile (default: the shipped model)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="qdev-cppsim-bench-")  # kept when the check fails, to look at
    run = Path(tmp) / a.run.name
    shutil.copytree(a.run, run, ignore=shutil.ignore_patterns("compile"))
    env = {**os.environ, "QDEV_CACHE": str(Path(tmp) / "cache"), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    cold, cold_s = compile_once(run, a.board, a.opt, env, None)
    rep_path = run / "compile" / a.board / "cppsim" / "report.json"
    rep_cold = json.loads(rep_path.read_text())
    _, warm_s = compile_once(run, a.board, a.opt, env, "qdev_cppsim")
    rep_warm = json.loads(rep_path.read_text())
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"{a.board} build of {a.run}, g++ {a.opt}, {os.cpu_count()} parallel compiles; "
          f"whole compile with cppsim {cold_s:.0f} s (cold cache), cppsim step alone again {warm_s:.1f} s "
          f"(cached: {rep_warm['seconds']:.1f} s inside the step)")
    print("| node type | nodes | simulated | bit-exact | compile s, cold (sum over nodes) | compile s, cached | run s (4 frames) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for op, t in sorted(rep_cold["by_type"].items()):
        w = rep_warm["by_type"][op]
        if t["simulated"]:
            print(f"| {op} | {t['nodes']} | {t['simulated']} | {t['bit_exact']} | {t['compile_s']:.0f} | "
                  f"{w['compile_s']:.2f} | {t['run_s']:.1f} |")
        else:
            print(f"| {op} | {t['nodes']} | 0 | - | - | - | - ({t['reason']}) |")
    e = rep_cold["end_to_end"]
    print(f"end to end (HLS nodes simulated, RTL nodes in python): {e['frames']} frames, "
          f"{e['differing_from_python']} elements differ from python, "
          f"{e.get('differing_from_golden_codes')} from the golden codes; python equals the graph before "
          f"specialisation: {e['python_equals_unspecialised_graph']}")
    print(json.dumps({"verification": cold["verification"]["modes_run"]}))


if __name__ == "__main__":
    main()
