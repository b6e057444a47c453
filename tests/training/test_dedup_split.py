"""Duplicate detection, union-find grouping, and leak-free splits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qdev.core.errors import DataError
from qdev.training.data import find_duplicates, load_busi, make_split, read_split, write_split
from qdev.training.data.dedup import UnionFind


def test_union_find_chains():
    uf = UnionFind(6)
    uf.union(0, 1)
    uf.union(1, 2)
    uf.union(4, 5)
    assert uf.groups() == [[0, 1, 2], [3], [4, 5]]


@pytest.fixture(scope="module")
def loaded(phantom_busi):
    arr = load_busi(phantom_busi, (32, 32))
    return arr, find_duplicates(arr)


def test_planted_recrops_are_found(loaded):
    arr, dups = loaded
    index = arr.index()
    # write_phantom_busi plants a re-cropped copy after every 6th image: (6)->(7), (12)->(13)
    for a, b in [
        ("benign/benign (6)", "benign/benign (7)"),
        ("malignant/malignant (6)", "malignant/malignant (7)"),
        ("benign/benign (12)", "benign/benign (13)"),
    ]:
        assert dups.group_of[index[a]] == dups.group_of[index[b]], (a, b)
    # independent phantom images are not merged wholesale
    assert len(dups.duplicate_groups) <= 8 and max(len(g) for g in dups.groups) <= 3


def test_exact_duplicate_across_classes_is_grouped(tmp_path, phantom_busi):
    import shutil

    root = tmp_path / "b"
    shutil.copytree(phantom_busi, root)
    shutil.copy(root / "benign" / "benign (2).png", root / "malignant" / "malignant (1).png")
    arr = load_busi(root, (32, 32))
    dups = find_duplicates(arr)
    i, j = arr.index()["benign/benign (2)"], arr.index()["malignant/malignant (1)"]
    assert (i, j) in dups.exact_pairs and dups.group_of[i] == dups.group_of[j]
    assert dups.summary(arr)["groups_spanning_classes"] >= 1


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_grouped_split_never_splits_a_group(loaded, seed):
    arr, dups = loaded
    split = make_split(arr, dups, "grouped", seed)
    where = {i: n for n in split.ids for i in split.ids[n]}
    assert sorted(where) == sorted(arr.ids)  # every image exactly once
    for g in dups.groups:
        assert len({where[arr.ids[i]] for i in g}) == 1
    assert split.crossing_groups() == []
    sizes = split.sizes()
    assert abs(sizes["train"]["total"] - 0.7 * len(arr)) <= 3
    for c in ("benign", "malignant", "normal"):
        assert sizes["test"][c] >= 1 and sizes["val"][c] >= 1


def test_paper_split_is_stratified_random(loaded):
    arr, dups = loaded
    s0 = make_split(arr, dups, "paper", 0)
    s1 = make_split(arr, dups, "paper", 1)
    assert s0.ids != s1.ids and s0.sizes()["train"]["benign"] == round(0.7 * 18)
    assert make_split(arr, dups, "paper", 0).ids == s0.ids  # deterministic


def test_split_json_roundtrip_and_errors(tmp_path, loaded):
    arr, dups = loaded
    split = make_split(arr, dups, "grouped", 0)
    path = write_split(split, tmp_path / "s.json")
    back = read_split(path)
    assert back.ids == split.ids and back.kind == "grouped" and back.groups == split.groups
    assert np.array_equal(back.indices(arr, "test"), split.indices(arr, "test"))
    doc = json.loads(path.read_text())
    doc["ids"]["test"].append(doc["ids"]["train"][0])
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="in both train and test"):
        read_split(tmp_path / "bad.json")
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(DataError, match="unreadable split file"):
        read_split(tmp_path / "junk.json")
    with pytest.raises(DataError, match="not found"):
        read_split(tmp_path / "none.json")
    doc = json.loads(path.read_text())
    doc["ids"]["val"].append("benign/benign (999)")
    (tmp_path / "other.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="not in the dataset"):
        read_split(tmp_path / "other.json").indices(arr, "val")
