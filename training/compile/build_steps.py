"""qdev's build steps that need the build context: folding to a target rate within the board
(``qdev_fold``), the device's integer model proven equal to FINN (``qdev_integer_model``), the
simulations of the hardware's own code (:mod:`.sim_steps`) and the bitstream with Vivado
(``qdev_bitstream``). Registered in :mod:`.registry`."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from qdev.core.intmodel import IntModel, run_reference
from qdev.core.errors import QdevError
from qdev.core.golden import save_golden
from qdev.training.compile.context import StepContext, StopBuild
from qdev.training.compile.intmodel_export import extract_intmodel, io_spec
from qdev.training.compile.sim_steps import SIM_STEPS
from qdev.training.compile.summary import RES_KEYS
from qdev.training.runs import atomic_writer

__all__ = ["qdev_fold", "qdev_fifo_depths", "qdev_integer_model", "qdev_bitstream", "BUILD_STEPS"]

log = logging.getLogger(__name__)


def _totals(model: ModelWrapper, part: str) -> dict[str, float]:
    from finn.analysis.fpgadataflow.res_estimation import res_estimation

    per_layer = model.analysis(partial(res_estimation, fpgapart=part))
    tot = {k: 0.0 for k in RES_KEYS}
    for v in per_layer.values():
        for k in RES_KEYS:
            tot[k] += float(v.get(k, 0))
    return tot


def _max_cycles(model: ModelWrapper) -> int:
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer

    return int(max(model.analysis(exp_cycles_per_layer).values()))


def _binding_limit(model: ModelWrapper, wwidth_max: int) -> str:
    """Why the bottleneck layer cannot go faster: the MVAU weight-stream cap, full parallelism,
    or (other layers) FINN's folding search."""
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from qonnx.core.datatype import DataType
    from qonnx.custom_op.registry import getCustomOp

    cyc = model.analysis(exp_cycles_per_layer)
    name = max(cyc, key=cyc.get)
    node = model.get_node_from_name(name)
    inst = getCustomOp(node)
    if node.op_type.startswith("MVAU"):
        simd, pe = inst.get_nodeattr("SIMD"), inst.get_nodeattr("PE")
        mw, mh = inst.get_nodeattr("MW"), inst.get_nodeattr("MH")
        wbits = DataType[inst.get_nodeattr("weightDataType")].bitwidth()
        if simd == mw and pe == mh:
            return f"{name} is fully parallel (SIMD {simd} = MW, PE {pe} = MH)"
        nxt = next((d for d in range(simd + 1, mw + 1) if mw % d == 0), None)
        if nxt is not None and nxt * pe * wbits > wwidth_max:
            return (
                f"{name} (SIMD {simd}, PE {pe}, {wbits}-bit weights) is held by the weight-stream "
                "cap "
                f"mvau_wwidth_max = {wwidth_max} bits: its next SIMD ({nxt}) "
                f"needs {nxt * pe * wbits}; "
                "raise --mvau-wwidth-max"
            )
        return f"{name} (SIMD {simd}/{mw}, PE {pe}/{mh}) is where FINN's folding search stopped"
    return f"{name} ({node.op_type}) is where FINN's folding search stopped"


