"""The tiny compiled QuantU-Net the compile tests share (built once per test session)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from qdev.host.cli import cli


@pytest.fixture(scope="session")
def compiled(phantom_busi, tmp_path_factory):
    """A tiny run (width 2, 32x32), exported and compiled for KV260 through the CLI."""
    run = tmp_path_factory.mktemp("run") / "tiny"
    r = CliRunner().invoke(cli, ["train", "--model", "quant", "--width", "2", "--size", "32", "--epochs", "2",
                                 "--threads", "1", "--data", str(phantom_busi), "--out", str(run)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["export", str(run), "--json"])
    assert r.exit_code == 0, r.output
    export = json.loads(r.stdout)
    r = CliRunner().invoke(cli, ["compile", str(run), "--board", "KV260", "--json"])
    assert r.exit_code == 0, r.output
    return run, export, json.loads(r.stdout)
