"""Scanning, validating and loading the BUSI layout, on generated files (corrupt ones included)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qdev.core.errors import DataError
from qdev.training.data import CLASSES, load_busi, resolve_busi_root, scan_busi
from qdev.training.data.cache import dataset_hash


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "Dataset_BUSI_with_GT"
    shutil.copytree(src, dst)
    return dst


def test_scan_pairs_images_and_masks(phantom_busi):
    recs = scan_busi(phantom_busi)
    assert [sum(r.label == k for r in recs) for k in range(3)] == [18, 12, 6]
    assert recs[0].id == "benign/benign (1)" and recs[0].cls == "benign"
    assert all(r.masks and r.masks[0].name.endswith("_mask.png") for r in recs)
    # natural order: (2) before (10)
    stems = [r.id for r in recs if r.label == 0]
    assert stems.index("benign/benign (2)") < stems.index("benign/benign (10)")


def test_load_shapes_ranges_labels(phantom_busi):
    arr = load_busi(phantom_busi, (32, 40))
    assert arr.images.shape == (36, 32, 40) and arr.images.dtype == np.uint8
    assert arr.masks.shape == (36, 32, 40) and arr.masks.dtype == bool
    assert list(np.bincount(arr.labels)) == [18, 12, 6]
    assert (
        not arr.masks[arr.labels == 2].any() and arr.masks[arr.labels == 0].any(axis=(1, 2)).all()
    )


def test_multi_mask_union_and_rgb_rgba_inputs(tmp_path, phantom_busi):
    root = _copy(phantom_busi, tmp_path)
    folder = root / "benign"
    img = np.asarray(Image.open(folder / "benign (1).png"))
    h, w = img.shape
    # original-archive style: RGB image, RGB mask, extra RGBA lesion mask (alpha 255 everywhere)
    Image.fromarray(np.stack([img] * 3, -1)).save(folder / "benign (1).png")
    m0 = np.zeros((h, w), np.uint8)
    m0[5:15, 5:15] = 255
    Image.fromarray(np.stack([m0] * 3, -1)).save(folder / "benign (1)_mask.png")
    m1 = np.zeros((h, w, 4), np.uint8)
    m1[..., 3] = 255
    m1[40:50, 60:70, :3] = 255
    Image.fromarray(m1, "RGBA").save(folder / "benign (1)_mask_1.png")
    rec = [r for r in scan_busi(root) if r.id == "benign/benign (1)"][0]
    assert [p.name for p in rec.masks] == ["benign (1)_mask.png", "benign (1)_mask_1.png"]
    arr = load_busi(root, (h, w))
    m = arr.masks[0]
    assert m[10, 10] and m[45, 65] and m.sum() == 200  # exactly the union, alpha ignored
    assert arr.n_mask_files[0] == 2
    assert np.array_equal(arr.images[0], img)  # R=G=B RGB reads back as the same gray


@pytest.mark.parametrize(
    "breakage, needle",
    [
        ("missing_class", "normal: class folder missing"),
        ("empty_class", "normal: class folder holds no images"),
        ("image_without_mask", "benign (3).png: image without mask"),
        ("mask_without_image", "benign (4)_mask.png: mask without image"),
        ("corrupt_png", "malignant (2).png: unreadable or corrupt image"),
        ("corrupt_mask", "benign (5)_mask.png: unreadable or corrupt image"),
        ("mask_size", "benign (6)_mask.png: mask size"),
    ],
)
def test_bad_input_names_the_file(tmp_path, phantom_busi, breakage, needle):
    root = _copy(phantom_busi, tmp_path)
    if breakage == "missing_class":
        shutil.rmtree(root / "normal")
    elif breakage == "empty_class":
        for p in (root / "normal").iterdir():
            p.unlink()
    elif breakage == "image_without_mask":
        (root / "benign" / "benign (3)_mask.png").unlink()
    elif breakage == "mask_without_image":
        (root / "benign" / "benign (4).png").unlink()
    elif breakage == "corrupt_png":
        p = root / "malignant" / "malignant (2).png"
        p.write_bytes(p.read_bytes()[:60])
    elif breakage == "corrupt_mask":
        (root / "benign" / "benign (5)_mask.png").write_bytes(b"not a png at all")
    elif breakage == "mask_size":
        Image.new("1", (7, 9)).save(root / "benign" / "benign (6)_mask.png")
    with pytest.raises(DataError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_busi(root, (32, 32), use_cache=False)


def test_cache_second_load_is_cached_and_keyed_by_content(tmp_path, phantom_busi, monkeypatch):
    root = _copy(phantom_busi, tmp_path)
    cache = tmp_path / "cache"
    first = load_busi(root, (32, 32), cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1
    import qdev.training.data.cache as cache_mod

    def boom(*a, **k):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(cache_mod, "_decode", boom)
    second = load_busi(root, (32, 32), cache_dir=cache)
    assert np.array_equal(first.images, second.images) and first.ids == second.ids
    monkeypatch.undo()
    # another size or changed content is another key
    load_busi(root, (24, 24), cache_dir=cache)
    Image.new("L", (50, 50), 7).save(root / "normal" / "normal (1).png")
    Image.new("1", (50, 50)).save(root / "normal" / "normal (1)_mask.png")
    assert dataset_hash(root, scan_busi(root)) != first.data_hash
    third = load_busi(root, (32, 32), cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 3 and third.data_hash != first.data_hash


def test_damaged_cache_is_rebuilt(tmp_path, phantom_busi):
    cache = tmp_path / "cache"
    a = load_busi(phantom_busi, (16, 16), cache_dir=cache)
    for p in cache.glob("*.npz"):
        p.write_bytes(b"garbage")
    b = load_busi(phantom_busi, (16, 16), cache_dir=cache)
    assert np.array_equal(a.masks, b.masks)


def test_resolve_order(tmp_path, monkeypatch, phantom_busi):
    monkeypatch.setenv("QDEV_BUSI", str(phantom_busi))
    assert resolve_busi_root(None) == phantom_busi
    parent = tmp_path / "x"
    shutil.copytree(phantom_busi, parent / "Dataset_BUSI_with_GT")
    assert resolve_busi_root(str(parent)) == parent / "Dataset_BUSI_with_GT"  # --data wins
    with pytest.raises(DataError, match="no such folder.*get BUSI"):
        resolve_busi_root(str(tmp_path / "nope"))
    monkeypatch.setenv("QDEV_BUSI", str(tmp_path / "gone"))
    with pytest.raises(DataError, match="QDEV_BUSI=.*no such folder"):
        resolve_busi_root(None)


def test_class_order():
    # label indices are stored in caches, packs and splits: BUSI's three keep their places and
    # the other datasets' "lesion of no stated class" comes after them
    from qdev.training.data.busi import BUSI_CLASSES

    assert CLASSES == ("benign", "malignant", "normal", "lesion")
    assert BUSI_CLASSES == CLASSES[:3]
