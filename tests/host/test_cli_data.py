"""`qdev --version`, `qdev data inspect|split|phantom`, and the `qdev: ...` / exit 2 error path."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from qdev import __version__
from qdev.host.cli import cli, main


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_version():
    r = run("--version")
    assert r.exit_code == 0 and __version__ in r.output


def test_inspect_json_on_generated_data(phantom_busi):
    r = run("data", "inspect", "--data", str(phantom_busi), "--json", "--size", "32")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["source"] == "busi" and rep["images"] == 36
    assert (
        rep["classes"]["benign"]["images"] == 18 and rep["classes"]["normal"]["lesion_images"] == 0
    )
    assert rep["duplicates"]["groups"] >= 3
    assert rep["splits"]["grouped"]["groups_crossing_splits"] == 0
    assert (
        sum(rep["splits"]["grouped"]["sizes"][n]["total"] for n in ("train", "val", "test")) == 36
    )


def test_inspect_table(phantom_busi):
    r = run("data", "inspect", "--data", str(phantom_busi), "--size", "32")
    assert r.exit_code == 0
    for word in (
        "Images per class",
        "malignant",
        "Duplicates",
        "groups",
        "Splits",
        "grouped",
        "paper",
    ):
        assert word in r.output


def test_inspect_falls_back_to_phantom_when_busi_absent(monkeypatch):
    import qdev.host.dataset_info as hi

    monkeypatch.delenv("QDEV_BUSI", raising=False)
    monkeypatch.setattr(hi, "find_default_busi", lambda: None)
    r = run("data", "inspect", "--json")
    assert r.exit_code == 0
    rep = json.loads(r.output)
    assert rep["source"] == "phantom" and rep["images"] == 44


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda root: shutil.rmtree(root / "malignant"), "malignant: class folder missing"),
        (
            lambda root: (root / "benign" / "benign (2)_mask.png").unlink(),
            "benign (2).png: image without mask",
        ),
        (
            lambda root: (root / "normal" / "normal (3).png").write_bytes(
                b"\x89PNG\r\n\x1a\nbroken"
            ),
            "normal (3).png: unreadable or corrupt image",
        ),
    ],
)
def test_bad_data_is_one_line_exit_2(tmp_path, phantom_busi, make, needle):
    root = tmp_path / "b"
    shutil.copytree(phantom_busi, root)
    make(root)
    r = CliRunner().invoke(cli, ["data", "inspect", "--data", str(root), "--no-cache"])
    assert r.exit_code == 2
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("qdev: ") and needle in lines[0]


def test_missing_data_folder_says_where_to_get_busi(tmp_path):
    r = CliRunner().invoke(cli, ["data", "inspect", "--data", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "qdev: " in r.output and "get BUSI" in r.output


def test_split_and_phantom_commands(tmp_path):
    out = tmp_path / "ph"
    r = run("data", "phantom", "--out", str(out), "--per-class", "8,6,4")
    assert r.exit_code == 0 and (out / "normal" / "normal (4)_mask.png").is_file()
    r = run(
        "data", "split", "--data", str(out), "--kind", "grouped", "--out", str(tmp_path / "s.json")
    )
    assert r.exit_code == 0 and "0 duplicate groups cross splits" in r.output
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["kind"] == "grouped" and len(doc["ids"]["train"]) > 0
    r = CliRunner().invoke(
        cli, ["data", "phantom", "--out", str(tmp_path / "x"), "--per-class", "a,b"]
    )
    assert r.exit_code == 2 and r.output.startswith("qdev: ")


def test_console_script_entry_point(phantom_busi):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "qdev.host.cli",
            "data",
            "inspect",
            "--data",
            str(phantom_busi),
            "--json",
            "--size",
            "16",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and json.loads(out.stdout)["images"] == 36
    assert main(["--version"]) == 0
