"""Export -> FINN compile -> integer model -> signed bundle, on a tiny QuantU-Net (real FINN
passes)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from qdev.core.intmodel import IntModel, run_reference
from qdev.core.bundle import BundleError, verify_bundle
from qdev.core.errors import QdevError
from qdev.host.cli import cli
from qdev.training.compile.bundle_build import DEV_KEY_DIR, build_bundle, generate_keypair
from qdev.training.compile.finn_env import find_vivado
from tests.test_import_rules import loaded_heavy_modules

pytestmark = pytest.mark.slow


def test_export_is_bit_exact_and_stored(compiled):
    run, export, _ = compiled
    assert export["integer_outputs_equal"] and export["codes_differing"] == 0
    for f in ("model.qonnx.onnx", "golden_pixels.npy", "golden_codes.npy", "verify.json"):
        assert (run / "export" / f).is_file()
    assert not (run / "export" / "golden_in.npy").exists()  # one layout, written once
    px, codes = (
        np.load(run / "export" / "golden_pixels.npy"),
        np.load(run / "export" / "golden_codes.npy"),
    )
    assert (px.dtype, px.shape, codes.dtype, codes.shape) == (
        np.uint8,
        (4, 32, 32),
        np.int16,
        (4, 32, 32, 1),
    )


def test_compile_all_hw_bit_exact_with_reports(compiled):
    run, _, s = compiled
    out = run / "compile" / "KV260"
    assert s["status"] == "stopped"
    # all_hw is read off the final graph: every node of the last saved model is a FINN HW layer
    from qonnx.core.modelwrapper import ModelWrapper

    final = ModelWrapper(str(out / "intermediate_models" / "qdev_integer_model.onnx"))
    assert s["all_hw"] and all(
        n.domain.startswith("finn.custom_op.fpgadataflow") for n in final.graph.node
    )
    assert sum(s["hw_layers"].values()) == len(final.graph.node) and s["software_nodes"] == []
    assert any("output scale" in p for p in s["software_parts"])
    steps = s["verification"]["steps"]
    assert set(steps) >= {
        "step_tidy_up",
        "qdev_streamline_unet",
        "qdev_lower_unet",
        "qdev_convert_to_hw",
    }
    assert all(v["equal"] and v["codes_differing"] == 0 for v in steps.values())
    # the modes listed as run are the ones the steps' checks used; the rest say why not
    assert s["verification"]["modes_run"] == sorted({v["exec_mode"] for v in steps.values()})
    assert set(s["verification"]["not_run"]) == {"cppsim", "rtlsim", "verilator", "stitched"} - set(
        s["verification"]["modes_run"]
    )
    for f in (
        "estimate_layer_resources.json",
        "estimate_layer_cycles.json",
        "estimate_network_performance.json",
        "op_and_param_counts.json",
        "auto_folding_config.json",
    ):
        assert (out / "report" / f).is_file(), f
    times = json.loads((out / "time_per_step.json").read_text())
    assert "qdev_streamline_unet" in times and "step_generate_estimate_reports" in times
    assert (out / "intermediate_models" / "qdev_convert_to_hw.onnx").is_file()
    hw = s["layers"]
    assert len(hw) > 60 and s["estimated_fps"] > 0 and s["bottleneck"]["layer"]
    assert s["resources"]["LUT"]["used"] > 0 and s["resources"]["LUT"]["available"] == 117_120
    assert s["folding"]["met"]


@pytest.mark.skipif(
    find_vivado().available, reason="Vivado present: the bitstream step runs instead"
)
def test_without_vivado_the_bitstream_step_stops_clearly(compiled):
    _, _, s = compiled
    assert set(s["bitstream"]) == {"built", "reason"} and s["bitstream"]["built"] is False
    assert (
        s["bitstream"]["reason"] == f"Vivado not found ({find_vivado().reason})"
    )  # where it looked
    assert (
        "Vivado not found" in s["stopped"]
        and "Everything before it is done and kept" in s["stopped"]
    )


def test_integer_model_reference_equals_finn(compiled):
    run, _, s = compiled
    im = s["intmodel"]
    assert im["equals_finn_python_exec"] and im["equals_qonnx_codes"]
    out = run / "compile" / "KV260" / "intmodel"
    model = IntModel.load(out / "intmodel.npz")
    codes = run_reference(model, np.load(out / "golden_pixels.npy"))
    assert np.array_equal(codes, np.load(out / "golden_codes.npy"))
    for name in ("golden_pixels.npy", "golden_codes.npy"):  # the export's files, byte for byte
        assert (out / name).read_bytes() == (run / "export" / name).read_bytes()
    io = im["io"]
    assert (
        io["idt"] == "UINT8"
        and io["ishape_normal"] == [1, 32, 32, 1]
        and io["ishape_packed"][-1] >= 1
    )


def test_start_and_stop_at_named_steps(compiled, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(compiled[0], run)
    r = CliRunner().invoke(
        cli,
        [
            "compile",
            str(run),
            "--board",
            "KV260",
            "--start-step",
            "step_specialize_layers",
            "--stop-step",
            "step_generate_estimate_reports",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["status"] == "done" and s["estimated_fps"] > 0
    # stopped before the HW conversion, the graph still holds software nodes, and the summary says
    # so
    r = CliRunner().invoke(
        cli, ["compile", str(run), "--board", "KV260", "--stop-step", "qdev_lower_unet", "--json"]
    )
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert not s["all_hw"] and any(n.startswith("MatMul") for n in s["software_nodes"])
    assert "qdev_convert_to_hw" not in s["verification"]["steps"]
    r = CliRunner().invoke(
        cli, ["compile", str(run), "--board", "KV260", "--start-step", "no_such_step"]
    )
    assert r.exit_code == 2 and "qdev: " in r.output


def test_bundle_sign_verify_and_tamper(compiled, tmp_path):
    run, _, _ = compiled
    out = build_bundle(run, "KV260", DEV_KEY_DIR / "qdev-dev.key", tmp_path / "b" / "tiny")
    vb = verify_bundle(out, [DEV_KEY_DIR / "qdev-dev.pub"])
    m = vb.manifest
    assert m["estimate_only"] and m["board"] == "KV260" and "intmodel.npz" in m["files"]
    assert m["io"]["idt"] == "UINT8" and m["estimates"]["estimated_fps"] > 0
    r = CliRunner().invoke(cli, ["bundle", "verify", str(out)])
    assert r.exit_code == 0 and "OK" in r.output
    # another key is not trusted
    _, pub = generate_keypair(tmp_path / "k", "other")
    with pytest.raises(BundleError, match="not trusted"):
        verify_bundle(out, [pub])
    cases = {
        "file": lambda p: (p / "intmodel.npz").write_bytes(
            (p / "intmodel.npz").read_bytes() + b"x"
        ),
        "manifest": lambda p: (p / "manifest.json").write_text(
            (p / "manifest.json").read_text().replace("KV260", "ZCU104")
        ),
        "extra": lambda p: (p / "evil.sh").write_text("#!/bin/sh"),
        "missing": lambda p: (p / "golden_codes.npy").unlink(),
        "unsigned": lambda p: (p / "manifest.json.sig").unlink(),
    }
    for name, damage in cases.items():
        bad = tmp_path / f"bad-{name}"
        shutil.copytree(out, bad)
        damage(bad)
        with pytest.raises(BundleError):
            verify_bundle(bad, [DEV_KEY_DIR / "qdev-dev.pub"])
        r = CliRunner().invoke(cli, ["bundle", "verify", str(bad)])
        assert r.exit_code == 2 and r.output.startswith("qdev: "), name


def test_bundle_takes_the_bitstream_only_as_the_compile_recorded_it(compiled, tmp_path):
    """Where Vivado ran, the compile records FINN's bitfile/finn-accel.bit and .hwh with their
    hashes and the bundle ships them as accel.bit/.hwh; a bitstream changed after the compile is
    refused. No Vivado here: stand-in bytes are written where FINN copies its outputs
    (finn-plus 1.6.1, copy_and_rename_bitfiles) and recorded as the compile stage records its
    declared outputs."""
    from qdev.core.bundle import sha256_file
    from qdev.training.runs import RunFolder

    run = tmp_path / "tiny"
    shutil.copytree(compiled[0], run)
    d = run / "compile" / "KV260"
    (d / "bitfile").mkdir()
    (d / "bitfile" / "finn-accel.bit").write_bytes(b"stand-in bitstream")
    (d / "bitfile" / "finn-accel.hwh").write_text("<stand-in hwh/>")
    summary = json.loads((d / "summary.json").read_text())
    bits = {k: [str(d / "bitfile" / f"finn-accel.{k}")] for k in ("bit", "hwh")}
    summary["bitstream"] = {"built": True, **bits}  # as qdev_bitstream records it
    (d / "summary.json").write_text(json.dumps(summary))
    rf = RunFolder(run)
    doc = rf.load()
    outputs = doc["stages"]["compile/KV260"]["outputs"]
    for rel in ("summary.json", "bitfile/finn-accel.bit", "bitfile/finn-accel.hwh"):
        outputs[f"compile/KV260/{rel}"] = sha256_file(d / rel)
    rf.save(doc)
    key = DEV_KEY_DIR / "qdev-dev.key"
    out = build_bundle(run, "KV260", key, tmp_path / "b1")
    m = verify_bundle(out, [DEV_KEY_DIR / "qdev-dev.pub"]).manifest
    assert not m["estimate_only"] and m["bitstream"] == "built"
    assert (out / "accel.bit").read_bytes() == b"stand-in bitstream"
    assert m["files"]["accel.hwh"]["sha256"] == outputs["compile/KV260/bitfile/finn-accel.hwh"]
    (d / "bitfile" / "finn-accel.bit").write_bytes(b"another bitstream")
    with pytest.raises(QdevError, match="sha256 differs"):
        build_bundle(run, "KV260", key, tmp_path / "b2")
    assert not (tmp_path / "b2").exists()


def test_bundle_is_a_stage_of_its_run_and_publish_copies_it_checked(
    compiled, tmp_path, monkeypatch
):
    """`qdev bundle create` without --out writes inside the run (RUN/bundle/<board>) and records a
    stage (inputs: the compile's files by hash; outputs: the bundle's files; its id); `qdev bundle
    publish` copies it to bitstreams/<board>/<model> byte for byte, and refuses a changed file."""
    run = tmp_path / "tiny"
    shutil.copytree(compiled[0], run)
    key = DEV_KEY_DIR / "qdev-dev.key"
    r = CliRunner().invoke(
        cli,
        [
            "bundle",
            "create",
            str(run),
            "--board",
            "kv260",
            "--key",
            str(key),
            "--model-name",
            "tiny-w",
        ],
    )
    assert r.exit_code == 0, r.output
    b = run / "bundle" / "KV260"
    vb = verify_bundle(b, [DEV_KEY_DIR / "qdev-dev.pub"])
    st = json.loads((run / "manifest.json").read_text())["stages"]["bundle/KV260"]
    assert st["status"] == "done" and st["config"]["model"] == "tiny-w"
    assert set(st["outputs"]) == {f"bundle/KV260/{p.name}" for p in b.iterdir()}
    assert (
        st["inputs"]["compile/KV260/intmodel/intmodel.npz"]
        == vb.manifest["files"]["intmodel.npz"]["sha256"]
    )
    from qdev.core.bundle import bundle_id

    assert st["bundle_id"] == bundle_id((b / "manifest.json").read_bytes())
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["bundle", "publish", str(run), "--board", "KV260"])
    assert r.exit_code == 0, r.output
    pub = tmp_path / "bitstreams" / "KV260" / "tiny-w"
    assert sorted(p.name for p in pub.iterdir()) == sorted(p.name for p in b.iterdir())
    assert all((pub / p.name).read_bytes() == p.read_bytes() for p in b.iterdir())
    # a file changed inside the run since the bundle stage: refused, nothing published over
    (b / "golden_codes.npy").write_bytes(b"x")
    r = CliRunner().invoke(
        cli, ["bundle", "publish", str(run), "--board", "KV260", "--to", str(tmp_path / "p2")]
    )
    assert r.exit_code == 2 and "sha256 differs" in r.output and not (tmp_path / "p2").exists()
    # the compile's own golden file changed: bundle create refuses it (it used to copy it unchecked)
    (run / "compile" / "KV260" / "intmodel" / "golden_pixels.npy").write_bytes(b"y")
    r = CliRunner().invoke(
        cli, ["bundle", "create", str(run), "--board", "KV260", "--key", str(key)]
    )
    assert r.exit_code == 2 and "golden_pixels.npy" in r.output


def test_float_run_cannot_be_exported(phantom_busi, tmp_path):
    out = tmp_path / "f"
    r = CliRunner().invoke(
        cli,
        [
            "train",
            "--model",
            "float",
            "--width",
            "2",
            "--size",
            "32",
            "--epochs",
            "1",
            "--threads",
            "1",
            "--data",
            str(phantom_busi),
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0
    r = CliRunner().invoke(cli, ["export", str(out)])
    assert r.exit_code == 2 and "float model cannot be exported" in r.output
    with pytest.raises(QdevError, match="compile for KV260 has not run"):
        build_bundle(out, "KV260", DEV_KEY_DIR / "qdev-dev.key", tmp_path / "x")


def test_unreachable_fps_gives_best_fit_and_a_clear_message(compiled):
    run, _, _ = compiled
    r = CliRunner().invoke(
        cli,
        [
            "compile",
            str(run),
            "--board",
            "KV260",
            "--fps",
            "1e9",
            "--start-step",
            "qdev_fold",
            "--stop-step",
            "step_generate_estimate_reports",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    f = json.loads(r.stdout)["folding"]
    assert f["met"] is False and f["tries"][-1]["fits"]
    assert "the best folding that fits reaches" in f["message"]


@pytest.mark.vivado
@pytest.mark.skipif(
    not find_vivado().available, reason="needs Vivado (XILINX_VIVADO or vivado on PATH)"
)
def test_bitstream_with_vivado(compiled):  # pragma: no cover - no Vivado here or in CI
    run, _, _ = compiled
    r = CliRunner().invoke(
        cli, ["compile", str(run), "--board", "KV260", "--start-step", "qdev_bitstream", "--json"]
    )
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["bitstream"]["built"] and s["bitstream"]["bit"] and s["bitstream"]["hwh"]


def test_compile_runs_end_to_end_without_torch(compiled, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(compiled[0], run)
    shutil.rmtree(run / "compile")  # built anew by that process
    code = (
        "from click.testing import CliRunner\n"
        "from qdev.host.cli import cli\n"
        f"r = CliRunner().invoke(cli, ['compile', {str(run)!r}, '--board', 'KV260'])\n"
        "assert r.exit_code == 0, r.output\n"
    )
    loaded = loaded_heavy_modules(code)  # the whole build ran in that process
    assert (
        "brevitas" not in loaded
        and "qdev.training.trainer" not in loaded
        and "qdev.training.export" not in loaded
    )
    # torch only by finn-plus's own import (see tests/test_import_rules.py), never by a qdev module
    assert "torch" not in loaded or "/finn/" in loaded["torch"], loaded
    assert (run / "compile" / "KV260" / "intmodel" / "intmodel.npz").is_file()  # it really compiled


def test_mask_rule_chosen_on_validation_reaches_evaluate_and_the_bundle(compiled, tmp_path):
    """`qdev postprocess` searches on validation; evaluate and the bundle apply the run's rule to
    the integer codes exactly as the device does; a rule chosen for another checkpoint is
    refused."""
    import torch

    from qdev.device.accel.backend import open_accelerator
    from qdev.core.masks import dice
    from qdev.core.maskrule import MaskRule
    from qdev.training.checkpoint import load_checkpoint_model
    from qdev.training.data import load_busi, read_split
    from qdev.training.postprocess import model_codes
    from qdev.training.runs import RunFolder

    run = tmp_path / "tiny"
    shutil.copytree(compiled[0], run)
    r = CliRunner().invoke(cli, ["postprocess", str(run), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["split"] == "val" and len(doc["grid"]) >= 16
    assert any(
        g["rule"].get("min_peak") is not None for g in doc["grid"]
    )  # peak rules are searched
    # the steps of the search: each taken one cleared the bootstrap margin, and the rule kept is the
    # last taken
    assert [st["stage"] for st in doc["steps"]] == ["threshold and area", "peak"]
    taken = [st for st in doc["steps"] if st["taken"]]
    assert all(st["gain"] > 0 and st["p_gain"] >= 0.95 for st in taken)
    assert doc["rule"] == (taken[-1]["candidate"] if taken else MaskRule().to_dict())
    assert doc["chosen"]["dice_all"] >= doc["default"]["dice_all"]
    r = CliRunner().invoke(
        cli, ["postprocess", str(run)], env={"COLUMNS": "80"}
    )  # the table a user reads
    assert r.exit_code == 0 and "Traceback" not in r.output
    table = r.output.splitlines()
    assert all(len(line) <= 80 for line in table if line.startswith(("┃", "│", "┏", "└")))
    # one row per step of the search, marked as the margin judged it, then the rule kept, each rule
    # on one line
    verdicts = [line.split("│")[2].strip() for line in table if line.startswith("│")]
    assert verdicts == ["network"] + [
        "taken" if st["taken"] else "refused" for st in doc["steps"]
    ] + ["chosen"]
    kept = next(line for line in table if line.startswith("│") and "chosen" in line)
    assert f"code > {doc['rule']['min_code']}" in kept
    # a rule that changes this model's masks (a 2-epoch net is far from its decision boundary):
    # at least half the pixels marked, masks under 5 pixels cleared
    model, ckpt = load_checkpoint_model(run / "train" / "best.pt")
    arrays = load_busi(Path(RunFolder(run).stage("train")["config"]["data"]), (32, 32))
    split = read_split(run / "train" / "split.json")
    test_idx = split.indices(arrays, "test")
    codes, scale = model_codes(model, arrays.images[test_idx])
    rule = MaskRule(int(np.median(codes)) - 1, 5)
    assert not np.array_equal(rule.apply(codes), (codes > 0).astype(np.uint8))
    rf = RunFolder(run)
    t0 = rf.begin(
        "postprocess",
        {"test": "hand-set rule"},
        {"best.pt": rf.stage("train")["outputs"]["train/best.pt"]},
    )
    (run / "postprocess" / "rule.json").write_text(
        json.dumps({"rule": rule.to_dict(), "chosen_by": "test", "split": "val"})
    )
    rf.finish("postprocess", t0, [run / "postprocess" / "rule.json"])
    r = CliRunner().invoke(cli, ["evaluate", str(run), "--json"])
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    masks = rule.apply(codes)
    truth = arrays.masks[test_idx] > 0
    assert ev["mask_rule"]["min_code"] == rule.min_code and "metrics_without_rule" in ev
    assert ev["metrics"]["dice"] == pytest.approx(
        np.mean([dice(p, t) for p, t in zip(masks, truth)]), abs=1e-6
    )
    with torch.no_grad():  # and without the rule, the network's own logit > 0
        raw = (
            model(
                torch.from_numpy(arrays.images[test_idx].astype(np.float32) / 255.0).unsqueeze(1)
            )[:, 0]
            > 0
        )
    assert ev["metrics_without_rule"]["dice"] == pytest.approx(
        np.mean([dice(p, t) for p, t in zip(raw.numpy(), truth)]), abs=1e-6
    )
    # the bundle carries it, and the device's accelerator shows exactly those masks
    out = build_bundle(run, "KV260", DEV_KEY_DIR / "qdev-dev.key", tmp_path / "b" / "tiny")
    vb = verify_bundle(out, [DEV_KEY_DIR / "qdev-dev.pub"])
    assert vb.manifest["format_version"] == 2 and vb.manifest["mask_rule"] == rule.to_dict()
    acc = open_accelerator(out, vb.manifest, backend="software")
    device_masks, _ = acc.masks(arrays.images[test_idx])
    assert np.array_equal(device_masks, masks)
    # a rule chosen for another checkpoint: refused by evaluate and by the bundle, one line each
    doc = json.loads((run / "manifest.json").read_text())
    doc["stages"]["postprocess"]["inputs"]["best.pt"] = "0" * 64
    (run / "manifest.json").write_text(json.dumps(doc))
    r = CliRunner().invoke(cli, ["evaluate", str(run)])
    assert (
        r.exit_code == 2
        and r.output.strip()
        == f"qdev: {run}: the mask rule was chosen for another best.pt; rerun qdev postprocess"
    )


def test_lineage_from_a_session_back_to_the_data(compiled, phantom_busi, tmp_path, monkeypatch):
    """A bundle records its run manifest's and best.pt's sha256 and the data hash; `qdev lineage`
    walks session -> bundle -> run -> data checking each, and says MISMATCH (exit 1) when the
    run changed after the bundle was built."""
    from qdev.host.lineage import lineage

    run, _, _ = compiled
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(run, runs / run.name)
    bundle = build_bundle(
        runs / run.name,
        "KV260",
        DEV_KEY_DIR / "qdev-dev.key",
        tmp_path / "bitstreams" / "KV260" / "tiny",
    )
    lin = verify_bundle(bundle, [DEV_KEY_DIR / "qdev-dev.pub"]).manifest["lineage"]
    assert set(lin) == {"run_stages", "run_stages_sha256", "data_hash", "split", "best_pt_sha256"}
    assert lin["run_stages"] == ["train", "export", "compile/KV260"]  # what the bundle rests on
    from qdev.core.bundle import bundle_id

    bid = bundle_id((bundle / "manifest.json").read_bytes())
    session = tmp_path / "session"
    session.mkdir()
    (session / "manifest.json").write_text(
        json.dumps({"format": "qdev-session", "device": {"bundle_id": bid}, "counts": {"ok": 3}})
    )
    monkeypatch.setenv("QDEV_TRUST", str(DEV_KEY_DIR / "qdev-dev.pub"))
    roots = ["--root", str(tmp_path / "bitstreams"), "--root", str(runs)]
    r = CliRunner().invoke(cli, ["lineage", str(session), *roots, "--json"])
    assert r.exit_code == 0, r.output
    chain = json.loads(r.stdout)
    assert [x["what"] for x in chain] == ["data", "run", "bundle", "session"]
    assert [x["status"] for x in chain] == ["ok", "ok", "ok", "ok"], chain
    # a later stage of the run (an evaluation) leaves the bundle's lineage intact ...
    m = json.loads((runs / run.name / "manifest.json").read_text())
    m["stages"]["evaluate/val"] = {"status": "done", "outputs": {}}
    (runs / run.name / "manifest.json").write_text(json.dumps(m))
    links = {
        x.what: x
        for x in lineage(session, [tmp_path / "bitstreams", runs], [DEV_KEY_DIR / "qdev-dev.pub"])
    }
    assert links["run"].status == "ok", links["run"]
    # ... a stage it rests on, rewritten after the bundle: said, exit 1
    m["stages"]["train"]["config"]["epochs"] = 999
    (runs / run.name / "manifest.json").write_text(json.dumps(m))
    links = {
        x.what: x
        for x in lineage(session, [tmp_path / "bitstreams", runs], [DEV_KEY_DIR / "qdev-dev.pub"])
    }
    assert links["run"].status == "MISMATCH" and links["bundle"].status == "ok"
    r = CliRunner().invoke(cli, ["lineage", str(session), *roots])
    assert r.exit_code == 1 and "MISMATCH" in r.output


def test_every_recorded_stage_read_what_its_declaration_says(compiled):
    """train -> export -> compile as the CLI ran them: each stage's inputs are its declared ones
    (run-relative keys, each hash the producing stage's), its outputs the declared ones."""
    from fnmatch import fnmatch

    from qdev.training.runs import RunFolder
    from qdev.training.stages import STAGES

    run, _, _ = compiled
    stages = RunFolder(run).load()["stages"]
    for name, kind, params in (
        ("train", "train", {}),
        ("export", "export", {"checkpoint": "best"}),
        ("compile/KV260", "compile", {"board": "KV260"}),
    ):
        spec, st = STAGES[kind].resolve(**params), stages[name]
        declared = {i.path: i for i in spec.inputs}
        files = {k: v for k, v in st["inputs"].items() if "/" in k}
        assert set(files) <= set(declared), name
        assert {p for p, i in declared.items() if not i.optional} <= set(files), name
        for path, sha in files.items():
            assert stages[declared[path].stage]["outputs"][path] == sha, (name, path)
        assert st["outputs"] and all(
            any(fnmatch(o, pat) for pat in spec.outputs) for o in st["outputs"]
        ), name
        assert st["duration_s"] > 0
    assert {"export/golden_pixels.npy", "export/golden_codes.npy"} <= set(
        stages["compile/KV260"]["inputs"]
    )
