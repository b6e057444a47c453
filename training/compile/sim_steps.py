"""The build steps that simulate the hardware's own code on the golden batch, each when the build
was asked for it: ``qdev_cppsim`` (``--verify cppsim``: every HLS node's generated C++,
:mod:`.cppsim`) and ``qdev_verilator`` (``--verify verilator``: every RTL node's SystemVerilog,
:mod:`.verilate`). Each writes ``<mode>/report.json``, records its verification, and fails the
build on a mismatch, naming the nodes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from qdev.core.errors import QdevError
from qdev.training.compile.context import StepContext
from qdev.training.runs import atomic_writer

__all__ = ["qdev_cppsim", "qdev_verilator", "qdev_stitched", "SIM_STEPS"]


def _golden(ctx: StepContext) -> tuple[np.ndarray, np.ndarray, Path | None]:
    """The golden frames as pixels, their codes in the dataflow graph's NHWC, and the graph
    before specialisation (python execution's own reference), if the build saved it."""
    pixels, codes = ctx.golden.pixels, ctx.golden.codes
    before = ctx.out / "intermediate_models" / "qdev_convert_to_hw.onnx"
    return pixels, codes, before if before.is_file() else None


def _save(model: ModelWrapper, ctx: StepContext, mode: str) -> Path:
    d = ctx.out / mode
    d.mkdir(exist_ok=True)
    model.save(str(d / "model.onnx"))
    return d


def _write(d: Path, rep: dict) -> None:
    with atomic_writer(d / "report.json") as fh:
        fh.write(json.dumps(rep, indent=1).encode())


def _reference(
    ctx: StepContext, model_path: Path, pixels: np.ndarray, before: Path | None
) -> tuple:
    """Python execution of the graph at ``model_path`` on the golden frames, computed once per
    build for both simulation steps (they see the same graph: checked by its hash)."""
    import hashlib

    from qdev.training.compile.cppsim import python_reference

    key = hashlib.sha256(model_path.read_bytes()).hexdigest()
    if ctx.sim_reference is None or ctx.sim_reference[0] != key:
        ctx.sim_reference = (key, *python_reference(ModelWrapper(str(model_path)), pixels, before))
    return ctx.sim_reference[1], ctx.sim_reference[2]


def _bad(nodes: dict[str, dict]) -> list[str]:
    return sorted(
        k for k, r in nodes.items() if r.get("simulated") is False or r.get("bit_exact") is False
    )


def qdev_cppsim(model: ModelWrapper, cfg, ctx: StepContext) -> ModelWrapper:  # noqa: ANN001
    """HLS C++ simulation of every HLS node against python execution on the golden batch."""
    from qdev.training.compile.cppsim import CppSimConfig, find_hls_deps, verify_cppsim

    d = _save(model, ctx, "cppsim")
    pixels, codes, before = _golden(ctx)
    deps = find_hls_deps(ctx.cfg.hls_deps)  # before any work: missing headers are a one-line error
    rep = verify_cppsim(
        d / "model.onnx",
        before,
        pixels,
        codes,
        deps,
        CppSimConfig(opt=ctx.cfg.cppsim_opt),
        reference=_reference(ctx, d / "model.onnx", pixels, before),
    )
    _write(d, rep)
    e2e = rep["end_to_end"]
    sim = [r for r in rep["nodes"].values() if r.get("simulated")]
    exact = all(r["bit_exact"] for r in sim) and all(
        r.get("compiled", True) for r in rep["nodes"].values()
    )
    ctx.verification["qdev_cppsim"] = {
        "exec_mode": "cppsim",
        "images": e2e["frames"],
        "equal": bool(
            exact
            and not e2e.get("skipped")
            and e2e.get("differing_from_golden_codes", 0) == 0
            and e2e.get("python_equals_unspecialised_graph") is not False
        ),
        "codes_differing": e2e.get("differing_from_golden_codes"),
        "hls_nodes_simulated": len(sim),
        "hls_nodes_bit_exact": sum(r["bit_exact"] for r in sim),
        "by_type": rep["by_type"],
        "report": "cppsim/report.json",
    }
    if not ctx.verification["qdev_cppsim"]["equal"]:
        raise QdevError(
            "cppsim differs from python execution "
            f"at {', '.join(_bad(rep['nodes'])[:8]) or 'the output'} "
            f"(see {d / 'report.json'})"
        )
    return model


def qdev_verilator(model: ModelWrapper, cfg, ctx: StepContext) -> ModelWrapper:  # noqa: ANN001
    """Every RTL node's SystemVerilog (FINN's own HDL generation) in Verilator, against python
    execution on the golden batch. Works on a copy: the build's graph is handed on unchanged."""
    from qdev.training.compile.verilate import (
        VerilatorConfig,
        find_verilator,
        generate_rtl,
        verify_verilator,
    )

    vl = find_verilator()  # before any work: a missing simulator is a one-line error
    d = _save(model, ctx, "verilator")
    pixels, _, before = _golden(ctx)
    work = ModelWrapper(str(d / "model.onnx"))
    ref, agrees = _reference(ctx, d / "model.onnx", pixels, before)
    generate_rtl(work, ctx.board.part, ctx.cfg.clock)
    rep = verify_verilator(work, ref, vl, VerilatorConfig(cflags=ctx.cfg.verilator_opt))
    rep["python_equals_unspecialised_graph"] = agrees
    _write(d, rep)
    nodes = {k: r for k, r in rep["nodes"].items() if r["op_type"].endswith("_rtl")}
    sim = [r for r in nodes.values() if r.get("simulated")]
    ctx.verification["qdev_verilator"] = {
        "exec_mode": "verilator",
        "images": rep["frames"],
        "verilator": rep["verilator"],
        "equal": bool(
            all(r["bit_exact"] for r in sim)
            and not any(r.get("simulated") is False for r in nodes.values())
            and agrees is not False
        ),
        "rtl_nodes_simulated": len(sim),
        "rtl_nodes_bit_exact": sum(r["bit_exact"] for r in sim),
        "rtl_nodes_not_simulated": {
            k: r["reason"] for k, r in nodes.items() if r.get("simulated") is None
        },
        "by_type": rep["by_type"],
        "report": "verilator/report.json",
    }
    if not ctx.verification["qdev_verilator"]["equal"]:
        raise QdevError(
            "Verilator differs from python execution "
            f"at {', '.join(_bad(nodes)[:8]) or 'the output'} "
            f"(see {d / 'report.json'})"
        )
    return model


def _fifo_plan(ctx: StepContext) -> list[dict]:
    """The FIFO depths qdev_fifo_depths chose (a one-line error where that step has not run)."""
    plan_file = ctx.out / "report" / "fifo_depths.json"
    if not plan_file.is_file():
        raise QdevError(
            f"--verify stitched needs the FIFO depths of step qdev_fifo_depths ({plan_file} is "
            "missing)"
        )
    return json.loads(plan_file.read_text())["fifos"]


def _stitched_record(rep: dict) -> dict:
    """The stitched run as the compile summary's verification entry."""
    return {
        "exec_mode": "stitched",
        "images": rep["frames"],
        "equal": bool(rep["bit_exact"]),
        "status": rep["status"],
        "summary": rep["summary"],
        "processes": rep["processes"],
        "channels": rep["channels_count"],
        "elements_differing": rep.get("elements_differing"),
        "run_s": rep["run_s"],
        "report": "stitched/report.json",
    }


def _log_every(seconds: float):  # noqa: ANN202
    """A progress callback that logs the co-simulation's output words at most every ``seconds``."""
    import logging
    import time

    log = logging.getLogger(__name__)
    last = [0.0]

    def progress(got: int, total: int) -> None:
        if time.monotonic() - last[0] > seconds:
            last[0] = time.monotonic()
            log.info("stitched co-simulation: %d of %d output words", got, total)

    return progress


def qdev_stitched(model: ModelWrapper, cfg, ctx: StepContext) -> ModelWrapper:  # noqa: ANN001
    """The whole accelerator at once (:mod:`.stitch`): every node of the graph FINN's FIFO step
    builds from this build's depths, each in its hardware language, connected by FIFOs of those
    depths; the golden frames back to back; bit-exact against the golden codes, no deadlock.
    Works on a copy: the build's graph is handed on unchanged."""
    import shutil

    from qdev.training.compile.cppsim import find_hls_deps
    from qdev.training.compile.stitch import (
        StitchConfig,
        build_processes,
        run_stitched,
        stitched_graph,
    )
    from qdev.training.compile.verilate import VerilatorConfig, find_verilator

    vl = find_verilator()  # before any work: missing tools are a one-line error
    deps = find_hls_deps(ctx.cfg.hls_deps)
    plan = _fifo_plan(ctx)
    d = ctx.out / "stitched"
    work = d / "work"
    shutil.rmtree(work, ignore_errors=True)
    pixels, codes, _ = _golden(ctx)
    fm = stitched_graph(model, plan, ctx.board.part)
    scfg = StitchConfig(keep=work)
    vcfg = VerilatorConfig(cflags=ctx.cfg.verilator_opt)
    part = ctx.board.part
    hls, rtl, facts = build_processes(fm, work, deps, vl, scfg, vcfg, ctx.cfg.clock, part)
    rep = run_stitched(fm, pixels, codes, hls, rtl, scfg, _log_every(10.0))
    rep["build"] = facts
    d.mkdir(exist_ok=True)
    _write(d, rep)
    if rep["bit_exact"]:
        shutil.rmtree(work, ignore_errors=True)  # kept (logs, words) only when something went wrong
    ctx.verification["qdev_stitched"] = _stitched_record(rep)
    if rep["status"] == "deadlock":
        raise QdevError(
            f"the stitched accelerator deadlocks at the chosen FIFO depths: {rep['summary']} "
            f"(see {d / 'report.json'})"
        )
    if not rep["bit_exact"]:
        raise QdevError(
            f"the stitched co-simulation {rep['status']}: output differs from the golden codes or "
            f"is incomplete (see {d / 'report.json'}, logs in {work})"
        )
    return model


SIM_STEPS = {
    "qdev_cppsim": qdev_cppsim,
    "qdev_verilator": qdev_verilator,
    "qdev_stitched": qdev_stitched,
}
