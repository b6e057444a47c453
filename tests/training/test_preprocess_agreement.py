"""One preprocessing: the tensors training learns from and the bytes the host sends to the device
(and the truth it scores them against) are the same, bit for bit, on generated images of every
kind a user may hand qdev (grayscale, colour RGB, RGBA, palette, odd sizes, multi-file masks)."""

from __future__ import annotations

import shutil

import numpy as np
from PIL import Image

from qdev.core.preprocess import mask_to_model, to_model_input
from qdev.core.probe.sources import open_probe
from qdev.training.data import load_busi, scan_busi


def _varied_copy(src, dst):
    root = dst / "busi"
    shutil.copytree(src, root)
    rng = np.random.default_rng(5)
    imgs = sorted(p for p in (root / "benign").glob("*.png") if "_mask" not in p.name)
    # colour RGB with a real hue, RGBA, palette, and an odd size with its masks
    h, w = np.asarray(Image.open(imgs[0])).shape
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").save(imgs[0])
    rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(imgs[1])
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").quantize(64).save(
        imgs[2]
    )
    odd = rng.integers(0, 256, (77, 131), dtype=np.uint8)
    Image.fromarray(odd).save(imgs[3])
    m = np.zeros((77, 131, 3), np.uint8)
    m[20:50, 30:90] = (255, 0, 0)
    Image.fromarray(m).save(imgs[3].with_name(imgs[3].stem + "_mask.png"))
    m2 = np.zeros((77, 131, 4), np.uint8)
    m2[..., 3] = 255
    m2[5:12, 100:120, :3] = 200
    Image.fromarray(m2, "RGBA").save(imgs[3].with_name(imgs[3].stem + "_mask_1.png"))
    return root


def test_training_tensors_equal_the_deployed_input_bytes(phantom_busi, tmp_path):
    import torch

    from qdev.training.trainer import TrainConfig, prepare_data

    root = _varied_copy(phantom_busi, tmp_path)
    size = 48
    arrays = load_busi(root, (size, size))
    recs = {r.id: r for r in scan_busi(root)}
    modes = set()
    for i, rid in enumerate(arrays.ids):
        path = recs[rid].image
        modes.add(Image.open(path).mode)
        (frame,) = list(open_probe(str(path)).frames())  # the host's probe source for a file
        sent = to_model_input(frame.image, size, size)  # the bytes the device receives
        assert sent.dtype == np.uint8 and np.array_equal(sent, arrays.images[i]), rid
        assert frame.truth is not None and np.array_equal(
            mask_to_model(frame.truth, size, size), arrays.masks[i]
        ), rid
    assert {"L", "RGB", "RGBA", "P"} <= modes  # every kind was really exercised
    # and the float tensors the network trains on are exactly those bytes / 255
    data = prepare_data(TrainConfig(data=str(root), size=size))
    for name in ("train", "val", "test"):
        where = arrays.index()
        idx = [where[i] for i in data.ids[name]]
        x = data.x[name][:, 0]
        assert torch.equal(x * 255.0, torch.from_numpy(arrays.images[idx]).float())
        assert torch.equal(data.y[name][:, 0].bool(), torch.from_numpy(arrays.masks[idx]))
