"""The compile runner: FINN builder semantics (steps as data, start/stop at a named step,
``intermediate_models/<step>.onnx``, ``time_per_step.json``, ``report/*.json``) over qdev's steps
and finn-plus's own, verifying bit-exactness against the QONNX golden output along the way."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qdev.core.errors import ConfigError, QdevError, ToolchainError
from qdev.core.golden import CODES, PIXELS, GoldenBatch, from_legacy_export, load_golden
from qdev.training.compile.config import CompileConfig
from qdev.training.compile.context import StepContext
from qdev.training.compile.finn_env import boot_finn
from qdev.training.runs import RunFolder, atomic_write_text
from qdev.training.stages import StageRecord

__all__ = ["compile_run", "CompileResult", "verify_model", "export_golden"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]


class CompileResult(dict):
    """The compile summary (also written to ``compile/<board>/summary.json``)."""


def _finn_cfg(cfg: CompileConfig, out: Path):  # noqa: ANN202
    from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType

    b = cfg.board_info
    return DataflowBuildConfig(
        output_dir=str(out),
        synth_clk_period_ns=cfg.clock,
        board=b.finn_board,
        fpga_part=b.part,
        generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS],
        standalone_thresholds=cfg.standalone_thresholds,
        mvau_wwidth_max=cfg.mvau_wwidth_max,
        save_intermediate_models=True,
    )


#: a graph's input convention (its metadata) -> the golden frames in that form
GRAPH_INPUTS = {
    "float01": GoldenBatch.float_nchw,  # the exported graph: pixels / 255, NCHW
    "uint8_nchw": lambda g: g.pixels[:, None].astype(np.float32),  # after qdev_pixel_input
    "uint8_nhwc": lambda g: g.pixels[..., None].astype(np.float32),  # after qdev_strip_io
}


def verify_model(model_path: Path, golden: GoldenBatch, out_scale: float) -> dict:
    """Run a FINN/QONNX model with FINN's python execution on the golden frames and compare its
    integer output codes with the golden codes. The graph's input and output conventions come
    from its metadata: its output is brought to the golden layout (NHWC codes), never the
        reverse."""
    from qonnx.core.modelwrapper import ModelWrapper

    from qdev.training.compile.graph_steps import META_INPUT, META_OUTPUT
    from qdev.training.qonnx_exec import qonnx_forward

    m = ModelWrapper(str(model_path))
    kind_in = m.get_metadata_prop(META_INPUT) or "float01"
    if kind_in not in GRAPH_INPUTS:
        raise QdevError(f"{model_path.name}: unknown input convention {kind_in!r}")
    x = GRAPH_INPUTS[kind_in](golden)
    y = qonnx_forward(m, x)
    if m.get_metadata_prop(META_OUTPUT) != "int_codes_nhwc":  # scaled float logits, NCHW
        y = (y / out_scale).transpose(0, 2, 3, 1)
    codes = np.round(y).astype(np.int32)
    equal = bool(np.array_equal(codes, golden.codes))
    return {
        "exec_mode": "python",
        "images": len(golden),
        "equal": equal,
        "codes_differing": int((codes != golden.codes).sum())
        if codes.shape == golden.codes.shape
        else int(golden.codes.size),
    }


@dataclass
class _Inputs:
    """What the export stage handed on to the compile (all sha256-verified by the run folder)."""

    onnx: Path
    golden: GoldenBatch
    out_scale: float


def export_golden(run: RunFolder, read: Callable[[str], Path] | None = None) -> GoldenBatch:
    """The run's golden batch as export wrote it, each file checked against its recorded hash by
    ``read`` (default: the run folder's check; the compile passes its stage record's, so that each
    file is read once); a run exported before the one layout is converted by
    :func:`qdev.core.golden.from_legacy_export`."""
    read = read or (lambda rel: run.verified("export", rel))
    if f"export/{PIXELS}" in run.stage("export")["outputs"]:
        return load_golden(read(f"export/{PIXELS}"), read(f"export/{CODES}"))
    return from_legacy_export(
        np.load(read("export/golden_in.npy"), allow_pickle=False),
        np.load(read("export/golden_codes.npy"), allow_pickle=False),
    )


def _load_inputs(rec: StageRecord) -> _Inputs:
    export_report = json.loads(rec.input("export/verify.json").read_text())
    return _Inputs(
        rec.input("export/model.qonnx.onnx"),
        export_golden(rec.run, rec.input),
        float(export_report["output_scale"]),
    )


def _step_range(cfg: CompileConfig, lookup: dict[str, Callable]) -> tuple[list[str], int, int]:
    """The build's steps and the [start, stop) indices of ``--start-step`` / ``--stop-step``."""
    unknown = [s for s in cfg.steps if s not in lookup]
    if unknown:
        raise ConfigError(f"unknown build step(s): {', '.join(unknown)}")
    steps = list(cfg.steps)
    for name, s in (("--start-step", cfg.start_step), ("--stop-step", cfg.stop_step)):
        if s is not None and s not in steps:
            raise ConfigError(f"{name} {s!r} is not a step of this build ({', '.join(steps)})")
    i0 = steps.index(cfg.start_step) if cfg.start_step else 0
    i1 = steps.index(cfg.stop_step) + 1 if cfg.stop_step else len(steps)
    if i1 <= i0:
        raise ConfigError(f"--stop-step {cfg.stop_step} comes before --start-step {cfg.start_step}")
    return steps, i0, i1