def _try_folding(model: ModelWrapper, cfg, ctx: StepContext, target: float) -> tuple:  # noqa: ANN001
    """Fold for ``target`` frames/s and estimate it as the later steps will build it: bit widths
    minimised, FIFOs and FINN's width converters added (the estimate of the folding alone missed
    both). Returns (folded model, its frames/s, utilisation per resource, the try's record)."""
    from copy import deepcopy

    from finn.builder.build_dataflow_steps import step_minimize_bit_width
    from finn.transformation.fpgadataflow.set_folding import SetFolding

    from qdev.training.compile.fifo_step import fifo_added

    b, c = ctx.board, ctx.cfg
    clock_hz = 1e9 / c.clock
    cap = b.capacity
    cycles = max(int(clock_hz / target), 1)
    folded = model.transform(
        SetFolding(cycles, mvau_wwidth_max=c.mvau_wwidth_max, two_pass_relaxation=True)
    )
    built = step_minimize_bit_width(ModelWrapper(deepcopy(folded.model)), cfg)
    layers = _totals(built, b.part)
    fifo = fifo_added(built, b, layers)
    tot = {k: layers[k] + fifo.get(k, 0.0) for k in RES_KEYS}
    fps = clock_hz / _max_cycles(folded)
    util = {
        k: (tot[k] / cap[k] if cap[k] else (0.0 if tot[k] == 0 else float("inf"))) for k in RES_KEYS
    }
    record = {
        "target_fps": round(target, 2),
        "estimated_fps": round(fps, 2),
        "fits": all(u <= c.max_utilisation for u in util.values()),
        "utilisation": {k: round(v, 4) for k, v in util.items()},
        "utilisation_layers_only": {
            k: round(layers[k] / cap[k], 4) if cap[k] else 0.0 for k in RES_KEYS
        },
    }
    return folded, fps, util, record


def _folding_record(folded: ModelWrapper, fps: float, tries: list[dict], ctx: StepContext) -> dict:
    """What the folding reached against ``--fps``, what limited it, and the message if not met."""
    b, c = ctx.board, ctx.cfg
    met = fps >= c.target_fps * 0.999
    first = tries[0]["utilisation"]
    if len(tries) == 1:
        limit = _binding_limit(folded, c.mvau_wwidth_max)
        message = (
            f"{b.name}: --fps {c.target_fps:g} is out of reach: {limit}; "
            f"the best folding that fits reaches {fps:.1f} fps"
        )
    else:
        limit = (
            f"the board's resources: the folding for --fps {c.target_fps:g} needs "
            + ", ".join(f"{k} {v:.0%}" for k, v in first.items() if v > c.max_utilisation)
            + f" (over {c.max_utilisation:.0%}, FIFOs included)"
        )
        message = (
            f"{b.name}: --fps {c.target_fps:g} needs more than {c.max_utilisation:.0%} of the "
            f"{b.part} (FIFOs included); the best folding that fits reaches {fps:.1f} fps"
        )
    return {
        "requested_fps": c.target_fps,
        "achieved_fps": round(fps, 2),
        "met": met,
        "tries": tries,
        "binding_limit": limit,
        "message": None if met else message,
    }


def qdev_fold(model: ModelWrapper, cfg, ctx: StepContext) -> ModelWrapper:  # noqa: ANN001
    """Fold for ``--fps`` with FINN's SetFolding; if the result, **with the FIFOs its streams need**
    (:func:`.fifo_step.fifo_plan`), exceeds the part's resources (times ``max_utilisation``), retry
    at 0.7x the frame rate until it fits."""
    from finn.util.config import extract_model_config_to_json

    b = ctx.board
    target = ctx.cfg.target_fps
    tries = []
    while True:
        folded, fps, util, record = _try_folding(model, cfg, ctx, target)
        tries.append(record)
        log.info(
            "folding for %.1f fps: est %.1f fps, fits=%s %s", target, fps, record["fits"], util
        )
        if record["fits"]:
            break
        target *= 0.7
        if target < 0.5:
            raise QdevError(
                f"{b.name}: the model does not fit the {b.part} even fully folded "
                f"(utilisation with FIFOs {util}); use a smaller --width or another board"
            )
    ctx.folding = _folding_record(folded, fps, tries, ctx)
    if not ctx.folding["met"]:
        log.warning(ctx.folding["message"])
    extract_model_config_to_json(
        folded,
        ctx.out / "report" / "auto_folding_config.json",
        ["PE", "SIMD", "parallel_window", "ram_style", "mem_mode", "resType"],
    )
    return folded


#: what the compile summary keeps of each skip FIFO's plan
_SKIP_KEYS = (
    "stream",
    "producer",
    "consumer",
    "must_pixels",
    "depth_pixels",
    "words_per_pixel",
    "depth",
    "width_bits",
    "bits",
    "ram_style",
    "LUT",
    "BRAM_18K",
    "URAM",
)


