"""The tiny compiled QuantU-Net the compile tests share (built once per test session)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from qdev.host.cli import cli


@pytest.fixture(scope="session")
def compiled(phantom_busi, tmp_path_factory):
    """A tiny run (width 2, 32x32), exported and compiled for KV260 through the CLI."""
    run = tmp_path_factory.mktemp("run") / "tiny"
    r = CliRunner().invoke(
        cli,
        [
            "train",
            "--model",
            "quant",
            "--width",
            "2",
            "--size",
            "32",
            "--epochs",
            "2",
            "--threads",
            "1",
            "--data",
            str(phantom_busi),
            "--out",
            str(run),
        ],
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["export", str(run), "--json"])
    assert r.exit_code == 0, r.output
    export = json.loads(r.stdout)
    r = CliRunner().invoke(cli, ["compile", str(run), "--board", "KV260", "--json"])
    assert r.exit_code == 0, r.output
    return run, export, json.loads(r.stdout)


def simulate_copy(compiled, tmp_path: Path, mode: str, *extra: str) -> tuple[Path, dict, dict]:  # noqa: ANN001
    """A copy of the tiny build, its ``--verify MODE`` step rerun through the CLI: (the copy, the
    summary's verification, the step's report). The step must have passed and recorded ``MODE``."""
    run = tmp_path / "tiny"
    if not run.exists():
        shutil.copytree(compiled[0], run)
    r = CliRunner().invoke(
        cli,
        [
            "compile",
            str(run),
            "--board",
            "KV260",
            "--verify",
            mode,
            "--start-step",
            f"qdev_{mode}",
            "--json",
            *extra,
        ],
    )
    assert r.exit_code == 0, r.output
    v = json.loads(r.stdout)["verification"]
    assert mode in v["modes_run"] and v["steps"][f"qdev_{mode}"]["equal"] is True
    return run, v, json.loads((run / "compile" / "KV260" / mode / "report.json").read_text())
