"""The accelerator as a whole: FIFO depths from the token model, the stitched dataflow simulated
through bounded FIFOs (completes, or names its deadlock in bounded time), and FINN consuming the
depths. On the shipped KV260 bundle's integer model (numpy only) and on the tiny compiled build."""

from __future__ import annotations

import json
import time

import pytest

from qdev import assets
from qdev.core.errors import QdevError
from qdev.core.intmodel import IntModel
from qdev.training.compile.dataflow_sim import (
    StreamNode,
    build_graph,
    choose_skip_depths,
    must_buffer,
    nodes_from_intmodel,
    simulate,
)


@pytest.fixture(scope="module")
def shipped():
    model = IntModel.load(assets.shipped_bundle("KV260") / "intmodel.npz")
    g = build_graph(nodes_from_intmodel(model), (128, 128))
    return g, choose_skip_depths(g)


def test_the_unet_has_four_skips_and_their_bounds(shipped):
    g, chosen = shipped
    skips = g.skips()
    assert [g.node(d).op for d, _, _ in skips] == ["DuplicateStreams"] * 4
    assert all(g.node(c).op == "StreamingConcat" for _, _, c in skips)
    # the deep path's demand grows with the map: 16x16 ... 128x128
    must = sorted(v["must"] for v in chosen.values())
    assert must[0] < must[1] < must[2] < must[3] and 10_000 < must[3] < 16_384
    for v in chosen.values():  # the stated margin, no more
        assert v["must"] < v["depth"] <= 1.25 * v["must"]


def test_chosen_depths_complete_and_every_bound_is_tight(shipped):
    """At the chosen depths two frames stream through back to back; each skip at exactly its
    bound still completes and one pixel less deadlocks (the others at their chosen depths): the
    bound is the simulation's minimum, so the chosen depth is 1.0x-1.25x of it."""
    g, chosen = shipped
    depths = {s: v["depth"] for s, v in chosen.items()}
    r = simulate(g, depths, frames=2)
    assert r.completed and r.outputs == r.expected == 2 * 128 * 128
    assert all(r.peak[s] <= depths[s] for s in depths)
    for s, v in chosen.items():
        at = simulate(g, {**depths, s: v["must"]}, frames=2)
        below = simulate(g, {**depths, s: v["must"] - 1}, frames=2)
        assert at.completed, s
        assert not below.completed, s
        assert any(b["stream"] == s and b["waits_on"] == "output full" for b in below.blocked), (
            below.summary()
        )


