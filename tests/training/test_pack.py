"""BUSI packs: one file that trains, evaluates and splits exactly as the PNG folder it came from,
and refuses, in one line, a pack that is damaged, foreign or made for another size."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from qdev.core.errors import DataError
from qdev.host.cli import cli
from qdev.training.data import (
    find_duplicates,
    load_busi,
    make_split,
    open_busi,
    read_pack,
    write_pack,
)


@pytest.fixture(scope="module")
def pack(phantom_busi, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pack") / "phantom-32.npz"
    r = CliRunner().invoke(
        cli, ["data", "pack", "--data", str(phantom_busi), "--size", "32", "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert "36 images at 32x32" in r.output
    return out


def test_pack_holds_exactly_what_the_folder_gives(phantom_busi, pack):
    folder = load_busi(phantom_busi, (32, 32))
    packed = read_pack(pack, (32, 32))
    assert packed.data_hash == folder.data_hash and packed.ids == folder.ids
    assert packed.pixel_sha == folder.pixel_sha
    for name in ("labels", "images", "masks", "orig_hw", "n_mask_files", "thumbs"):
        a, b = getattr(packed, name), getattr(folder, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    # the grouped split (made from the thumbnails) comes out the same
    s1 = make_split(folder, find_duplicates(folder), "grouped", 0)
    s2 = make_split(packed, find_duplicates(packed), "grouped", 0)
    assert all(
        np.array_equal(s1.indices(folder, n), s2.indices(packed, n))
        for n in ("train", "val", "test")
    )


def test_open_busi_takes_a_pack_from_data_or_the_environment(pack, monkeypatch):
    assert open_busi(str(pack), (32, 32)).root == pack
    monkeypatch.setenv("QDEV_BUSI", str(pack))
    assert open_busi(None, (32, 32)).data_hash == read_pack(pack, (32, 32)).data_hash


def _rewrite(src: Path, dst: Path, **changes) -> Path:
    with np.load(src) as z:
        d = {k: z[k] for k in z.files}
    d.update(changes)
    np.savez_compressed(dst, **d)
    return dst


@pytest.mark.parametrize(
    "case, message",
    [
        ("garbage", "unreadable BUSI pack"),
        ("truncated", "unreadable BUSI pack"),
        ("foreign npz", "not a qdev BUSI pack (no meta_json"),
        ("other version", "preprocessing v1"),
        ("short labels", "damaged BUSI pack (arrays disagree with its 36 ids: labels)"),
    ],
)
def test_bad_packs_are_one_line_data_errors(pack, tmp_path, case, message):
    bad = tmp_path / "bad.npz"
    if case == "garbage":
        bad.write_bytes(b"\x00" * 100)
    elif case == "truncated":
        bad.write_bytes(pack.read_bytes()[: pack.stat().st_size // 2])
    elif case == "foreign npz":
        np.savez(bad, images=np.zeros((2, 32, 32), np.uint8))
    else:
        with np.load(pack) as z:
            meta = json.loads(str(z["meta_json"]))
            labels = z["labels"]
        if case == "other version":
            meta["preprocess_version"] = 1
            _rewrite(pack, bad, meta_json=np.array(json.dumps(meta)))
        else:
            _rewrite(pack, bad, labels=labels[:-1])
    with pytest.raises(DataError) as e:
        read_pack(bad, (32, 32))
    assert message in str(e.value) and "\n" not in str(e.value)
    assert zipfile.is_zipfile(pack)  # the good pack is untouched


def test_a_pack_of_another_size_is_refused_with_the_command_that_makes_one(pack):
    with pytest.raises(DataError, match=r"qdev data pack --size 64x64"):
        read_pack(pack, (64, 64))


def test_train_and_evaluate_from_a_pack_record_the_folders_data_hash(phantom_busi, pack, tmp_path):
    """The path of a GPU box with no BUSI: train from the pack (QDEV_BUSI), evaluate here from the
    folder; both see the same data, and the manifest says so."""
    out = tmp_path / "run"
    env = {"QDEV_BUSI": str(pack), "OMP_NUM_THREADS": "1"}
    r = CliRunner(env=env).invoke(
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
            "1",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    stage = json.loads((out / "manifest.json").read_text())["stages"]["train"]
    assert stage["inputs"]["data_hash"] == load_busi(phantom_busi, (32, 32)).data_hash
    assert stage["config"]["data"] is None and stage["accelerator"] is None
    r = CliRunner(env={"QDEV_BUSI": str(phantom_busi)}).invoke(
        cli, ["evaluate", str(out), "--json"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["metrics"]["n_images"] > 0


def test_cli_pack_errors_are_one_line_and_leave_no_file(tmp_path):
    out = tmp_path / "p.npz"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "qdev.host.cli",
            "data",
            "pack",
            "--data",
            str(tmp_path / "nope"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and p.stderr.startswith("qdev: ") and p.stderr.count("\n") == 1, (
        p.stderr
    )
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_full_disk_leaves_no_pack_and_no_temporary_file(phantom_busi, tmp_path, monkeypatch):
    import errno

    arrays = load_busi(phantom_busi, (32, 32))

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full)
    with pytest.raises(DataError, match="cannot write the pack .No space left on device"):
        write_pack(arrays, tmp_path / "p.npz")
    assert list(tmp_path.iterdir()) == []


def test_inspect_and_split_read_a_pack_as_they_read_the_folder(phantom_busi, pack, tmp_path):
    runner = CliRunner()
    r1 = runner.invoke(
        cli, ["data", "inspect", "--data", str(phantom_busi), "--size", "32", "--json"]
    )
    r2 = runner.invoke(cli, ["data", "inspect", "--data", str(pack), "--size", "32", "--json"])
    assert r1.exit_code == 0 and r2.exit_code == 0, r2.output
    a, b = json.loads(r1.stdout), json.loads(r2.stdout)
    assert b["source"] == "pack" and b["root"] == str(pack)
    for key in ("data_hash", "images", "classes", "duplicates", "splits", "width_px", "height_px"):
        assert a[key] == b[key], key
    r = runner.invoke(cli, ["data", "inspect", "--data", str(pack), "--size", "64"])
    assert r.exit_code == 2 and "qdev data pack --size 64x64" in r.output
    r = runner.invoke(
        cli, ["data", "split", "--data", str(pack), "--out", str(tmp_path / "s.json")]
    )
    assert (
        r.exit_code == 2 and "a pack of [32, 32] images" in r.output
    )  # split files are made at 128x128
