"""The compile runner: FINN builder semantics (steps as data, start/stop at a named step,
``intermediate_models/<step>.onnx``, ``time_per_step.json``, ``report/*.json``) over qdev's steps
and finn-plus's own, verifying bit-exactness against the QONNX golden output along the way."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from qdev.device.errors import ConfigError, QdevError, ToolchainError
from qdev.training.compile.config import VERIFY_AFTER, CompileConfig
from qdev.training.compile.finn_env import boot_finn
from qdev.training.runs import RunFolder, atomic_write_text, sha256_file

__all__ = ["compile_run", "CompileResult", "verify_model"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]


class CompileResult(dict):
    """The compile summary (also written to ``compile/<board>/summary.json``)."""


def _finn_cfg(cfg: CompileConfig, out: Path, golden_dir: Path):  # noqa: ANN202
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
        verify_input_npy=str(golden_dir / "golden_in.npy"),
        verify_expected_output_npy=str(golden_dir / "golden_out.npy"),
    )


def verify_model(model_path: Path, golden_in: np.ndarray, golden_codes: np.ndarray, out_scale: float) -> dict:
    """Run a FINN/QONNX model with FINN's python execution on the golden batch and compare its
    integer output codes with the QONNX model's. Input/output conventions come from metadata."""
    from qonnx.core.modelwrapper import ModelWrapper

    from qdev.training.compile.steps import META_INPUT, META_OUTPUT
    from qdev.training.qonnx_exec import qonnx_forward

    m = ModelWrapper(str(model_path))
    kind_in = m.get_metadata_prop(META_INPUT) or "float01"
    x = golden_in if kind_in == "float01" else np.round(golden_in * 255.0).astype(np.float32)
    if kind_in == "uint8_nhwc":
        x = x.transpose(0, 2, 3, 1)
    y = qonnx_forward(m, x)
    if m.get_metadata_prop(META_OUTPUT) == "int_codes_nhwc":
        codes = y.transpose(0, 3, 1, 2)
    else:
        codes = y / out_scale
    codes = np.round(codes).astype(np.int32)
    equal = bool(np.array_equal(codes, golden_codes.astype(np.int32)))
    return {"exec_mode": "python", "images": int(len(x)), "equal": equal,
            "codes_differing": int((codes != golden_codes).sum())}


def compile_run(run_dir: Path, cfg: CompileConfig, progress: ProgressFn | None = None) -> CompileResult:  # noqa: C901
    """Compile a run's exported QONNX model for ``cfg.board``; see module doc."""
    from qonnx.core.modelwrapper import ModelWrapper

    run = RunFolder.existing(run_dir)
    board = cfg.board_info
    onnx_path = run.verified("export", "export/model.qonnx.onnx")
    golden_in = np.load(run.verified("export", "export/golden_in.npy"))
    golden_codes = np.load(run.verified("export", "export/golden_codes.npy"))
    export_report = json.loads(run.verified("export", "export/verify.json").read_text())
    out_scale = float(export_report["output_scale"])
    out = run.path / "compile" / board.name
    inter = out / "intermediate_models"
    report = out / "report"
    for d in (inter, report):
        d.mkdir(parents=True, exist_ok=True)
    viv = boot_finn(out / "finn_build")
    from finn.builder.build_dataflow_steps import build_dataflow_step_lookup

    from qdev.training.compile import stepsx
    from qdev.training.compile.steps import CUSTOM_STEPS

    lookup: dict[str, Callable] = {**build_dataflow_step_lookup, **CUSTOM_STEPS, **stepsx.EXTRA_STEPS}
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
    if i0 > 0:
        prev = inter / f"{steps[i0 - 1]}.onnx"
        if not prev.is_file():
            raise QdevError(f"cannot start at {steps[i0]}: {prev} (the previous step's model) is missing")
        model = ModelWrapper(str(prev))
    else:
        model = ModelWrapper(str(onnx_path))
    fcfg = _finn_cfg(cfg, out, run.path / "export")
    ctx = stepsx.StepContext(cfg=cfg, board=board, out=out, golden_in=golden_in, golden_codes=golden_codes,
                             out_scale=out_scale, vivado=viv, run=run)
    fcfg.qdev = ctx  # custom steps find the qdev context on the FINN config
    times_path = out / "time_per_step.json"
    times: dict[str, float] = json.loads(times_path.read_text()) if times_path.is_file() and i0 > 0 else {}
    verification = ctx.verification  # shared with the steps: qdev_integer_model reads it
    vpath = report / "verification.json"
    if vpath.is_file() and i0 > 0:
        verification.update(json.loads(vpath.read_text()))
    t_stage = run.begin(f"compile/{board.name}", cfg.to_dict(), {"export/model.qonnx.onnx": sha256_file(onnx_path)})
    status = "done"
    stopped_reason = None
    try:
        for k in range(i0, i1):
            name = steps[k]
            if progress:
                progress(name, k - i0, i1 - i0)
            t0 = time.perf_counter()
            try:
                model = lookup[name](model, fcfg)
            except stepsx.StopBuild as stop:
                times[name] = round(time.perf_counter() - t0, 3)
                status, stopped_reason = "stopped", str(stop)
                break
            except QdevError:
                raise
            except Exception as exc:  # a FINN pass failing is a toolchain error with context
                raise ToolchainError(f"build step {name} failed: {type(exc).__name__}: {exc}") from exc
            times[name] = round(time.perf_counter() - t0, 3)
            model.save(str(inter / f"{name}.onnx"))
            if name in VERIFY_AFTER:
                verification[name] = verify_model(inter / f"{name}.onnx", golden_in, golden_codes, out_scale)
                if not verification[name]["equal"]:
                    raise QdevError(f"after {name}: FINN python execution differs from the QONNX model "
                                    f"in {verification[name]['codes_differing']} output codes")
            atomic_write_text(times_path, json.dumps(times, indent=1) + "\n")
            atomic_write_text(vpath, json.dumps(verification, indent=1) + "\n")
        if progress:
            progress("done", i1 - i0, i1 - i0)
    finally:
        atomic_write_text(times_path, json.dumps(times, indent=1) + "\n")
        atomic_write_text(vpath, json.dumps(verification, indent=1) + "\n")
    summary = stepsx.summarise(ctx, model, times, verification, status, stopped_reason)
    spath = out / "summary.json"
    if i0 > 0 and spath.is_file():  # a partial build keeps what earlier steps established
        old = json.loads(spath.read_text())
        for key in ("intmodel", "bitstream", "folding"):
            if summary.get(key) is None and old.get(key) is not None:
                summary[key] = old[key]
    atomic_write_text(spath, json.dumps(summary, indent=1) + "\n")
    outputs = [spath, times_path, vpath, *sorted(report.glob("*.json")), *sorted(out.glob("intmodel/*"))]
    run.finish(f"compile/{board.name}", t_stage, outputs, status=status)
    return CompileResult(summary)