def _first_model(steps: list[str], i0: int, inter: Path, onnx: Path):  # noqa: ANN202
    from qonnx.core.modelwrapper import ModelWrapper

    if i0 == 0:
        return ModelWrapper(str(onnx))
    prev = inter / f"{steps[i0 - 1]}.onnx"
    if not prev.is_file():
        raise QdevError(
            f"cannot start at {steps[i0]}: {prev} (the previous step's model) is missing"
        )
    return ModelWrapper(str(prev))


def _resumed_json(path: Path, resuming: bool) -> dict:
    """A record of earlier steps (times, verifications): kept when the build starts mid-way."""
    return json.loads(path.read_text()) if resuming and path.is_file() else {}


def _run_steps(
    model,
    steps: list[str],
    i0: int,
    i1: int,
    lookup: dict[str, Callable],
    fcfg,  # noqa: ANN001, ANN202
    ctx: StepContext,
    inputs: _Inputs,
    times: dict,
    progress: ProgressFn | None,
):
    """Run steps[i0:i1]; after each, save its model, verify it where ``cfg.verify_after`` says, and
    persist times and verifications (so a failed build keeps what it established).
    Returns (model, status, stopped_reason)."""
    from qdev.training.compile.context import StopBuild

    out, verification = ctx.out, ctx.verification
    inter = out / "intermediate_models"
    times_path, vpath = out / "time_per_step.json", out / "report" / "verification.json"
    status, stopped = "done", None
    for k in range(i0, i1):
        name = steps[k]
        if progress:
            progress(name, k - i0, i1 - i0)
        t0 = time.perf_counter()
        try:
            model = lookup[name](model, fcfg, ctx)
        except StopBuild as stop:
            status, stopped = "stopped", str(stop)
        except QdevError:
            raise
        except Exception as exc:  # a FINN pass failing is a toolchain error with context
            raise ToolchainError(f"build step {name} failed: {type(exc).__name__}: {exc}") from exc
        times[name] = round(time.perf_counter() - t0, 3)
        if status == "done":
            model.save(str(inter / f"{name}.onnx"))
            if name in ctx.cfg.verify_after:
                verification[name] = verify_model(
                    inter / f"{name}.onnx", inputs.golden, inputs.out_scale
                )
        atomic_write_text(times_path, json.dumps(times, indent=1) + "\n")
        atomic_write_text(vpath, json.dumps(verification, indent=1) + "\n")
        if status != "done":
            break
        if name in verification and not verification[name]["equal"]:
            raise QdevError(
                f"after {name}: FINN python execution differs from the QONNX model "
                f"in {verification[name]['codes_differing']} output codes"
            )
    if progress:
        progress("done", i1 - i0, i1 - i0)
    return model, status, stopped


def compile_run(
    run_dir: Path, cfg: CompileConfig, progress: ProgressFn | None = None
) -> CompileResult:
    """Compile a run's exported QONNX model for ``cfg.board``; see module doc."""
    from qdev.training.compile.registry import step_lookup
    from qdev.training.compile.summary import summarise

    run = RunFolder.existing(run_dir)
    board = cfg.board_info
    rec = StageRecord(run, "compile", cfg.to_dict(), board=board.name)
    inputs = _load_inputs(rec)
    out = run.path / "compile" / board.name
    for d in (out / "intermediate_models", out / "report"):
        d.mkdir(parents=True, exist_ok=True)
    viv = boot_finn(out / "finn_build")
    lookup = step_lookup()
    steps, i0, i1 = _step_range(cfg, lookup)
    model = _first_model(steps, i0, out / "intermediate_models", inputs.onnx)
    fcfg = _finn_cfg(cfg, out)
    ctx = StepContext(
        cfg=cfg,
        board=board,
        out=out,
        golden=inputs.golden,
        out_scale=inputs.out_scale,
        vivado=viv,
        run=run,
    )
    times = _resumed_json(out / "time_per_step.json", i0 > 0)
    verification = ctx.verification  # shared with the steps: qdev_integer_model reads it
    verification.update(_resumed_json(out / "report" / "verification.json", i0 > 0))
    rec.begin()
    model, status, stopped = _run_steps(
        model, steps, i0, i1, lookup, fcfg, ctx, inputs, times, progress
    )
    summary = summarise(ctx, model, times, verification, status, stopped)
    spath = out / "summary.json"
    if i0 > 0:  # a partial build keeps what earlier steps established
        old = _resumed_json(spath, True)
        for key in ("intmodel", "bitstream", "folding", "fifos", "resources_with_fifos"):
            if summary.get(key) is None and old.get(key) is not None:
                summary[key] = old[key]
    atomic_write_text(spath, json.dumps(summary, indent=1) + "\n")
    rec.finish(status=status)
    return CompileResult(summary)
