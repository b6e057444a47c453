"""qdev steps that need the build context: folding to a target within the board, the integer
model for the device, the bitstream (Vivado) step, and the compile summary."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from qdev.device.accel.intmodel import IntLayer, IntModel, run_reference
from qdev.device.errors import QdevError
from qdev.training.compile.boards import Board
from qdev.training.compile.config import CompileConfig
from qdev.training.compile.finn_env import VivadoInfo
from qdev.training.runs import RunFolder, atomic_writer

__all__ = ["StepContext", "StopBuild", "EXTRA_STEPS", "summarise", "extract_intmodel", "graph_parts",
           "verification_modes"]

log = logging.getLogger(__name__)

RES_KEYS = ("LUT", "BRAM_18K", "URAM", "DSP")


class StopBuild(Exception):
    """A step ends the build early on purpose (e.g. no Vivado for synthesis)."""


@dataclass
class StepContext:
    cfg: CompileConfig
    board: Board
    out: Path
    golden_in: np.ndarray
    golden_codes: np.ndarray
    out_scale: float
    vivado: VivadoInfo
    run: RunFolder
    folding: dict | None = None
    intmodel: dict | None = None
    bitstream: dict | None = None
    verification: dict = field(default_factory=dict)  # step name -> verify_model() result


def _ctx(cfg) -> StepContext:  # noqa: ANN001
    return cfg.qdev


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


def qdev_fold(model: ModelWrapper, cfg) -> ModelWrapper:  # noqa: ANN001
    """Fold for ``--fps`` with FINN's SetFolding; if the result exceeds the part's resources
    (times ``max_utilisation``), retry at 0.7x the frame rate until it fits."""
    from finn.transformation.fpgadataflow.set_folding import SetFolding

    ctx = _ctx(cfg)
    b, c = ctx.board, ctx.cfg
    clock_hz = 1e9 / c.clock
    target = c.target_fps
    cap = b.capacity
    tries = []
    while True:
        cycles = max(int(clock_hz / target), 1)
        folded = model.transform(SetFolding(cycles, mvau_wwidth_max=c.mvau_wwidth_max, two_pass_relaxation=True))
        tot = _totals(folded, b.part)
        fps = clock_hz / _max_cycles(folded)
        util = {k: (tot[k] / cap[k] if cap[k] else (0.0 if tot[k] == 0 else float("inf"))) for k in RES_KEYS}
        fits = all(u <= c.max_utilisation for u in util.values())
        tries.append({"target_fps": round(target, 2), "estimated_fps": round(fps, 2), "fits": fits,
                      "utilisation": {k: round(v, 4) for k, v in util.items()}})
        log.info("folding for %.1f fps: est %.1f fps, fits=%s %s", target, fps, fits, util)
        if fits:
            break
        target *= 0.7
        if target < 0.5:
            raise QdevError(f"{b.name}: the model does not fit the {b.part} even fully folded "
                            f"(utilisation {util}); use a smaller --width or another board")
    met = fps >= c.target_fps * 0.999
    ctx.folding = {"requested_fps": c.target_fps, "achieved_fps": round(fps, 2), "met": met, "tries": tries,
                   "message": None if met else (
                       f"{b.name}: --fps {c.target_fps:g} needs more than {c.max_utilisation:.0%} of the "
                       f"{b.part}; the best folding that fits reaches {fps:.1f} fps" if len(tries) > 1 else
                       f"{b.name}: --fps {c.target_fps:g} is beyond this model's fully parallel dataflow; "
                       f"the best folding that fits reaches {fps:.1f} fps")}
    if not met:
        log.warning(ctx.folding["message"])
    from finn.util.config import extract_model_config_to_json

    extract_model_config_to_json(folded, ctx.out / "report" / "auto_folding_config.json",
                                 ["PE", "SIMD", "parallel_window", "ram_style", "mem_mode", "resType"])
    return folded


def _strip(op: str) -> str:
    for suf in ("_hls", "_rtl"):
        if op.endswith(suf):
            return op[: -len(suf)]
    return op


_KEEP = {
    "FMPadding": ("Padding", "ImgDim", "NumChannels"),
    "FMPadding_Pixel": ("Stride", "ImgDim", "NumChannels"),
    "ConvolutionInputGenerator": ("ConvKernelDim", "Stride", "Dilation", "IFMDim", "OFMDim", "IFMChannels"),
    "MVAU": ("MW", "MH", "noActivation", "ActVal", "PE", "SIMD"),
    "Thresholding": ("NumChannels", "ActVal", "PE"),
    "Pool": ("Channels", "KernelSize", "Function"),
    "StreamingConcat": ("ChannelsPerStream",),
    "DuplicateStreams": ("NumOutputStreams", "NumChannels"),
}


def _int_thresholds(t: np.ndarray) -> np.ndarray:
    """Integer thresholds: for integer inputs x >= t  <=>  x >= ceil(t), so ceil is exact."""
    return np.ceil(np.asarray(t, dtype=np.float64)).astype(np.int64)


def extract_intmodel(model: ModelWrapper, out_scale: float, meta: dict) -> IntModel:
    """The integer model of a (specialised or not) FINN dataflow graph."""
    from onnx import helper

    layers = []
    for n in model.graph.node:
        op = _strip(n.op_type)
        if op not in _KEEP:
            raise QdevError(f"cannot describe {n.op_type} ({n.name}) in the integer model")
        raw = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        attrs = {}
        for k in _KEEP[op]:
            if k in raw:
                v = raw[k]
                attrs[k] = v.decode() if isinstance(v, bytes) else (list(v) if isinstance(v, (list, tuple)) else v)
        for k in ("inputDataType", "outputDataType", "weightDataType", "InputDataType", "OutputDataType"):
            if k in raw:
                attrs[k] = raw[k].decode() if isinstance(raw[k], bytes) else str(raw[k])
        attrs["out_dtype"] = str(model.get_tensor_datatype(n.output[0]).name)
        params = {}
        if op == "MVAU":
            w = model.get_initializer(n.input[1])
            params["weights"] = w.astype(np.int8 if np.abs(w).max() < 128 else np.int32)
            if not raw.get("noActivation", 0):
                params["thresholds"] = _int_thresholds(model.get_initializer(n.input[2]))
        if op == "Thresholding":
            params["thresholds"] = _int_thresholds(model.get_initializer(n.input[1]))
        data_inputs = [i for i in n.input if model.get_initializer(i) is None]
        layers.append(IntLayer(n.name, op, data_inputs, list(n.output), attrs, params))
    gi, go = model.graph.input[0], model.graph.output[0]
    return IntModel(
        input={"name": gi.name, "shape": model.get_tensor_shape(gi.name), "dtype": model.get_tensor_datatype(gi.name).name,
               "layout": "NHWC"},
        output={"name": go.name, "shape": model.get_tensor_shape(go.name), "dtype": model.get_tensor_datatype(go.name).name,
                "layout": "NHWC", "mask_rule": "code > 0"},
        output_scale=out_scale, layers=layers, meta=meta,
    )


def io_spec(model: ModelWrapper) -> dict:
    """Input/output shapes (normal, folded, packed) and data types as FINN's driver uses them.

    Packing rule (finn-plus-driver): the folded array's innermost dimension is packed into whole
    bytes, little-endian, element 0 in the lowest bits; the packed innermost size is
    ceil(fold * bits / 8).
    """
    from finn.util.basic import getHWCustomOp

    first, last = getHWCustomOp(model.graph.node[0]), getHWCustomOp(model.graph.node[-1])

    def packed(folded: list[int], bits: int) -> list[int]:
        return list(folded[:-1]) + [-(-folded[-1] * bits // 8)]

    idt, odt = first.get_input_datatype(0), last.get_output_datatype(0)
    ifold, ofold = list(first.get_folded_input_shape(0)), list(last.get_folded_output_shape(0))
    return {
        "idt": idt.name, "odt": odt.name,
        "ishape_normal": list(first.get_normal_input_shape(0)), "ishape_folded": ifold,
        "ishape_packed": packed(ifold, idt.bitwidth()),
        "oshape_normal": list(last.get_normal_output_shape(0)), "oshape_folded": ofold,
        "oshape_packed": packed(ofold, odt.bitwidth()),
        "packing": "innermost folded dim packed to whole bytes, little-endian, element 0 in the lowest bits",
        "layout": "NHWC",
    }


def qdev_integer_model(model: ModelWrapper, cfg) -> ModelWrapper:  # noqa: ANN001
    """Write ``intmodel/intmodel.npz`` and prove, on the golden batch, that its reference executor
    equals FINN's python execution of the HW-layer model and the QONNX model's codes."""
    ctx = _ctx(cfg)
    im = extract_intmodel(model, ctx.out_scale, {"board": ctx.board.name, "source": "compile/" + ctx.board.name})
    d = ctx.out / "intmodel"
    d.mkdir(exist_ok=True)
    path = d / "intmodel.npz"
    with atomic_writer(path) as fh:
        fh.write(im.to_bytes())
    loaded = IntModel.load(path)
    pixels = np.round(ctx.golden_in[:, 0] * 255.0).astype(np.uint8)
    ref = run_reference(loaded, pixels)
    eq_qonnx = bool(np.array_equal(ref.transpose(0, 3, 1, 2), ctx.golden_codes.astype(np.int64)))
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
    np.save(d / "golden_pixels.npy", pixels)
    np.save(d / "golden_codes_nhwc.npy", ref.astype(np.int16))
    ctx.intmodel = {"path": str(path.relative_to(ctx.out)), "bytes": path.stat().st_size, "layers": len(im.layers),
                    "equals_finn_python_exec": eq_finn, "equals_qonnx_codes": eq_qonnx, "io": io_spec(model)}
    if not (eq_finn and eq_qonnx):
        raise QdevError(f"integer model differs from FINN execution (finn={eq_finn}, qonnx={eq_qonnx})")
    return model


def qdev_bitstream(model: ModelWrapper, cfg) -> ModelWrapper:  # noqa: ANN001
    """Vivado present: FINN's IP generation, FIFO sizing, stitching and synthesis to .bit/.hwh, plus
    the PYNQ driver. Absent: stop here, keeping everything before it."""
    ctx = _ctx(cfg)
    if not ctx.vivado.available:
        ctx.bitstream = {"built": False, "reason": f"Vivado not found ({ctx.vivado.reason})"}
        raise StopBuild(
            f"bitstream not built: Vivado not found ({ctx.vivado.reason}); set XILINX_VIVADO or put "
            "vivado on PATH and rerun with --start-step qdev_bitstream. Everything before it is done and kept."
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

    cfg.shell_flow_type = ShellFlowType.VIVADO_ZYNQ  # pragma: no cover
    cfg.generate_outputs = [DataflowOutputType.STITCHED_IP, DataflowOutputType.BITFILE,  # pragma: no cover
                            DataflowOutputType.PYNQ_DRIVER]
    for step in (step_hw_codegen, step_hw_ipgen, step_set_fifo_depths, step_create_stitched_ip,  # pragma: no cover
                 step_synthesize_bitfile, step_make_driver):
        model = step(model, cfg)
    bit = sorted(Path(cfg.output_dir).glob("bitfile/*.bit"))  # pragma: no cover
    hwh = sorted(Path(cfg.output_dir).glob("bitfile/*.hwh"))  # pragma: no cover
    ctx.bitstream = {"built": bool(bit and hwh), "bit": [str(p) for p in bit], "hwh": [str(p) for p in hwh]}  # pragma: no cover
    return model  # pragma: no cover


EXTRA_STEPS = {"qdev_fold": qdev_fold, "qdev_integer_model": qdev_integer_model, "qdev_bitstream": qdev_bitstream}


def graph_parts(model: ModelWrapper) -> dict:
    """What of ``model`` runs on the fabric and what stays in software, read off the graph itself:
    HW layers are the nodes of FINN's fpgadataflow domain; the I/O conventions stripped off by
    ``qdev_strip_io`` are read from the metadata it leaves."""
    from qdev.training.compile.steps import META_INPUT, META_OUTPUT, META_OUTPUT_SCALE

    hw, sw = {}, []
    for n in model.graph.node:
        if n.domain.startswith("finn.custom_op.fpgadataflow"):
            hw[n.op_type] = hw.get(n.op_type, 0) + 1
        else:
            sw.append(f"{n.op_type} {n.name}")
    edges = []
    scale = model.get_metadata_prop(META_OUTPUT_SCALE)
    if scale is not None:
        edges.append(f"output scale x{float(scale):.6g} (a float multiply the mask does not need: code > 0)")
    if model.get_metadata_prop(META_INPUT) == "uint8_nhwc":
        edges.append("NCHW->NHWC input view (a no-op for 1 channel)")
    if model.get_metadata_prop(META_OUTPUT) == "int_codes_nhwc":
        edges.append("NHWC->NCHW output view (a no-op for 1 channel)")
    return {"all_hw": bool(hw) and not sw, "hw_layers": dict(sorted(hw.items())),
            "software_nodes": sw, "software_parts": edges}


def verification_modes(verification: dict, vivado: VivadoInfo) -> dict:
    """The execution modes that really checked a step of this build, and why the others did not."""
    ran = sorted({v.get("exec_mode", "python") for v in verification.values()})
    reasons = {"cppsim": "not requested (needs the HLS headers: see qdev compile --help)",
               "rtlsim": "needs Vivado xsim (not installed)" if not vivado.available else "not requested"}
    return {"modes_run": ran, "not_run": {k: r for k, r in reasons.items() if k not in ran}, "steps": verification}


def summarise(ctx: StepContext, model: ModelWrapper, times: dict, verification: dict, status: str,
              stopped: str | None) -> dict:
    """Per-layer and total estimates vs the part, bottleneck, expected FPS/latency, and what ran,
    all derived from the reports, the final graph and the verifications the build executed."""
    rep = ctx.out / "report"

    def load(name: str) -> dict:
        p = rep / name
        return json.loads(p.read_text()) if p.is_file() else {}

    res, cyc, perf = load("estimate_layer_resources.json"), load("estimate_layer_cycles.json"), load(
        "estimate_network_performance.json")
    cap = ctx.board.capacity
    total = res.get("total", {})
    layers = [{"layer": k, "cycles": int(cyc.get(k, 0)), **{r: float(v.get(r, 0)) for r in RES_KEYS}}
              for k, v in res.items() if k != "total"]
    bottleneck = max(cyc, key=cyc.get) if cyc else None
    clock_mhz = 1e3 / ctx.cfg.clock
    return {
        "board": ctx.board.name, "part": ctx.board.part, "clock_ns": ctx.cfg.clock, "clock_mhz": clock_mhz,
        "status": status, "stopped": stopped,
        "resources": {r: {"used": float(total.get(r, 0)), "available": cap[r],
                          "utilisation": (float(total.get(r, 0)) / cap[r]) if cap[r] else None} for r in RES_KEYS},
        "layers": layers,
        "bottleneck": {"layer": bottleneck, "cycles": int(cyc[bottleneck])} if bottleneck else None,
        "estimated_fps": perf.get("estimated_throughput_fps"),
        "estimated_latency_ms": (perf.get("estimated_latency_ns") or 0) / 1e6 if perf else None,
        "folding": ctx.folding,
        "verification": verification_modes(verification, ctx.vivado),
        "intmodel": ctx.intmodel,
        "bitstream": ctx.bitstream,
        "time_per_step_s": times,
        "compile_seconds": round(sum(times.values()), 2),
        **graph_parts(model),
    }
