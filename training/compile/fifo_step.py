"""FIFO depths computed by qdev, without Vivado (build step ``qdev_fifo_depths``).

Every stream of the folded graph gets a FIFO: the skip streams (a fork's branch that meets a
concat directly) the depth the token model of :mod:`.dataflow_sim` proves they need plus its
stated margin, every other stream FINN's minimum (2 words: a pipeline needs no more to make
progress; rate smoothing is left to the bitstream flow's own options). Depths are written where
FINN's ``InsertFIFO`` reads them (``outFIFODepths`` of the producer, ``inFIFODepths`` of the
consumer) and as a ``fifo_config_file`` for ``step_set_fifo_depths`` with
``auto_fifo_depths=False``, so a Vivado build runs no simulation-based sizing. Each FIFO's memory
is chosen by finn-plus's own FIFO cost model (``finn.util.resource_models._fifo_cost``, the
model its estimates use) as the style that takes the smallest share of the board, and counted
in the estimates.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from qonnx.core.modelwrapper import ModelWrapper

from qdev.core.intmodel import base_op

from qdev.training.compile.boards import Board
from qdev.training.compile.dataflow_sim import (
    SKIP_MARGIN,
    DataflowGraph,
    StreamNode,
    build_graph,
    choose_skip_depths,
    pixels_of,
    simulate,
    words,
)

__all__ = [
    "finn_nodes",
    "fifo_plan",
    "apply_fifo_depths",
    "fifo_totals",
    "SHALLOW_DEPTH",
    "finn_fifo_model",
    "finn_fifo_resources",
    "check_plan",
    "write_reports",
    "fifo_added",
    "dataflow_graph",
]

log = logging.getLogger(__name__)

#: FINN's minimal FIFO depth (InsertFIFO never builds one shallower).
SHALLOW_DEPTH = 2
STYLES = ("srl", "distributed", "block", "ultra")


def finn_nodes(model: ModelWrapper) -> list[StreamNode]:
    """The token-model nodes of a FINN HW graph (attributes read through FINN's custom ops)."""
    from qonnx.custom_op.registry import getCustomOp

    out = []
    for n in model.graph.node:
        inst = getCustomOp(n)
        attrs = {}
        for a in n.attribute:
            try:
                attrs[a.name] = inst.get_nodeattr(a.name)
            except Exception:  # noqa: BLE001 - an attribute FINN cannot decode is not one we need
                continue
        streams = tuple(x for x in n.input if model.get_initializer(x) is None)  # not the weights
        out.append(StreamNode(n.name, base_op(n.op_type), streams, tuple(n.output), attrs))
    return out


def _stream_geometry(model: ModelWrapper) -> dict[str, dict]:
    """Per stream: words per pixel and word width (bits, padded) on the producer's side."""
    from qonnx.custom_op.registry import getCustomOp

    geo = {}
    for n in model.graph.node:
        inst = getCustomOp(n)
        for k, s in enumerate(n.output):
            folded = list(inst.get_folded_output_shape(k))
            normal = list(inst.get_normal_output_shape(k))
            px = math.prod(normal[:-1])
            geo[s] = {
                "words_per_pixel": math.prod(folded[:-1]) // max(1, px),
                "width_bits": int(inst.get_outstream_width_padded(k)),
            }
    return geo


def _style_costs(depth: int, width: int, board: Board, versal: bool = False) -> dict[str, dict]:
    """The cost of a depth x width FIFO in every memory style the board has, by finn-plus's FIFO
    cost model (fifo.sv builds anything of depth <= 33 as a shift register, whatever is asked)."""
    from finn.util.resource_models import _fifo_cost

    styles = ("srl",) if depth <= 33 else tuple(s for s in STYLES if s != "ultra" or board.uram)
    return {
        st: {
            "LUT": (c := _fifo_cost(depth, width, st, versal)).lut,
            "BRAM_18K": c.bram,
            "URAM": c.uram,
        }
        for st in styles
    }


def _choose_styles(entries: list[dict], board: Board, base: dict[str, float]) -> None:
    """Give each FIFO the memory style that keeps the board's fullest resource (layers plus the
    FIFOs chosen so far) lowest; the largest FIFOs choose first, ties go to the smaller share."""
    cap = board.capacity
    used = {k: float(base.get(k, 0.0)) for k in ("LUT", "BRAM_18K", "URAM")}

    def worst(extra: dict) -> tuple[float, float]:
        utils = [(used[k] + extra[k]) / cap[k] for k in used if cap[k]]
        share = sum(extra[k] / cap[k] for k in used if cap[k])
        return max(utils), share

    for e in sorted(entries, key=lambda f: -f["bits"]):
        costs = _style_costs(e["depth"], e["width_bits"], board)
        style = min(costs, key=lambda st: worst(costs[st]))
        e.update({"ram_style": style, **costs[style]})
        for k in used:
            used[k] += costs[style][k]


def dataflow_graph(model: ModelWrapper) -> DataflowGraph:
    """The token model of a FINN HW graph (its input's height and width from the graph)."""
    shape = model.get_tensor_shape(model.graph.input[0].name)
    return build_graph(finn_nodes(model), (int(shape[1]), int(shape[2])))


def fifo_plan(
    model: ModelWrapper,
    board: Board,
    base: dict[str, float] | None = None,
    margin: float = SKIP_MARGIN,
    g: DataflowGraph | None = None,
) -> list[dict]:
    """One entry per internal stream of the folded HW graph: producer, consumer, role (skip or
    shallow), depth in pixels (skips) and words, width, memory style, bits and FINN-model cost.
    ``base``: what the layers already take of the board (the styles are chosen around it);
    ``g``: the graph's token model where the caller has it already."""
    g = g or dataflow_graph(model)
    skips = choose_skip_depths(g, margin=margin)
    geo = _stream_geometry(model)
    plan = []
    for s in g.pixels:
        if s not in g.producer or s not in g.consumer:
            continue
        wpp, width = geo[s]["words_per_pixel"], geo[s]["width_bits"]
        if s in skips:
            depth = words(skips[s]["depth"], wpp)
            entry = {
                "role": "skip",
                "must_pixels": skips[s]["must"],
                "depth_pixels": skips[s]["depth"],
            }
        else:
            depth = SHALLOW_DEPTH
            entry = {"role": "shallow"}
        plan.append(
            {
                "stream": s,
                "producer": g.producer[s],
                "consumer": g.consumer[s],
                **entry,
                "words_per_pixel": wpp,
                "depth": depth,
                "width_bits": width,
                "bits": depth * width,
            }
        )
    _choose_styles(plan, board, base or {})
    return plan


def fifo_totals(plan: list[dict]) -> dict[str, float]:
    return {k: float(sum(f[k] for f in plan)) for k in ("LUT", "BRAM_18K", "URAM")}


def apply_fifo_depths(model: ModelWrapper, plan: list[dict]) -> ModelWrapper:
    """Write the plan's depths where FINN's InsertFIFO reads them: each stream's depth as the
    producer's ``outFIFODepths`` (in the producer's words, as the plan counts them), every
    ``inFIFODepths`` at the minimum. InsertFIFO takes the larger of the two sides of an edge, so
    where FINN puts a width converter on a skip stream the deep FIFO is the one before it, once
    (set on both sides, the FIFO after the converter came out deep too: twice the memory)."""
    from qonnx.custom_op.registry import getCustomOp

    by_stream = {f["stream"]: f["depth"] for f in plan}
    for n in model.graph.node:
        inst = getCustomOp(n)
        inst.set_nodeattr("outFIFODepths", [by_stream.get(s, SHALLOW_DEPTH) for s in n.output])
        inst.set_nodeattr("inFIFODepths", [SHALLOW_DEPTH for _ in n.input])
    return model


def finn_fifo_model(model: ModelWrapper, plan: list[dict], part: str) -> tuple[ModelWrapper, dict]:
    """The graph as FINN's ``step_set_fifo_depths`` (``auto_fifo_depths=False``) builds it before
    its code generation, with FINN's own transformations in FINN's order: DWCs, FIFOs from the
    depths in the graph, specialisation, FINN's node and tensor names. Each FIFO gets the plan's
    memory style. Returns that graph and the ``fifo_config_file`` contents keyed by FINN's names."""
    from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
    from finn.transformation.fpgadataflow.insert_fifo import InsertFIFO
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from finn.transformation.qonnx.give_unique_node_names_recursive import (
        GiveUniqueNodeNamesRecursive,
    )
    from qonnx.custom_op.registry import getCustomOp
    from qonnx.transformation.general import GiveReadableTensorNames

    style = {f["stream"]: f["ram_style"] for f in plan}
    m = model.transform(InsertDWC())
    m = m.transform(InsertFIFO(create_shallow_fifos=True))
    # the FIFO's input tensor is still the producer's own output tensor here: map styles now
    for n in m.get_nodes_by_op_type("StreamingFIFO"):
        getCustomOp(n).set_nodeattr("ram_style", style.get(n.input[0], "auto"))
    m = m.transform(SpecializeLayers(part))
    m = m.transform(GiveUniqueNodeNamesRecursive())
    m = m.transform(GiveReadableTensorNames())
    cfg: dict = {"fifo_depths": {}, "impl_style": {}, "ram_style": {}}
    for n in m.get_nodes_by_op_type("StreamingFIFO_rtl"):
        inst = getCustomOp(n)
        cfg["fifo_depths"][n.name] = int(inst.get_nodeattr("depth"))
        cfg["impl_style"][n.name] = inst.get_nodeattr("impl_style")
        cfg["ram_style"][n.name] = inst.get_nodeattr("ram_style")
    return m, cfg


def write_reports(out: Path, plan: list[dict], sim: dict, fifo_cfg: dict) -> None:
    from qdev.training.runs import atomic_write_text

    rep = out / "report"
    rep.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        rep / "fifo_depths.json",
        json.dumps({"fifos": plan, "totals": fifo_totals(plan), "simulation": sim}, indent=1),
    )
    atomic_write_text(rep / "fifo_config.json", json.dumps(fifo_cfg, indent=1))


