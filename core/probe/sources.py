"""Probe frame sources, shared by the host tool (``qdev stream --probe``) and the on-board
runtime (``qdev-device serve --probe``).

``open_probe(spec)`` understands:

* ``phantom`` / ``phantom:SEED`` - the synthetic cine of :mod:`device.probe.phantom` (live);
* ``video:N`` or ``/dev/videoN`` - a video device through OpenCV (frame grabbers, USB probes; live);
* a cine file (``.mp4 .avi .mov .mkv .m4v .wmv``) through OpenCV (file: lossless);
* a DICOM file, single- or multi-frame, any photometric interpretation, through pydicom; the
  frame time comes from FrameTime (0018,1063), CineRate (0018,0040) or RecommendedDisplayFrameRate;
* an image folder or a glob of images (BUSI-style PNGs; ``*_mask*`` files are skipped), Pillow.

Every frame is turned into the model input by :func:`qdev.core.preprocess.to_model_input`, the
function training uses too. OpenCV and pydicom are optional imports: a source that needs a missing
one says so.
"""

from __future__ import annotations

import glob as globmod
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qdev.core.errors import ConfigError, DataError
from qdev.core.preprocess import check_image_header, read_image, read_mask_union

__all__ = ["ProbeFrame", "ProbeSource", "open_probe", "CINE_EXTS", "IMAGE_EXTS"]

CINE_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".wmv"}
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


@dataclass
class ProbeFrame:
    index: int
    image: np.ndarray  # uint8 [H, W] (grayscale) or [H, W, 3] (RGB), native size
    t_source: float  # seconds on the source's own clock (frame index / rate for files)
    t_capture: float  # time.time() when the frame was read
    truth: np.ndarray | None = None  # a known mask (phantom) at native size
    display_window: tuple[float, float] | None = (
        None  # DICOM window (centre, width), for display only
    )
    name: str | None = None  # the frame's own file, where the source is a set of files
    spacing: tuple[float, float] | None = (
        None  # (row, column) pixel spacing in mm, where the source says
    )


class ProbeSource:
    """A stream of frames. ``live`` sources drop frames when the consumer is slower."""

    name = "probe"
    live = False
    fps: float | None = None
    n_frames: int | None = None

    def frames(self) -> Iterator[ProbeFrame]:
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027
        pass

    def describe(self) -> dict:
        return {"source": self.name, "live": self.live, "fps": self.fps, "frames": self.n_frames}


class PhantomSource(ProbeSource):
    live = True

    def __init__(self, seed: int = 0, n_frames: int | None = None, size: int = 256) -> None:
        from qdev.core.probe.phantom import PhantomCine, PhantomConfig

        self.cine = PhantomCine(PhantomConfig(height=size, width=size, seed=seed), n_frames)
        self.name = f"phantom:{seed}"
        self.fps = self.cine.frame_rate_hz
        self.n_frames = n_frames

    def frames(self) -> Iterator[ProbeFrame]:
        for f in self.cine:
            yield ProbeFrame(f.index, f.image, f.t_s, time.time(), f.mask)


class OpenCVSource(ProbeSource):
    def __init__(self, target: str | int, live: bool) -> None:
        try:
            import cv2
        except ImportError as exc:
            raise ConfigError(
                "this probe source needs OpenCV (pip install opencv-python-headless)"
            ) from exc
        self._cv2 = cv2
        self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            raise DataError(f"OpenCV cannot open {target!r}")
        self.live = live
        self.name = f"video:{target}" if live else str(target)
        fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if fps > 0 else None
        n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.n_frames = n if (n > 0 and not live) else None

    def frames(self) -> Iterator[ProbeFrame]:
        cv2 = self._cv2
        i = 0
        while True:
            ok, bgr = self.cap.read()
            if not ok:
                if i == 0:
                    raise DataError(f"{self.name}: no frame could be read")
                return
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if bgr.ndim == 3 else bgr
            t = i / self.fps if self.fps else float(i)
            yield ProbeFrame(i, rgb, t, time.time())
            i += 1

    def close(self) -> None:
        self.cap.release()


