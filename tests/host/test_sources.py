"""Probe sources on real files: pydicom's ultrasound examples, a generated cine, an image folder."""

from __future__ import annotations

import numpy as np
import pytest

from qdev.core.errors import ConfigError, DataError
from qdev.core.preprocess import to_model_input
from qdev.core.probe.sources import open_probe


@pytest.mark.parametrize(
    "name,frames,fps",
    [
        ("ybr_color", 30, 30.0),
        ("rgb_color", 1, None),
        ("palette_color", 1, None),
        ("jpeg2k", 1, None),
    ],
)
def test_dicom_ultrasound_examples(name, frames, fps):
    from pydicom import examples

    src = open_probe(str(examples.get_path(name)))
    assert src.n_frames == frames and not src.live
    assert (src.fps is None and fps is None) or src.fps == pytest.approx(
        fps, rel=1e-3
    )  # FrameTime 33.333 ms
    got = list(src.frames())
    assert len(got) == frames
    px = to_model_input(got[0].image, 128, 128)
    assert px.shape == (128, 128) and px.dtype == np.uint8 and px.max() > 0


def test_dicom_colour_conversion_is_not_applied_twice():
    """pydicom already hands back RGB for YBR data; a second conversion would tint gray pixels."""
    from pydicom import dcmread, examples

    ds = dcmread(examples.get_path("ybr_color"))
    rgb = ds.pixel_array[0]
    src = open_probe(str(examples.get_path("ybr_color")))
    first = next(iter(src.frames())).image
    assert np.array_equal(first, rgb)


def test_generated_cine_file(tmp_path):
    import cv2

    path = tmp_path / "cine.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (160, 120))
    for i in range(12):
        img = np.full((120, 160, 3), 20 * i % 255, np.uint8)
        cv2.circle(img, (40 + 5 * i, 60), 15, (255, 255, 255), -1)
        w.write(img)
    w.release()
    src = open_probe(str(path))
    assert not src.live and src.fps == pytest.approx(25.0) and src.n_frames == 12
    frames = list(src.frames())
    assert len(frames) == 12 and frames[3].image.shape == (120, 160, 3)


def test_image_folder_skips_masks_and_glob(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((50, 60), 40 * i, np.uint8)).save(tmp_path / f"img ({i}).png")
        Image.fromarray(np.zeros((50, 60), np.uint8)).save(tmp_path / f"img ({i})_mask.png")
    assert open_probe(str(tmp_path)).n_frames == 3
    assert open_probe(str(tmp_path / "img (1)*.png")).n_frames == 1
    # BUSI-style ground truth rides along: the union of <stem>_mask*.png
    m2 = np.zeros((50, 60), np.uint8)
    m2[10:20, 10:20] = 255
    Image.fromarray(m2).save(tmp_path / "img (1)_mask_1.png")
    fr = list(open_probe(str(tmp_path)).frames())
    assert fr[1].truth is not None and int(fr[1].truth.sum()) == 100 and int(fr[0].truth.sum()) == 0


def test_phantom_is_live_with_truth():
    src = open_probe("phantom:3", phantom_frames=2)
    fr = list(src.frames())
    assert src.live and len(fr) == 2 and fr[0].truth is not None


@pytest.mark.parametrize(
    "spec,err", [("nope/missing.mp4", ConfigError), ("phantom:x", ConfigError)]
)
def test_bad_probe_specs(spec, err, tmp_path):
    with pytest.raises(err):
        open_probe(spec)
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(DataError):
        list(open_probe(str(bad)).frames())


@pytest.mark.parametrize(
    "name, syntax",
    [
        ("SC_rgb_jpeg_dcmtk.dcm", "JPEG baseline"),
        ("SC_rgb_jpeg_gdcm.dcm", "JPEG baseline (GDCM-encoded)"),
        ("JPEG2000.dcm", "JPEG 2000"),
        ("MR_small_RLE.dcm", "RLE (16-bit)"),
        ("SC_rgb_rle.dcm", "RLE (RGB)"),
        ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS lossless (16-bit)"),
        ("JPEGLSNearLossless_16.dcm", "JPEG-LS near-lossless (16-bit)"),
    ],
)
def test_compressed_dicom_transfer_syntaxes_decode(name, syntax):
    """The transfer syntaxes hospitals send, through pydicom's plugins (pylibjpeg, pyjpegls), on
    pydicom's own test files: decoded, and equal to what pydicom decodes them to."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    ds = dcmread(path)
    assert ds.file_meta.TransferSyntaxUID.is_compressed, syntax
    frames = list(open_probe(path).frames())
    ref = ds.pixel_array
    assert len(frames) == int(getattr(ds, "NumberOfFrames", 1) or 1)
    first = frames[0].image
    assert first.shape[:2] == (ds.Rows, ds.Columns)
    assert (
        np.array_equal(first, ref if ref.ndim == first.ndim else ref[0])
        or ds.PhotometricInterpretation == "MONOCHROME1"
    )
    px = to_model_input(first, 128, 128)
    assert (
        px.dtype == np.uint8 and px.shape == (128, 128) and px.max() > px.min()
    )  # 16-bit scaled, not clipped


def test_frame_time_vector_gives_the_rate():
    from pydicom.dataset import Dataset

    from qdev.core.probe.sources import _dicom_fps

    ds = Dataset()
    ds.FrameTimeVector = [0, 40, 40, 40]
    assert _dicom_fps(ds) == pytest.approx(25.0)
