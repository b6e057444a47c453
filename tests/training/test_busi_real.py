"""The real BUSI copy: counts from its SOURCE.md, known duplicates, and the committed splits."""

from __future__ import annotations

import pytest

from tests.conftest import REPO
from qdev.training.data import find_duplicates, load_busi, make_split, read_split, resolve_busi_root

pytestmark = pytest.mark.busi


@pytest.fixture(scope="module")
def busi(busi_path):
    arr = load_busi(resolve_busi_root(str(busi_path)))
    return arr, find_duplicates(arr)


def test_counts_match_source_md(busi):
    arr, _ = busi
    assert [int((arr.labels == k).sum()) for k in range(3)] == [437, 210, 133]
    assert int(arr.n_mask_files.sum()) == 798
    assert int((arr.n_mask_files > 1).sum()) == 17
    assert arr.images.shape[1:] == (128, 128)
    assert arr.orig_hw[:, 1].min() == 190 and arr.orig_hw[:, 1].max() == 1048
    assert not arr.masks[arr.labels == 2].any()


def test_known_cross_class_duplicates_are_grouped(busi):
    arr, dups = busi
    ix = arr.index()
    known = [
        ("benign (433)", "malignant (145)"),
        ("benign (333)", "malignant (77)"),
        ("benign (399)", "malignant (93)"),
        ("benign (406)", "malignant (94)"),
        ("benign (42)", "malignant (51)"),
        ("benign (131)", "malignant (51)"),
        ("benign (85)", "malignant (52)"),
        ("benign (164)", "malignant (52)"),
        ("benign (269)", "normal (1)"),
        ("benign (437)", "normal (34)"),
    ]
    for a, b in known:
        ia = ix[f"benign/{a}"]
        ib = ix[f"{b.split(' ')[0]}/{b}"]
        assert dups.group_of[ia] == dups.group_of[ib], (a, b)
    s = dups.summary(arr)
    assert 120 <= s["groups"] <= 170 and s["exact_duplicate_pairs"] >= 1


def test_committed_splits_are_reproducible_and_leak_free(busi):
    arr, dups = busi
    for kind in ("grouped", "paper"):
        committed = read_split(REPO / "training" / "splits" / f"busi-{kind}-seed0.json")
        fresh = make_split(arr, dups, kind, 0)
        assert committed.ids == fresh.ids, kind
    grouped = read_split(REPO / "training" / "splits" / "busi-grouped-seed0.json")
    assert grouped.crossing_groups() == []
    for g in dups.duplicate_groups:
        names = {n for n in grouped.ids for i in g if arr.ids[i] in grouped.ids[n]}
        assert len(names) == 1
    paper = read_split(REPO / "training" / "splits" / "busi-paper-seed0.json")
    assert len(paper.crossing_groups()) > 20  # the paper's random split leaks