def qdev_fifo_depths(model: ModelWrapper, cfg, ctx: StepContext) -> ModelWrapper:  # noqa: ANN001
    """Every stream's FIFO depth from the token model (:mod:`.fifo_step`), written into the graph
    for FINN's InsertFIFO and as ``report/fifo_config.json`` for the bitstream flow; the graph FINN
    will build from it estimated with FINN's own cost model; the whole dataflow simulated at
    those depths over two frames back to back (it must complete)."""
    from qdev.training.compile.fifo_step import (
        apply_fifo_depths,
        check_plan,
        dataflow_graph,
        fifo_plan,
        fifo_totals,
        finn_fifo_model,
        finn_fifo_resources,
        write_reports,
    )

    b = ctx.board
    layers = _totals(model, b.part)
    g = dataflow_graph(model)
    plan = fifo_plan(model, b, layers, g=g)
    model = apply_fifo_depths(model, plan)
    fm, fifo_cfg = finn_fifo_model(model, plan, b.part)
    finn_cost = finn_fifo_resources(fm, b.part)
    sim = check_plan(g, plan)
    write_reports(ctx.out, plan, sim, fifo_cfg)
    added = {k: finn_cost["fifo"][k] + finn_cost["dwc"][k] for k in RES_KEYS}
    cap = b.capacity
    util = {k: ((layers[k] + added[k]) / cap[k]) if cap[k] else 0.0 for k in RES_KEYS}
    ctx.fifos = {
        "count": finn_cost["fifos"],
        "dwcs": finn_cost["dwcs"],
        "skips": [{k: f[k] for k in _SKIP_KEYS} for f in plan if f["role"] == "skip"],
        "plan_totals": fifo_totals(plan),
        "finn_estimate": finn_cost,
        "added": added,
        "layers_only": layers,
        "with_fifos": {k: layers[k] + added[k] for k in RES_KEYS},
        "utilisation_with_fifos": {k: round(v, 4) for k, v in util.items()},
        "fits": all(v <= ctx.cfg.max_utilisation for v in util.values()),
        "simulation": sim,
        "config_file": "report/fifo_config.json",
    }
    if not sim["completed"]:
        raise QdevError(
            f"the stitched dataflow deadlocks at the computed FIFO depths: {sim['summary']}"
        )
    if not ctx.fifos["fits"]:
        log.warning(
            "%s: with its FIFOs the accelerator exceeds %.0f%% of the part: %s",
            b.name,
            100 * ctx.cfg.max_utilisation,
            util,
        )
    return model


def qdev_integer_model(model: ModelWrapper, cfg, ctx: StepContext) -> ModelWrapper:  # noqa: ANN001
    """Write ``intmodel/intmodel.npz`` and prove, on the golden batch, that its reference executor
    equals FINN's python execution of the HW-layer model and the QONNX model's codes."""
    im = extract_intmodel(
        model, ctx.out_scale, {"board": ctx.board.name, "source": "compile/" + ctx.board.name}
    )
    d = ctx.out / "intmodel"
    d.mkdir(exist_ok=True)
    path = d / "intmodel.npz"
    with atomic_writer(path) as fh:
        fh.write(im.to_bytes())
    loaded = IntModel.load(path)
    pixels = ctx.golden.pixels
    ref = run_reference(loaded, pixels)
    eq_qonnx = bool(np.array_equal(ref, ctx.golden.codes))
    hw = ctx.verification.get("qdev_convert_to_hw")
    if hw is not None and hw["equal"]:
        # the build already ran FINN's python execution of the HW-layer model on these pixels and
        # found the golden codes; equality of integer arrays is transitive
        eq_finn = eq_qonnx
    else:
        from qdev.training.qonnx_exec import qonnx_forward

        hw_model = ctx.out / "intermediate_models" / "qdev_convert_to_hw.onnx"
        finn_out = qonnx_forward(hw_model, pixels[..., None].astype(np.float32))
        eq_finn = bool(np.array_equal(ref, np.round(finn_out).astype(np.int64)))
    save_golden(d, ctx.golden)  # unchanged, beside the integer model (the bundle copies them as is)
    ctx.intmodel = {
        "path": str(path.relative_to(ctx.out)),
        "bytes": path.stat().st_size,
        "layers": len(im.layers),
        "equals_finn_python_exec": eq_finn,
        "equals_qonnx_codes": eq_qonnx,
        "io": io_spec(model),
    }
    if not (eq_finn and eq_qonnx):
        raise QdevError(
            f"integer model differs from FINN execution (finn={eq_finn}, qonnx={eq_qonnx})"
        )
    return model


