"""bench/sweep.py, the way the GPU sweep uses it: recipes side by side from a BUSI pack, stopped at
a deadline, their run folders gathered in size-capped tar parts that a checkout unpacks and
evaluates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from click.testing import CliRunner

from qdev.host.cli import cli

REPO = Path(__file__).resolve().parents[2]
TINY = (
    "--model quant --width 2 --size 32 --batch-size 8 --lambda 0.05 --bits 2..8 "
    "--split grouped --device cpu"
)


def _sweep(tmp: Path, pack: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, QDEV_BUSI=str(pack))
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / "sweep.py"), "--runs", str(tmp / "runs"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=600,
    )


def test_sweep_trains_side_by_side_and_collects_parts_a_checkout_evaluates(phantom_busi, tmp_path):
    pack = tmp_path / "p.npz"
    assert (
        CliRunner()
        .invoke(
            cli, ["data", "pack", "--data", str(phantom_busi), "--size", "32", "--out", str(pack)]
        )
        .exit_code
        == 0
    )
    p = _sweep(
        tmp_path,
        pack,
        "--jobs",
        "2",
        "--collect",
        str(tmp_path / "out"),
        "--part-mb",
        "0.05",
        f"a {TINY} --epochs 2 --seed 0",
        f"b {TINY} --epochs 1 --seed 1",
    )
    assert p.returncode == 0, p.stderr
    table = [
        line for line in p.stdout.splitlines() if line.startswith("| a ") or line.startswith("| b ")
    ]
    assert (
        table[0].split("|")[2].strip() == "0" and table[0].split("|")[4].strip() == "2"
    )  # rc 0, 2 epochs
    assert table[1].split("|")[4].strip() == "1"
    parts = sorted((tmp_path / "out").glob("runs.*.tar"))
    assert len(parts) > 1  # capped at 50 kB each: the checkpoints alone are larger
    back = tmp_path / "back"
    for part in parts:
        with tarfile.open(part) as t:
            t.extractall(back, filter="data")
    for name in ("a", "b"):
        run = back / "runs" / name
        assert {"best.pt", "log.jsonl", "split.json"} <= {f.name for f in (run / "train").iterdir()}
        assert not (run / "train" / "last.pt").exists()  # finished runs leave it behind
        assert (back / "runs" / f"{name}.log").is_file()
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["stages"]["train"]["status"] == "done"
    # the unpacked run evaluates here against the folder it was packed from
    r = CliRunner(env={"QDEV_BUSI": str(phantom_busi)}).invoke(
        cli, ["evaluate", str(back / "runs" / "a"), "--json"]
    )
    assert r.exit_code == 0, r.output


def test_a_run_past_the_deadline_is_stopped_and_its_last_checkpoint_kept(phantom_busi, tmp_path):
    pack = tmp_path / "p.npz"
    assert (
        CliRunner()
        .invoke(
            cli, ["data", "pack", "--data", str(phantom_busi), "--size", "32", "--out", str(pack)]
        )
        .exit_code
        == 0
    )
    p = _sweep(
        tmp_path,
        pack,
        "--deadline",
        "25",
        "--collect",
        str(tmp_path / "out"),
        f"long {TINY} --epochs 500",
    )
    assert p.returncode == 0, p.stderr
    row = next(line for line in p.stdout.splitlines() if line.startswith("| long "))
    assert row.split("|")[2].strip() not in ("0", "None")  # stopped, not finished
    names = set()
    for part in (tmp_path / "out").glob("runs.*.tar"):
        with tarfile.open(part) as t:
            names |= set(t.getnames())
    assert "runs/long/train/last.pt" in names  # resumable elsewhere with --resume