def check_plan(g: DataflowGraph, plan: list[dict], frames: int = 2) -> dict:
    """The stitched token simulation of the folded graph at the plan's depths: it must complete."""
    depths = {f["stream"]: pixels_of(f["depth"], f["words_per_pixel"]) for f in plan}
    r = simulate(g, depths, frames=frames)
    return {
        "frames": frames,
        "completed": r.completed,
        "summary": r.summary(),
        "peak_pixels": {f["stream"]: r.peak[f["stream"]] for f in plan if f["role"] == "skip"},
        "blocked": r.blocked[:8],
    }


def finn_fifo_resources(model: ModelWrapper, part: str) -> dict:
    """finn-plus's own estimate (``res_estimation``) of what FINN's FIFO step adds to the graph:
    every StreamingFIFO and the data-width converters InsertDWC puts between mismatched streams."""
    from functools import partial

    from finn.analysis.fpgadataflow.res_estimation import res_estimation

    per = model.analysis(partial(res_estimation, fpgapart=part))
    keep = {
        n.name: n.op_type
        for n in model.graph.node
        if n.op_type.startswith(("StreamingFIFO", "StreamingDataWidthConverter"))
    }
    tot = {
        "fifo": dict.fromkeys(("LUT", "BRAM_18K", "URAM", "DSP"), 0.0),
        "dwc": dict.fromkeys(("LUT", "BRAM_18K", "URAM", "DSP"), 0.0),
    }
    for name, op in keep.items():
        part_of = "fifo" if op.startswith("StreamingFIFO") else "dwc"
        for k in tot[part_of]:
            tot[part_of][k] += float(per.get(name, {}).get(k, 0))
    return {
        "fifos": sum(op.startswith("StreamingFIFO") for op in keep.values()),
        "dwcs": sum(op.startswith("StreamingDataWidth") for op in keep.values()),
        **tot,
    }


def fifo_added(model: ModelWrapper, board: Board, layers: dict[str, float]) -> dict[str, float]:
    """What the FIFOs and FINN's width converters add to ``model`` (a folded graph; a copy is
    used), by finn-plus's estimate of the graph its FIFO step would build: the fold's fit check."""
    from copy import deepcopy

    m = ModelWrapper(deepcopy(model.model))
    plan = fifo_plan(m, board, layers)
    fm, _ = finn_fifo_model(apply_fifo_depths(m, plan), plan, board.part)
    cost = finn_fifo_resources(fm, board.part)
    return {k: cost["fifo"][k] + cost["dwc"][k] for k in ("LUT", "BRAM_18K", "URAM", "DSP")}