def use_qdev_fifo_depths(cfg, out: Path) -> None:  # noqa: ANN001 - FINN's DataflowBuildConfig
    """Point FINN's ``step_set_fifo_depths`` at qdev's depths: ``auto_fifo_depths=False`` with
    ``report/fifo_config.json`` (written by ``qdev_fifo_depths``), so no simulation-based sizing
    runs and no design with FINN's default depths (which deadlocks on the U-Net's skips) is
    built."""
    path = out / "report" / "fifo_config.json"
    if not path.is_file():
        raise QdevError(
            f"{path}: missing; run the build from qdev_fifo_depths (--start-step qdev_fifo_depths)"
        )
    cfg.auto_fifo_depths = False
    cfg.fifo_config_file = path


def qdev_bitstream(model: ModelWrapper, cfg, ctx: StepContext) -> ModelWrapper:  # noqa: ANN001
    """Vivado present: FINN's IP generation, FIFO sizing, stitching and synthesis to .bit/.hwh, plus
    the PYNQ driver. Absent: stop here, keeping everything before it."""
    if not ctx.vivado.available:
        ctx.bitstream = {"built": False, "reason": f"Vivado not found ({ctx.vivado.reason})"}
        raise StopBuild(
            f"bitstream not built: Vivado not found ({ctx.vivado.reason}); set XILINX_VIVADO or "
            "put "
            "vivado on PATH and rerun with --start-step qdev_bitstream. Everything before it is "
            "done and kept."
        )
    from finn.builder.build_dataflow_config import DataflowOutputType, ShellFlowType
    from finn.builder.build_dataflow_steps import (  # pragma: no cover - needs Vivado
        step_create_stitched_ip,
        step_hw_codegen,
        step_hw_ipgen,
        step_make_driver,
        step_set_fifo_depths,
        step_synthesize_bitfile,
    )

    use_qdev_fifo_depths(cfg, ctx.out)
    cfg.shell_flow_type = ShellFlowType.VIVADO_ZYNQ  # pragma: no cover
    cfg.generate_outputs = [
        DataflowOutputType.STITCHED_IP,
        DataflowOutputType.BITFILE,  # pragma: no cover
        DataflowOutputType.PYNQ_DRIVER,
    ]
    for step in (
        step_hw_codegen,
        step_hw_ipgen,
        step_set_fifo_depths,
        step_create_stitched_ip,  # pragma: no cover
        step_synthesize_bitfile,
        step_make_driver,
    ):
        model = step(model, cfg)
    bit = sorted(Path(cfg.output_dir).glob("bitfile/*.bit"))  # pragma: no cover
    hwh = sorted(Path(cfg.output_dir).glob("bitfile/*.hwh"))  # pragma: no cover
    ctx.bitstream = {
        "built": bool(bit and hwh),
        "bit": [str(p) for p in bit],
        "hwh": [str(p) for p in hwh],
    }  # pragma: no cover
    return model  # pragma: no cover


BUILD_STEPS = {
    "qdev_fold": qdev_fold,
    "qdev_fifo_depths": qdev_fifo_depths,
    "qdev_integer_model": qdev_integer_model,
    **SIM_STEPS,
    "qdev_bitstream": qdev_bitstream,
}