class DicomSource(ProbeSource):
    def __init__(self, path: Path) -> None:
        try:
            import pydicom
        except ImportError as exc:
            raise ConfigError("DICOM probe sources need pydicom (pip install pydicom)") from exc
        try:
            ds = pydicom.dcmread(str(path))
            arr = ds.pixel_array
        except (
            Exception
        ) as exc:  # pydicom raises many types (InvalidDicomError, missing handlers ...)
            raise DataError(f"{path}: not a readable DICOM image ({exc})") from exc
        pi = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
        # pydicom (3.x) already returns RGB for YBR_* data (pixel_array's as_rgb default);
        # palette colour still needs its lookup table
        if pi == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            arr = apply_color_lut(arr, ds)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
        if pi == "PALETTE COLOR":
            samples = 3
        if frames == 1:
            arr = arr[None]
        if pi == "MONOCHROME1":  # 0 = white: invert so that tissue is bright as in BUSI
            arr = arr.max() - arr
        if samples == 1 and arr.ndim == 4:
            arr = arr[..., 0]
        self.arr = arr
        self.name = str(path)
        self.n_frames = int(arr.shape[0])
        self.fps = _dicom_fps(ds)
        self.photometric = pi
        self.window = _dicom_window(ds)
        self.spacing = dicom_spacing(ds)
        self.identity = {
            "path": str(Path(path).resolve()),
            "frames": self.n_frames,
            **{k: str(getattr(ds, k, "") or "") for k in _IDENTITY},
        }

    def frames(self) -> Iterator[ProbeFrame]:
        dt = 1.0 / self.fps if self.fps else 0.0
        for i in range(self.n_frames):
            yield ProbeFrame(
                i,
                self.arr[i],
                i * dt,
                time.time(),
                display_window=self.window,
                spacing=self.spacing,
                name=f"{Path(self.name).name}#{i + 1}",
            )

    def describe(self) -> dict:
        return {
            **super().describe(),
            "photometric": self.photometric,
            "window": self.window,
            "spacing_mm": self.spacing,
            "dicom": self.identity,
        }


# what a DICOM SEG / SR made from a session needs to reference the source (issue 32)
_IDENTITY = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "PatientID",
    "Modality",
)


def dicom_spacing(ds) -> tuple[float, float] | None:  # noqa: ANN001
    """(row, column) spacing in mm: PixelSpacing, else the first ultrasound region's physical deltas
    when their unit is cm (code 3), else None."""
    try:
        ps = getattr(ds, "PixelSpacing", None)
        if ps is not None and len(ps) == 2 and float(ps[0]) > 0 and float(ps[1]) > 0:
            return float(ps[0]), float(ps[1])
        for region in getattr(ds, "SequenceOfUltrasoundRegions", None) or []:
            if (
                int(getattr(region, "PhysicalUnitsXDirection", 0)) == 3
                and int(getattr(region, "PhysicalUnitsYDirection", 0)) == 3
            ):
                dx, dy = float(region.PhysicalDeltaX), float(region.PhysicalDeltaY)
                if dx > 0 and dy > 0:
                    return dy * 10.0, dx * 10.0
    except (TypeError, ValueError, AttributeError):
        return None
    return None


def _dicom_window(ds) -> tuple[float, float] | None:  # noqa: ANN001
    """The first (centre, width) of the VOI window, in stored values after the rescale."""
    c, w = getattr(ds, "WindowCenter", None), getattr(ds, "WindowWidth", None)
    if c is None or w is None:
        return None
    try:
        c = float(c[0] if hasattr(c, "__len__") and not isinstance(c, str) else c)
        w = float(w[0] if hasattr(w, "__len__") and not isinstance(w, str) else w)
        slope, icpt = (
            float(getattr(ds, "RescaleSlope", 1) or 1),
            float(getattr(ds, "RescaleIntercept", 0) or 0),
        )
    except (TypeError, ValueError):
        return None
    if w <= 1 or slope == 0:
        return None
    return (c - icpt) / slope, w / abs(
        slope
    )  # the window applies to rescaled values; ours are stored ones


