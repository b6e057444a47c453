"""The whole accelerator at once (``qdev compile --verify stitched``): every node of the tiny
QuantU-Net's FIFO graph (FINN's own InsertDWC/InsertFIFO at qdev's depths) runs as its own process
in its hardware language (FINN's generated HLS C++, the Verilator models of the RTL layers),
connected by bounded FIFOs of exactly those depths; 4 golden frames back to back. qdev's depths
complete bit-exact; FINN's default depths and half the skip depths are reported as a deadlock,
in bounded time, naming the fork held by its full skip FIFO and the concat starving. (A corrupted
weight is not among the tests: this tiny model's output codes are one value everywhere, so no
upstream change can show at its output; per-node corruption is caught by --verify verilator.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import simulate_copy

pytestmark = pytest.mark.slow

PART = "xck26-sfvc784-2LV-c"


def test_chosen_depths_complete_bit_exact_through_every_fifo(compiled, tmp_path):
    run, v, rep = simulate_copy(compiled, tmp_path, "stitched")
    assert rep["status"] == "completed" and rep["bit_exact"] is True
    assert rep["frames"] == 4
    assert rep["output_words"]["received"] == rep["output_words"]["expected"] > 0
    assert rep["elements"]["received"] == rep["elements"]["expected"] == 4 * 32 * 32
    assert rep["elements_differing"] == 0
    # every node of the graph ran: HLS in C++, RTL in Verilator, plus the source and the sink
    summary = json.loads((run / "compile" / "KV260" / "summary.json").read_text())
    assert rep["processes"] == rep["hls_processes"] + rep["rtl_processes"] + 2
    assert rep["hls_processes"] > 0 and rep["rtl_processes"] > 0
    # the channels are FINN's FIFOs at qdev's depths: each skip FIFO's capacity is the plan's depth
    plan = json.loads((run / "compile" / "KV260" / "report" / "fifo_depths.json").read_text())[
        "fifos"
    ]
    skips = sorted(f["depth"] for f in plan if f["role"] == "skip")
    deep = [
        c for c in rep["channels"] if c["capacity"] > 2
    ]  # FINN renamed the tensors; the depths stay
    assert skips and sorted(c["capacity"] for c in deep) == skips
    assert all(
        c["producer"].startswith("DuplicateStreams") and c["consumer"].startswith("StreamingConcat")
        for c in deep
    )
    assert all(0 < c["peak"] <= c["capacity"] for c in rep["channels"])
    assert all(c["fifos"] for c in rep["channels"])  # every stream went through one of FINN's FIFOs
    # recorded: the build's verification and the summary line the CLI prints
    st = v["steps"]["qdev_stitched"]
    assert st["equal"] is True and st["status"] == "completed" and "bit-exact" in st["summary"]
    assert "stitched" in summary["verification"]["modes_run"]
    assert not (
        run / "compile" / "KV260" / "stitched" / "work"
    ).exists()  # cleaned up after success


def _setup(compiled):  # noqa: ANN001, ANN202
    from qonnx.core.modelwrapper import ModelWrapper

    from qdev.training.compile.builder import export_golden
    from qdev.training.compile.finn_env import boot_finn
    from qdev.training.runs import RunFolder

    src, _, _ = compiled
    out = src / "compile" / "KV260"
    boot_finn(out / "finn_build")
    model = ModelWrapper(str(out / "intermediate_models" / "qdev_integer_model.onnx"))
    plan = json.loads((out / "report" / "fifo_depths.json").read_text())["fifos"]
    golden = export_golden(RunFolder.existing(src))
    return model, plan, golden.pixels, golden.codes


def _run(compiled, tmp_path: Path, depths=None, frames: int = 2) -> dict:  # noqa: ANN001
    from qdev.training.compile.cppsim import find_hls_deps
    from qdev.training.compile.stitch import (
        StitchConfig,
        build_processes,
        run_stitched,
        stitched_graph,
    )
    from qdev.training.compile.verilate import VerilatorConfig, find_verilator

    model, plan, pixels, codes = _setup(compiled)
    fm = stitched_graph(model, plan, PART, depths(plan) if depths else None)
    cfg = StitchConfig(frames=frames, keep=tmp_path / "work", timeout_s=300)
    hls, rtl, _ = build_processes(
        fm,
        tmp_path / "work",
        find_hls_deps(None),
        find_verilator(),
        cfg,
        VerilatorConfig(),
        5.0,
        PART,
    )
    return run_stitched(fm, pixels, codes, hls, rtl, cfg)


@pytest.mark.parametrize("which", ["finn-default", "half-skips"])
def test_too_shallow_fifos_are_reported_as_a_deadlock_in_bounded_time(compiled, tmp_path, which):
    """FINN's default (every FIFO 2 words) and the skips cut to half their chosen depth: the run
    stops within seconds of the stall, not at a timeout, and names the fork held by its full
    skip FIFO; nothing of the output is claimed."""
    depths = {
        "finn-default": lambda plan: {f["stream"]: 2 for f in plan},
        "half-skips": lambda plan: {
            f["stream"]: f["depth"] // 2 for f in plan if f["role"] == "skip"
        },
    }[which]
    rep = _run(compiled, tmp_path, depths)
    assert rep["status"] == "deadlock", rep["summary"]
    assert (
        rep["detected_after_s"] < 5 and rep["run_s"] < 60
    )  # the simulation's own time, builds aside
    assert rep["bit_exact"] is False and "elements" not in rep
    assert rep["output_words"]["received"] < rep["output_words"]["expected"]
    assert rep["summary"].startswith("DEADLOCK")
    forks = [
        b
        for b in rep["blocked"]
        if b["op_type"].startswith("DuplicateStreams") and b.get("waits") == "writing"
    ]
    assert forks, rep["summary"]
    held = {c["stream"]: c for c in rep["channels"]}[forks[0]["channel"]]
    assert held["peak"] == held["capacity"] and held["consumer"].startswith("StreamingConcat")
    assert forks[0]["why"] in rep["summary"]