def test_finn_default_depths_are_a_reported_deadlock_not_a_hang(shipped):
    g, chosen = shipped
    t = time.monotonic()
    r = simulate(g, {}, frames=1)  # every FIFO one pixel: FINN's depth 2 holds less
    assert not r.completed and time.monotonic() - t < 30
    assert (
        r.blocked[0]["node"].startswith("DuplicateStreams")
        and r.blocked[0]["waits_on"] == "output full"
    )
    assert "DEADLOCK" in r.summary() and "StreamingConcat" in r.summary()
    half = simulate(g, {s: v["must"] // 2 for s, v in chosen.items()}, frames=1)
    assert not half.completed


def test_pipeline_and_errors():
    nodes = [
        StreamNode(
            "pad", "FMPadding", ("in",), ("a",), {"ImgDim": [4, 4], "Padding": [1, 1, 1, 1]}
        ),
        StreamNode(
            "swg",
            "ConvolutionInputGenerator",
            ("a",),
            ("b",),
            {"IFMDim": [6, 6], "OFMDim": [4, 4], "ConvKernelDim": [3, 3]},
        ),
        StreamNode("mvau", "MVAU", ("b",), ("out",), {}),
    ]
    g = build_graph(nodes, (4, 4))
    assert g.skips() == [] and g.pixels["out"] == 16
    r = simulate(g, {}, frames=3)
    assert r.completed and r.outputs == 48
    # the window generator holds two rows and three pixels of its padded input: its line buffer
    assert g.ports["swg"][0].cap == 2 * 6 + 3
    with pytest.raises(QdevError, match="no token model"):
        build_graph([StreamNode("x", "Mystery", ("in",), ("out",), {})], (4, 4))
    bad = [
        nodes[0],
        StreamNode(
            "swg",
            "ConvolutionInputGenerator",
            ("a",),
            ("b",),
            {"IFMDim": [5, 5], "OFMDim": [3, 3], "ConvKernelDim": [3, 3]},
        ),
    ]
    with pytest.raises(QdevError, match="producer gives"):
        build_graph(bad, (4, 4))


def test_must_buffer_of_a_one_level_unet():
    """A fork whose deep branch pads and convolves with a 3x3 window before the concat: the skip
    must hold a row and two pixels of the padded map's worth of lag, found by the bound and by the
    simulation alike."""
    a = {"ImgDim": [8, 8], "Padding": [1, 1, 1, 1]}
    nodes = [
        StreamNode("dup", "DuplicateStreams", ("in",), ("s", "d"), {}),
        StreamNode("pad", "FMPadding", ("d",), ("p",), a),
        StreamNode(
            "swg",
            "ConvolutionInputGenerator",
            ("p",),
            ("w",),
            {"IFMDim": [10, 10], "OFMDim": [8, 8], "ConvKernelDim": [3, 3]},
        ),
        StreamNode("mv", "MVAU", ("w",), ("m",), {}),
        StreamNode("cat", "StreamingConcat", ("s", "m"), ("out",), {}),
    ]
    g = build_graph(nodes, (8, 8))
    need = must_buffer(g, "s", frames=2)
    assert need == 8 + 1  # output (0,0) needs input (1,1): a row and one pixel ahead
    assert simulate(g, {"s": need}, frames=2).completed
    assert not simulate(g, {"s": need - 1}, frames=2).completed


def test_compile_counts_fifos_and_finn_consumes_the_depths(compiled, tmp_path, monkeypatch):
    """The tiny build's summary and reports carry the FIFOs; FINN's own step_set_fifo_depths with
    auto_fifo_depths=False builds exactly qdev's depths from report/fifo_config.json (its Vivado
    code-generation tail stubbed: the FIFO insertion and ApplyFIFODepthsFromFile are FINN's)."""
    run, _, s = compiled
    out = run / "compile" / "KV260"
    ff = s["fifos"]
    assert ff["simulation"]["completed"] and ff["count"] > 0 and len(ff["skips"]) >= 1
    rw = s["resources_with_fifos"]
    for k in ("LUT", "BRAM_18K", "URAM"):
        assert rw[k]["used"] >= s["resources"][k]["used"]
    assert rw["LUT"]["used"] > s["resources"]["LUT"]["used"]
    cfg_file = out / "report" / "fifo_config.json"
    plan = json.loads((out / "report" / "fifo_depths.json").read_text())
    assert {f["role"] for f in plan["fifos"]} == {"skip", "shallow"}

    import finn.builder.build_dataflow_steps as steps
    from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from qdev.training.compile.build_steps import use_qdev_fifo_depths

    monkeypatch.setattr(steps, "step_hw_codegen", lambda m, c, parent_node=None: m)
    monkeypatch.setattr(steps, "step_hw_ipgen", lambda m, c, parent_node=None: m)
    fcfg = DataflowBuildConfig(
        output_dir=str(tmp_path),
        synth_clk_period_ns=5.0,
        fpga_part="xck26-sfvc784-2LV-c",
        generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS],
    )
    use_qdev_fifo_depths(fcfg, out)
    assert fcfg.auto_fifo_depths is False
    model = ModelWrapper(str(out / "intermediate_models" / "step_generate_estimate_reports.onnx"))
    built = steps.step_set_fifo_depths(model, fcfg)
    got = {
        n.name: getCustomOp(n).get_nodeattr("depth")
        for n in built.get_nodes_by_op_type("StreamingFIFO_rtl")
    }
    want = json.loads(cfg_file.read_text())["fifo_depths"]
    assert got == want
    deep = sorted(got.values())[-len(ff["skips"]) :]
    assert deep == sorted(x["depth"] for x in ff["skips"])
    report = json.loads((tmp_path / "report" / "fifo_sizing.json").read_text())
    assert report["fifo_depths"] == want


def test_the_device_knows_the_boards_the_compile_builds_for():
    from qdev.core.bundle import BOARD_NAMES
    from qdev.training.compile.boards import BOARDS

    assert tuple(sorted(BOARDS)) == tuple(sorted(BOARD_NAMES))


def test_timed_model_runs_at_the_bottleneck_when_fifos_allow():
    """The timed token model: a padder, a 3x3 window and an MVAU (640 cycles a frame, the slowest)
    stream three frames at the MVAU's rate when the FIFOs hold a row; one-pixel FIFOs stall it a
    little (the window generator's row turns); the first frame's latency is the pipeline's fill."""
    from qdev.training.compile.dataflow_sim import timed

    nodes = [
        StreamNode(
            "pad", "FMPadding", ("in",), ("a",), {"ImgDim": [8, 8], "Padding": [1, 1, 1, 1]}
        ),
        StreamNode(
            "swg",
            "ConvolutionInputGenerator",
            ("a",),
            ("b",),
            {"IFMDim": [10, 10], "OFMDim": [8, 8], "ConvKernelDim": [3, 3]},
        ),
        StreamNode("mv", "MVAU", ("b",), ("out",), {}),
    ]
    g = build_graph(nodes, (8, 8))
    cycles = {"pad": 100, "swg": 100, "mv": 640}
    roomy = timed(g, {"a": 100, "b": 100}, cycles, frames=3)
    assert roomy.converged and roomy.bottleneck_cycles == 640 and roomy.cycles_per_frame == 640
    tight = timed(g, {}, cycles, frames=3)
    assert tight.converged and 640 <= tight.cycles_per_frame < 700
    assert (
        roomy.first_frame_cycles > 640
    )  # the fill: the window needs two rows before its first output
