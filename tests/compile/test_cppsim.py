"""HLS C++ simulation without Vitis (``qdev compile --verify cppsim``): every HLS node of the tiny
QuantU-Net compiled against ../shared/vendor's open-source headers and bit-exact against python
execution, cached on rerun; a corrupted weight caught at its node; missing headers named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from qdev.core.errors import ConfigError
from qdev.host.cli import cli

from .conftest import simulate_copy

pytestmark = pytest.mark.slow

VENDOR = Path(__file__).resolve().parents[3] / "shared" / "vendor"
needs_vendor = pytest.mark.skipif(
    not (VENDOR / "finn-hlslib").is_dir(),
    reason="../shared/vendor (the open-source HLS headers) absent",
)


def _cppsim(run: Path, *extra: str):
    return CliRunner().invoke(
        cli,
        [
            "compile",
            str(run),
            "--board",
            "KV260",
            "--verify",
            "cppsim",
            "--cppsim-opt",
            "-O1",
            "--start-step",
            "qdev_cppsim",
            "--json",
            *extra,
        ],
    )


@needs_vendor
def test_tiny_quantunet_every_hls_node_bit_exact_cached_and_recorded(compiled, tmp_path):
    run, v, rep = simulate_copy(compiled, tmp_path, "cppsim", "--cppsim-opt", "-O1")
    hls = {k: n for k, n in rep["nodes"].items() if n["op_type"].endswith("_hls")}
    assert hls and all(
        n["compiled"] and n["simulated"] and n["bit_exact"] and n["elements"] > 0
        for n in hls.values()
    )
    assert {n["op_type"] for n in hls.values()} >= {
        "Pool_hls",
        "DuplicateStreams_hls",
        "StreamingConcat_hls",
    }
    rtl = [n for n in rep["nodes"].values() if n["op_type"].endswith("_rtl")]
    assert rtl and all(
        n["simulated"] is None and "RTL" in n["reason"] for n in rtl
    )  # listed, not claimed
    e2e = rep["end_to_end"]
    assert (
        e2e["frames"] == 4
        and e2e["differing_from_python"] == 0
        and e2e["differing_from_golden_codes"] == 0
    )
    assert e2e["python_equals_unspecialised_graph"] is True
    for op, t in v["layers"].items():  # what the bundle will record, per node type
        assert t["python"] is True and (t["cppsim"].endswith("bit-exact") == op.endswith("_hls"))
    # a rerun finds every simulator in the cache
    r = _cppsim(run)
    assert r.exit_code == 0, r.output
    rep2 = json.loads((run / "compile" / "KV260" / "cppsim" / "report.json").read_text())
    assert all(
        n["cached"] and n["runs_cached"] == 4
        for n in rep2["nodes"].values()
        if n["op_type"].endswith("_hls")
    )
    # the signed bundle says what was verified
    from qdev.training.compile.bundle_build import build_bundle, generate_keypair

    key, _ = generate_keypair(tmp_path / "keys")
    b = build_bundle(run, "KV260", key, tmp_path / "bundle")
    m = json.loads((b / "manifest.json").read_text())["verification"]
    assert "cppsim" in m["modes_run"] and m["layers"]["Pool_hls"]["cppsim"] == "4/4 bit-exact"
    assert "qdev_cppsim" not in m["finn_python"] and m["cppsim"]["equal"] is True


def _one_mvau(folder: Path) -> tuple[Path, np.ndarray]:
    """A dataflow graph of one MVAU_hls with embedded INT4 weights (what FINN's tests build)."""
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import gen_finn_dt_tensor, qonnx_make_model

    mw, mh = 8, 4
    node = helper.make_node(
        "MVAU_hls",
        ["inp", "weights"],
        ["outp"],
        domain="finn.custom_op.fpgadataflow.hls",
        backend="fpgadataflow",
        name="MVAU_hls_0",
        MW=mw,
        MH=mh,
        SIMD=2,
        PE=2,
        inputDataType="INT4",
        weightDataType="INT4",
        outputDataType="INT32",
        ActVal=0,
        binaryXnorMode=0,
        noActivation=1,
        mem_mode="internal_embedded",
    )
    g = helper.make_graph(
        [node],
        "mvau",
        [helper.make_tensor_value_info("inp", TensorProto.FLOAT, [1, mw])],
        [helper.make_tensor_value_info("outp", TensorProto.FLOAT, [1, mh])],
    )
    m = ModelWrapper(qonnx_make_model(g, producer_name="qdev-test"))
    m.set_tensor_datatype("inp", DataType["INT4"])
    m.set_tensor_datatype("weights", DataType["INT4"])
    m.set_tensor_datatype("outp", DataType["INT32"])
    rng = np.random.default_rng(5)
    m.set_initializer("weights", rng.integers(-8, 8, (mw, mh)).astype(np.float32))
    p = folder / "mvau.onnx"
    m.save(str(p))
    return p, gen_finn_dt_tensor(DataType["INT4"], (3, 1, mw))


@needs_vendor
def test_a_corrupted_weight_is_reported_at_its_node(tmp_path):
    from qdev.training.compile import cppsim
    from qdev.training.compile.finn_env import boot_finn

    boot_finn(tmp_path / "finn")
    model, frames = _one_mvau(tmp_path)
    deps, cfg = (
        cppsim.find_hls_deps(VENDOR),
        cppsim.CppSimConfig(opt="-O1", cache=tmp_path / "cache"),
    )
    clean = cppsim.verify_cppsim(model, None, frames, None, deps, cfg)
    assert clean["nodes"]["MVAU_hls_0"]["bit_exact"] is True

    def corrupt(m) -> None:  # noqa: ANN001 - flip one 4-bit weight in the generated parameters
        from qonnx.custom_op.registry import getCustomOp

        params = Path(getCustomOp(m.graph.node[0]).get_nodeattr("code_gen_dir_cppsim")) / "params.h"
        text = params.read_text()
        i = text.index('ap_uint<8>("0x') + len('ap_uint<8>("0x')
        nib = text[i + 1]
        params.write_text(text[: i + 1] + ("0" if nib != "0" else "7") + text[i + 2 :])

    bad = cppsim.verify_cppsim(model, None, frames, None, deps, cfg, mutate=corrupt)
    node = bad["nodes"]["MVAU_hls_0"]
    assert (
        node["compiled"] and not node["cached"]
    )  # new sources: a new simulator, not the clean one
    assert node["bit_exact"] is False and node["elements_differing"] > 0
    assert bad["by_type"]["MVAU_hls"]["bit_exact"] == 0


def test_missing_hls_headers_are_named(tmp_path, compiled):
    from qdev.training.compile.cppsim import find_hls_deps

    (tmp_path / "finn-hlslib").mkdir()
    with pytest.raises(ConfigError, match="finn-hlslib-newer/pool.hpp is missing"):
        find_hls_deps(tmp_path)
    src, _, _ = compiled
    run = tmp_path / "tiny"
    shutil.copytree(src, run)
    r = _cppsim(run, "--hls-deps", str(tmp_path))
    assert (
        r.exit_code == 2
        and "finn-hlslib-newer/pool.hpp is missing" in r.output.strip().splitlines()[-1]
    )
