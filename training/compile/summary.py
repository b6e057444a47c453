"""The compile summary (``compile/<board>/summary.json``), derived from what the build produced:
FINN's estimate reports, the final graph (what is HW, what stays in software) and the
verifications the build's steps executed."""

from __future__ import annotations

import json
from pathlib import Path

from qonnx.core.modelwrapper import ModelWrapper

from qdev.training.compile.context import StepContext
from qdev.training.compile.finn_env import VivadoInfo

__all__ = ["summarise", "graph_parts", "verification_modes", "layer_verification", "RES_KEYS"]

RES_KEYS = ("LUT", "BRAM_18K", "URAM", "DSP")


def graph_parts(model: ModelWrapper) -> dict:
    """What of ``model`` runs on the fabric and what stays in software, read off the graph itself:
    HW layers are the nodes of FINN's fpgadataflow domain; the I/O conventions stripped off by
    ``qdev_strip_io`` are read from the metadata it leaves."""
    from qdev.training.compile.graph_steps import META_INPUT, META_OUTPUT, META_OUTPUT_SCALE

    hw, sw = {}, []
    for n in model.graph.node:
        if n.domain.startswith("finn.custom_op.fpgadataflow"):
            hw[n.op_type] = hw.get(n.op_type, 0) + 1
        else:
            sw.append(f"{n.op_type} {n.name}")
    edges = []
    scale = model.get_metadata_prop(META_OUTPUT_SCALE)
    if scale is not None:
        edges.append(
            f"output scale x{float(scale):.6g} (a float multiply the mask does not need: code > 0)"
        )
    if model.get_metadata_prop(META_INPUT) == "uint8_nhwc":
        edges.append("NCHW->NHWC input view (a no-op for 1 channel)")
    if model.get_metadata_prop(META_OUTPUT) == "int_codes_nhwc":
        edges.append("NHWC->NCHW output view (a no-op for 1 channel)")
    return {
        "all_hw": bool(hw) and not sw,
        "hw_layers": dict(sorted(hw.items())),
        "software_nodes": sw,
        "software_parts": edges,
    }


def verification_modes(verification: dict, vivado: VivadoInfo) -> dict:
    """The execution modes that really checked a step of this build, and why the others did not."""
    ran = sorted({v.get("exec_mode", "python") for v in verification.values()})
    reasons = {
        "cppsim": "not requested (qdev compile --verify cppsim)",
        "rtlsim": "needs Vivado xsim (not installed)" if not vivado.available else "not requested",
        "verilator": "not requested (qdev compile --verify verilator)",
        "stitched": "not requested (qdev compile --verify stitched)",
    }
    return {
        "modes_run": ran,
        "not_run": {k: r for k, r in reasons.items() if k not in ran},
        "steps": verification,
        "layers": layer_verification(verification),
    }


def _simulated(t: dict | None) -> str:
    if t is None:
        return "not run"
    if not t["simulated"]:
        return f"not simulated: {t['reason']}"
    s = f"{t['bit_exact']}/{t['nodes']} bit-exact"
    return s + (f" ({t['note']})" if t.get("note") else "")


def layer_verification(verification: dict) -> dict[str, dict]:
    """Per node type of the simulated graph, what checked it: python execution (every HW layer,
    at the steps that ran it), cppsim (HLS nodes) and verilator (RTL nodes), each as "k/n
    bit-exact", "not simulated: why", "not run", or "-" where the language is not the layer's."""
    cs = (verification.get("qdev_cppsim") or {}).get("by_type") or {}
    vs = (verification.get("qdev_verilator") or {}).get("by_type") or {}
    ran = {"cppsim": "qdev_cppsim" in verification, "verilator": "qdev_verilator" in verification}

    def cell(
        own: bool, mode: str, t: dict | None
    ) -> str:  # a layer is simulated in its own language only
        return "-" if not own else _simulated(t) if ran[mode] else "not run"

    out = {}
    for op in sorted(set(cs) | set(vs)):
        hls = op.endswith("_hls")
        out[op] = {
            "nodes": (cs.get(op) or vs.get(op))["nodes"],
            "python": True,
            "cppsim": cell(hls, "cppsim", cs.get(op)),
            "verilator": cell(not hls, "verilator", vs.get(op)),
        }
    return out


def _reports(rep: Path) -> tuple[dict, dict, dict]:
    """FINN's estimate reports: per-layer resources, per-layer cycles, network performance
    (an empty dict for one that was not written)."""

    def load(name: str) -> dict:
        p = rep / name
        return json.loads(p.read_text()) if p.is_file() else {}

    return (
        load("estimate_layer_resources.json"),
        load("estimate_layer_cycles.json"),
        load("estimate_network_performance.json"),
    )


def _against_part(used: dict, cap: dict, utilisation: dict | None = None) -> dict:
    """Each resource used, available and the fraction (given, or used / available)."""
    out = {}
    for r in RES_KEYS:
        u = float(used.get(r, 0))
        frac = (utilisation[r] if utilisation is not None else u / cap[r]) if cap[r] else None
        out[r] = {"used": u, "available": cap[r], "utilisation": frac}
    return out


def summarise(
    ctx: StepContext,
    model: ModelWrapper,
    times: dict,
    verification: dict,
    status: str,
    stopped: str | None,
) -> dict:
    """Per-layer and total estimates vs the part, bottleneck, expected FPS/latency, and what ran,
    all derived from the reports, the final graph and the verifications the build executed."""
    res, cyc, perf = _reports(ctx.out / "report")
    cap = ctx.board.capacity
    layers = [
        {"layer": k, "cycles": int(cyc.get(k, 0)), **{r: float(v.get(r, 0)) for r in RES_KEYS}}
        for k, v in res.items()
        if k != "total"
    ]
    bottleneck = max(cyc, key=cyc.get) if cyc else None
    ff = ctx.fifos
    return {
        "board": ctx.board.name,
        "part": ctx.board.part,
        "clock_ns": ctx.cfg.clock,
        "clock_mhz": 1e3 / ctx.cfg.clock,
        "status": status,
        "stopped": stopped,
        "resources": _against_part(res.get("total", {}), cap),
        "layers": layers,
        "bottleneck": {"layer": bottleneck, "cycles": int(cyc[bottleneck])} if bottleneck else None,
        "estimated_fps": perf.get("estimated_throughput_fps"),
        "estimated_latency_ms": (perf.get("estimated_latency_ns") or 0) / 1e6 if perf else None,
        "folding": ctx.folding,
        "fifos": ff,
        "resources_with_fifos": (
            _against_part(ff["with_fifos"], cap, ff["utilisation_with_fifos"]) if ff else None
        ),
        "verification": verification_modes(verification, ctx.vivado),
        "intmodel": ctx.intmodel,
        "bitstream": ctx.bitstream,
        "time_per_step_s": times,
        "compile_seconds": round(sum(times.values()), 2),
        **graph_parts(model),
    }
