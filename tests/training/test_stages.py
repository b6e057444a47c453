"""The declared stages (training/stages.py) drive the run manifest: inputs verified before any
work and recorded under run-relative keys, outputs found from the declaration, durations
measured."""

from __future__ import annotations

import json
import time

import pytest

from qdev.core.errors import QdevError
from qdev.training.runs import RunFolder, sha256_file
from qdev.training.stages import STAGES, StageRecord

PARAMS = {"board": "KV260", "checkpoint": "best", "split": "test", "at": "", "stem": "metrics"}


def _trained(tmp_path):
    run = RunFolder(tmp_path / "run")
    (run.path / "train").mkdir(parents=True)
    rec = StageRecord(run, "train", {"epochs": 1}).begin({"data_hash": "d" * 64})
    for name in ("best.pt", "last.pt", "log.jsonl", "split.json"):
        (run.path / "train" / name).write_bytes(name.encode())
    (run.path / "train" / "notes.txt").write_text("not declared")
    time.sleep(0.01)
    rec.finish()
    return run


def test_every_declared_stage_resolves_and_reads_only_earlier_stages() -> None:
    for kind, spec in STAGES.items():
        r = spec.resolve(**PARAMS)
        assert "{" not in r.name + "".join(i.path + i.stage for i in r.inputs) + "".join(
            r.outputs
        ), kind
        for i in r.inputs:
            assert i.path.startswith(i.stage.split("/")[0] + "/"), (
                kind,
                i,
            )  # a stage's outputs live in its folder
            assert i.stage != r.name


def test_a_stage_records_declared_outputs_and_duration(tmp_path) -> None:
    run = _trained(tmp_path)
    st = run.stage("train")
    assert set(st["outputs"]) == {
        "train/best.pt",
        "train/last.pt",
        "train/log.jsonl",
        "train/split.json",
    }
    assert st["inputs"] == {"data_hash": "d" * 64} and st["duration_s"] > 0


def test_inputs_are_verified_before_the_work_and_keyed_by_run_path(tmp_path) -> None:
    run = _trained(tmp_path)
    rec = StageRecord(run, "postprocess", {"split": "val"}).begin()
    assert run.load()["stages"]["postprocess"]["inputs"] == {
        "train/best.pt": sha256_file(run.path / "train/best.pt"),
        "train/split.json": sha256_file(run.path / "train/split.json"),
    }
    assert rec.input("train/split.json") == run.path / "train/split.json"
    with pytest.raises(QdevError, match="not one of its declared inputs"):
        rec.input("train/log.jsonl")
    (run.path / "train" / "best.pt").write_bytes(b"changed")
    before = json.loads(run.manifest_path.read_text())
    with pytest.raises(QdevError, match="sha256 differs"):
        StageRecord(run, "export", {}, checkpoint="best").begin()
    assert (
        json.loads(run.manifest_path.read_text()) == before
    )  # refused before the stage was marked


def test_an_optional_input_is_recorded_where_its_stage_wrote_it(tmp_path) -> None:
    run = _trained(tmp_path)
    args = dict(split="val", at="", checkpoint="best", stem="metrics_val")
    rec = StageRecord(run, "evaluate", {}, **args).begin()
    assert not rec.has_input("postprocess/rule.json")
    (run.path / "postprocess").mkdir()
    (run.path / "postprocess" / "rule.json").write_text("{}")
    p = StageRecord(run, "postprocess", {}).begin()
    p.finish()
    rec = StageRecord(run, "evaluate", {}, **args).begin()
    assert rec.has_input("postprocess/rule.json")
    assert "postprocess/rule.json" in run.load()["stages"]["evaluate/val"]["inputs"]


def test_finish_before_begin_is_refused(tmp_path) -> None:
    run = _trained(tmp_path)
    with pytest.raises(QdevError, match="before it began"):
        StageRecord(run, "postprocess", {}).finish()
