"""The one preprocessing of qdev: from a decoded frame to the model's input, and from a lesion
mask to the model's resolution. Training (:mod:`qdev.training.data.cache`), evaluation, every
probe source (:mod:`qdev.core.probe.sources`) and the host's Dice against ground truth call
these functions and nothing else, so training and deployment cannot drift apart.

* frame: 8-bit luma as Pillow's ``convert("L")`` (ITU-R 601: L = R*299/1000 + G*587/1000 +
  B*114/1000) for RGB, the values themselves for grayscale; other integer depths (16-bit DICOM,
  say) are min-max scaled to 0..255 first; then Pillow's bilinear (antialiased) resize to
  ``(height, width)``;
* mask: the boolean mask as 0/255, the same bilinear resize, threshold at 128 (0.5);
* model tensor: uint8 / 255 as float32 (the network's first quantizer scale is 1/255).

Pillow is the only dependency (numpy otherwise); it is on the board image and the workstation.
"""

from __future__ import annotations

import numpy as np

from qdev.core.errors import DataError

__all__ = [
    "check_image_header",
    "read_image",
    "read_mask_union",
    "to_luma_u8",
    "resize_u8",
    "to_model_input",
    "mask_to_model",
    "to_unit_float",
    "MAX_FRAME_PIXELS",
]

MAX_FRAME_PIXELS = 64_000_000  # a 8000x8000 frame; ultrasound frames are under 2 MP


class _Opened:
    """``with _Opened(path) as img``: Pillow's lazy open (header only), the size checked against
    :data:`MAX_FRAME_PIXELS` before any decoding, every failure a one-line DataError."""

    def __init__(self, path) -> None:  # noqa: ANN001
        self.path = path

    def __enter__(self):  # noqa: ANN204
        from PIL import Image

        self.errors = (Image.UnidentifiedImageError, OSError, SyntaxError, ValueError)
        try:
            self.img = Image.open(self.path)
        except Image.DecompressionBombError:  # Pillow's own, looser check fired first
            raise DataError(
                f"{self.path}: image is over the {MAX_FRAME_PIXELS:,}-pixel limit"
            ) from None
        except self.errors as exc:
            raise DataError(f"{self.path}: unreadable or corrupt image ({exc})") from exc
        w, h = self.img.size
        if w * h > MAX_FRAME_PIXELS:
            self.img.close()
            raise DataError(
                f"{self.path}: {w}x{h} image is over the {MAX_FRAME_PIXELS:,}-pixel limit"
            )
        return self.img

    def __exit__(self, exc_type, exc, tb) -> None:  # noqa: ANN001
        self.img.close()
        if (
            exc_type is not None
            and issubclass(exc_type, self.errors)
            and not issubclass(exc_type, DataError)
        ):
            raise DataError(f"{self.path}: unreadable or corrupt image ({exc})") from exc


def check_image_header(path) -> tuple[int, int]:  # noqa: ANN001  (str | Path)
    """(width, height) from the file's header, without decoding it; refuses unreadable files and
    images over :data:`MAX_FRAME_PIXELS` (cheap: a source checks all its files up front)."""
    with _Opened(path) as img:
        return img.size


def read_image(path) -> np.ndarray:  # noqa: ANN001  (str | Path)
    """Decode an image file to uint8 [H, W] (grayscale) or [H, W, 3] (RGB; other modes are
    converted to RGB), refusing images over :data:`MAX_FRAME_PIXELS` before decoding them.

    Raises:
        DataError: unreadable, corrupt, or too large (a decompression bomb).
    """
    with _Opened(path) as img:
        img.load()
        return np.asarray(img if img.mode in ("L", "RGB") else img.convert("RGB"))


def read_mask_union(paths, shape: tuple[int, int], image=None) -> np.ndarray:  # noqa: ANN001
    """BUSI-style ground truth: the union (logical OR) of lesion mask files, a pixel > 0 on any
    colour channel being lesion (alpha, being opacity, is ignored), bool [H, W].

    Raises:
        DataError: a mask is unreadable or its size differs from ``shape`` (the image's).
    """
    union = np.zeros(shape, dtype=bool)
    for path in paths:
        arr = read_image(path)
        if arr.shape[:2] != tuple(shape):
            of = f" {getattr(image, 'name', image)}" if image is not None else ""
            raise DataError(
                f"{path}: mask size {arr.shape[1]}x{arr.shape[0]} differs from image{of} "
                f"{shape[1]}x{shape[0]}"
            )
        union |= arr.reshape(shape[0], shape[1], -1).astype(bool).any(axis=-1)
    return union


def to_luma_u8(image: np.ndarray) -> np.ndarray:
    """Any decoded frame ([H, W], [H, W, 1], [H, W, 3|4], any integer or float depth) -> uint8
    luma [H, W]."""
    from PIL import Image

    a = np.asarray(image)
    if a.dtype != np.uint8:
        lo, hi = float(a.min()), float(a.max())
        a = (
            np.zeros(a.shape, np.uint8)
            if hi <= lo
            else ((a - lo) * (255.0 / (hi - lo))).round().astype(np.uint8)
        )
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return np.asarray(
            Image.fromarray(np.ascontiguousarray(a[..., :3]), "RGB").convert("L"), dtype=np.uint8
        )
    if a.ndim == 2:
        return a
    raise DataError(f"frame of shape {a.shape} is not an image")


def resize_u8(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [H, W] -> uint8 [height, width] by Pillow's bilinear resize (identity at that size)."""
    from PIL import Image

    if a.shape == (height, width):
        return a
    return np.asarray(
        Image.fromarray(a, "L").resize((width, height), Image.BILINEAR), dtype=np.uint8
    )


def to_model_input(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """A decoded frame -> the model's uint8 input [height, width] (the bytes sent to the device)."""
    return resize_u8(to_luma_u8(image), height, width)


def mask_to_model(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A boolean lesion mask at any size -> bool [height, width] at the model's resolution."""
    return resize_u8(np.asarray(mask, dtype=bool).astype(np.uint8) * 255, height, width) >= 128


def to_unit_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 model input -> float32 in [0, 1] (what the float network sees; exact: k/255)."""
    return np.asarray(pixels, dtype=np.float32) / np.float32(255.0)
