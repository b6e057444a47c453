"""Run-folder provenance: the revision a stage ran on, and whether the checkout held more than
it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from qdev.training import runs

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _repo(tmp_path: Path) -> Path:
    """A checkout laid out as qdev's: runs.py at training/runs.py, so parents[1] is the repo."""
    repo = tmp_path / "repo"
    (repo / "training").mkdir(parents=True)
    (repo / "training" / "runs.py").write_text("# stand-in\n")
    for cmd in (
        ["init", "-q"],
        ["add", "."],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
    ):
        subprocess.run(["git", "-C", str(repo), *cmd], check=True)
    return repo


def test_stage_records_revision_and_whether_tracked_files_differ(tmp_path, monkeypatch):
    repo = _repo(tmp_path)
    monkeypatch.delenv("QDEV_GIT_REVISION", raising=False)
    monkeypatch.setattr(runs, "__file__", str(repo / "training" / "runs.py"))
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    run = runs.RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.begin("train", {})
    st = run.load()["stages"]["train"]
    assert st["git_revision"] == head and st["git_dirty"] is False
    (repo / "scratch.txt").write_text("untracked files do not count\n")
    assert runs.git_dirty() is False
    (repo / "training" / "runs.py").write_text("# edited, not committed\n")
    run.begin("train", {})
    assert run.load()["stages"]["train"]["git_dirty"] is True
    monkeypatch.setenv("QDEV_GIT_REVISION", "abc123")  # a wheel on a box with no checkout
    run.begin("train", {})
    st = run.load()["stages"]["train"]
    assert st["git_revision"] == "abc123" and st["git_dirty"] is None


def test_no_checkout_gives_none(tmp_path, monkeypatch):
    monkeypatch.delenv("QDEV_GIT_REVISION", raising=False)
    (tmp_path / "training").mkdir()
    monkeypatch.setattr(runs, "__file__", str(tmp_path / "training" / "runs.py"))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert runs.git_revision() is None and runs.git_dirty() is None