def _dicom_fps(ds) -> float | None:  # noqa: ANN001
    ft = getattr(ds, "FrameTime", None)  # ms per frame
    ftv = getattr(ds, "FrameTimeVector", None)  # ms between frames (the first entry is 0)
    try:
        if ft:
            return 1000.0 / float(ft)
        if ftv and len(ftv) > 1:
            gaps = [float(v) for v in list(ftv)[1:] if float(v) > 0]
            return 1000.0 * len(gaps) / sum(gaps) if gaps else None
        for tag in ("CineRate", "RecommendedDisplayFrameRate"):
            v = getattr(ds, tag, None)
            if v:
                return float(v)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return None


class ImageFolderSource(ProbeSource):
    def __init__(self, files: list[Path], name: str, fps: float | None = None) -> None:
        for f in files:  # refuse a bomb or a corrupt file now, before any session folder exists
            check_image_header(f)
        self.files = files
        self.name = name
        self.n_frames = len(files)
        self.fps = fps

    def frames(self) -> Iterator[ProbeFrame]:
        for i, f in enumerate(self.files):
            a = read_image(f)
            yield ProbeFrame(i, a, float(i), time.time(), _truth(f, a.shape[:2]), name=f.name)


def _truth(image: Path, hw: tuple[int, int]) -> np.ndarray | None:
    """The BUSI-style ground truth of an image (union of ``<stem>_mask*.png``, read as training
    reads it), or None when there is none or it does not fit the image."""
    masks = sorted(image.parent.glob(f"{globmod.escape(image.stem)}_mask*.png"))
    if not masks:
        return None
    try:
        return read_mask_union(masks, hw, image)
    except DataError:
        return None


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
        return head[128:132] == b"DICM"
    except OSError:
        return False


def _images(paths: list[str]) -> list[Path]:
    return sorted(
        Path(p)
        for p in paths
        if Path(p).suffix.lower() in IMAGE_EXTS and "_mask" not in Path(p).name
    )


def open_probe(spec: str, phantom_frames: int | None = None) -> ProbeSource:
    """A probe source from its spec (see module doc).

    Raises:
        ConfigError: an unknown spec or a missing optional reader.
        DataError: the source exists but cannot be read.
    """
    if spec == "phantom" or spec.startswith("phantom:"):
        seed = spec.partition(":")[2]
        if seed and not seed.isdigit():
            raise ConfigError(f"--probe {spec}: phantom:SEED needs an integer seed")
        return PhantomSource(int(seed or 0), phantom_frames)
    if spec.startswith("igtl://"):
        from qdev.core.probe.igtl_source import IgtlSource

        return IgtlSource(spec)
    if spec.startswith("video:"):
        dev = spec[len("video:") :]
        return OpenCVSource(int(dev) if dev.isdigit() else dev, live=True)
    if spec.startswith("/dev/video"):
        return OpenCVSource(spec, live=True)
    if any(c in spec for c in "*?["):
        files = _images(globmod.glob(spec))
        if not files:
            raise DataError(f"--probe {spec}: the glob matches no image")
        return ImageFolderSource(files, spec)
    p = Path(spec)
    if p.is_dir():
        files = _images([str(x) for x in p.rglob("*")])
        if not files:
            raise DataError(
                f"--probe {spec}: the folder holds no image ({', '.join(sorted(IMAGE_EXTS))})"
            )
        return ImageFolderSource(files, spec)
    if not p.exists():
        raise ConfigError(
            f"--probe {spec}: no such file, folder or source "
            "(phantom, video:N, a cine file, a DICOM file, an image folder or glob)"
        )
    if _is_dicom(p):
        return DicomSource(p)
    if p.suffix.lower() in CINE_EXTS:
        return OpenCVSource(str(p), live=False)
    if p.suffix.lower() in IMAGE_EXTS:
        return ImageFolderSource([p], spec)
    if os.access(p, os.R_OK):
        raise ConfigError(f"--probe {spec}: unknown file type {p.suffix or '(none)'}")
    raise DataError(f"--probe {spec}: not readable")
