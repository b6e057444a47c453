"""Synthetic breast-ultrasound phantom: speckle, depth attenuation, hypoechoic lesions, exact masks.

The model is a simple B-mode imaging chain, enough to exercise every stage of qdev without
patient data:

1. *Echogenicity map*: layered tissue (skin line, subcutaneous fat, glandular tissue) built from
   low-frequency noise, with hypoechoic lesions (echogenicity ~0.15 of the surroundings) and,
   for "malignant" lesions, posterior acoustic shadowing; "benign" ones get posterior enhancement.
2. *Speckle*: a circular complex Gaussian scattering field low-pass filtered to the resolution
   cell (``speckle_sigma_px``) whose magnitude is Rayleigh distributed -- fully developed speckle.
3. *Depth attenuation*: amplitude multiplied by ``exp(-attenuation * depth / height)``.
4. *Log compression* to 8 bits, like a scanner's display chain.

Lesion masks are evaluated on the pixel grid with the same boundary function that shapes the
echogenicity, so the mask is exact by construction. A :class:`PhantomCine` moves lesions slowly
and lets the speckle decorrelate gradually between frames, like a hand-held probe.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["Lesion", "PhantomConfig", "PhantomFrame", "PhantomCine", "phantom_image", "render"]

LESION_KINDS = ("benign", "malignant", "normal")


@dataclass(frozen=True)
class Lesion:
    """One lesion: an ellipse whose radius is modulated by a few angular harmonics."""

    cy: float
    cx: float
    ry: float
    rx: float
    angle: float = 0.0
    harmonics: tuple[tuple[int, float, float], ...] = ()  # (order k, amplitude, phase)
    echo: float = 0.15  # echogenicity relative to tissue
    posterior: float = 0.0  # <0 shadowing, >0 enhancement (relative amplitude change)

    def mask(self, height: int, width: int) -> np.ndarray:
        """Boolean mask of the pixels whose centres lie inside the lesion."""
        return self.radius_ratio(height, width) <= 1.0

    def radius_ratio(self, height: int, width: int) -> np.ndarray:
        """Normalised radial distance (<= 1 inside) of every pixel centre."""
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
        dy, dx = yy - self.cy, xx - self.cx
        c, s = math.cos(self.angle), math.sin(self.angle)
        u = (c * dx + s * dy) / self.rx
        v = (-s * dx + c * dy) / self.ry
        r = np.hypot(u, v)
        theta = np.arctan2(v, u)
        boundary = np.ones_like(r)
        for k, amp, phase in self.harmonics:
            boundary += amp * np.cos(k * theta + phase)
        return r / np.maximum(boundary, 0.2)

    def moved(self, dy: float, dx: float) -> Lesion:
        return replace(self, cy=self.cy + dy, cx=self.cx + dx)


@dataclass(frozen=True)
class PhantomConfig:
    """Settings of the phantom generator.

    Attributes:
        height: frame height in pixels (axial / depth direction).
        width: frame width in pixels (lateral direction).
        speckle_sigma_px: resolution cell size (Gaussian sigma of the point spread, pixels).
        attenuation: amplitude decay ``exp(-attenuation * depth/height)`` over the full depth.
        dynamic_range: log-compression strength (larger = more contrast in dark regions).
        frame_rate_hz: nominal frame rate of the cine.
        motion_px_per_frame: lesion drift speed in a cine.
        speckle_decorrelation: fraction of new speckle per cine frame (0 = frozen, 1 = fresh).
        kind: lesion kind of generated frames: ``benign``, ``malignant``, ``normal`` or ``mixed``.
        seed: random seed (the whole output is a function of the config).
    """

    height: int = 128
    width: int = 128
    speckle_sigma_px: float = 0.9
    attenuation: float = 1.2
    dynamic_range: float = 30.0
    frame_rate_hz: float = 20.0
    motion_px_per_frame: float = 0.35
    speckle_decorrelation: float = 0.15
    kind: str = "mixed"
    seed: int = 0


@dataclass
class PhantomFrame:
    """One frame of the phantom: 8-bit image, exact lesion mask, index and time stamp."""

    image: np.ndarray  # uint8 [H, W]
    mask: np.ndarray  # bool [H, W]
    index: int
    t_s: float
    lesions: list[Lesion] = field(default_factory=list)


def _lowpass(field_: np.ndarray, sigma_y: float, sigma_x: float) -> np.ndarray:
    """Gaussian low-pass of a 2-D array via the FFT (periodic boundary; numpy only)."""
    h, w = field_.shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    transfer = np.exp(-2.0 * (math.pi**2) * ((fy * sigma_y) ** 2 + (fx * sigma_x) ** 2))
    return np.fft.ifft2(np.fft.fft2(field_) * transfer)


def random_lesion(rng: np.random.Generator, height: int, width: int, kind: str) -> Lesion:
    """Draw a lesion of the given kind with a size and shape that vary from draw to draw."""
    scale = min(height, width)
    ry = rng.uniform(0.07, 0.2) * scale
    rx = ry * rng.uniform(1.0, 1.8)  # breast lesions tend to be wider than tall
    cy = rng.uniform(0.3, 0.65) * height
    cx = rng.uniform(0.25, 0.75) * width
    if kind == "malignant":  # irregular, spiculated margin, taller-than-wide, shadowing
        harmonics = tuple(
            (k, rng.uniform(0.04, 0.12) / (1 + 0.15 * k), rng.uniform(0, 2 * math.pi))
            for k in (3, 5, 7, 11)
        )
        rx = ry * rng.uniform(0.8, 1.2)
        return Lesion(cy, cx, ry, rx, rng.uniform(-0.5, 0.5), harmonics, 0.1, -0.45)
    harmonics = ((2, rng.uniform(0.0, 0.08), rng.uniform(0, 2 * math.pi)),)
    return Lesion(cy, cx, ry, rx, rng.uniform(-0.4, 0.4), harmonics, 0.2, 0.25)


def _tissue(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Layered tissue echogenicity in [0.2, 1]: skin line, fat layer, glandular texture."""
    depth = np.linspace(0.0, 1.0, height)[:, None]
    skin = 1.0 * np.exp(-(((depth - 0.03) / 0.015) ** 2))
    fat_bottom = rng.uniform(0.15, 0.3)
    layers = np.where(depth < fat_bottom, 0.45, 0.75)
    texture = _lowpass(rng.standard_normal((height, width)), height / 12, width / 8).real
    texture /= max(float(np.abs(texture).max()), 1e-9)
    tissue = layers + 0.25 * texture + skin
    return np.clip(tissue, 0.2, 1.0)


def render(
    lesions: list[Lesion],
    tissue: np.ndarray,
    speckle: np.ndarray,
    cfg: PhantomConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one B-mode frame.

    Args:
        lesions: lesions in the frame.
        tissue: echogenicity of the lesion-free tissue, float [H, W].
        speckle: complex scattering field, [H, W] (already low-passed).
        cfg: phantom settings.

    Returns:
        ``(image, mask)``: uint8 image [H, W] and the exact boolean lesion mask [H, W].
    """
    h, w = tissue.shape
    echo = tissue.copy()
    mask = np.zeros((h, w), dtype=bool)
    for lesion in lesions:
        ratio = lesion.radius_ratio(h, w)
        inside = ratio <= 1.0
        mask |= inside
        # soft edge (1.5 px) for realism; the mask is the exact boundary ratio <= 1
        edge = np.clip((ratio - 1.0) * min(lesion.rx, lesion.ry) / 1.5, 0.0, 1.0)
        echo = echo * (lesion.echo + (1.0 - lesion.echo) * np.where(inside, 0.0, edge))
        if lesion.posterior:
            cols = np.abs(np.arange(w) - lesion.cx) < lesion.rx * 0.8
            below = (np.arange(h)[:, None] > lesion.cy + lesion.ry) & cols[None, :]
            echo = np.where(below & ~mask, echo * (1.0 + lesion.posterior), echo)
    depth = np.linspace(0.0, 1.0, h)[:, None]
    amplitude = echo * np.abs(speckle) * np.exp(-cfg.attenuation * depth)
    amplitude /= np.percentile(amplitude, 99.5) + 1e-9
    compressed = np.log1p(cfg.dynamic_range * amplitude) / math.log1p(cfg.dynamic_range)
    image = np.clip(compressed * 255.0, 0, 255).astype(np.uint8)
    return image, mask


def _speckle(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    raw = rng.standard_normal((h, w)) + 1j * rng.standard_normal((h, w))
    # axial resolution is finer than lateral in B-mode: stretch the cell laterally
    field_ = _lowpass(raw, sigma, sigma * 1.8)
    return field_ / np.sqrt(np.mean(np.abs(field_) ** 2))


def _kind_for(rng: np.random.Generator, kind: str) -> str:
    if kind == "mixed":
        return str(rng.choice(LESION_KINDS, p=[0.55, 0.27, 0.18]))
    if kind not in LESION_KINDS:
        raise ValueError(f"unknown phantom kind {kind!r}; expected one of {LESION_KINDS} or mixed")
    return kind


def phantom_image(
    seed: int, kind: str = "mixed", height: int = 128, width: int = 128
) -> tuple[np.ndarray, np.ndarray, str]:
    """One still phantom image.

    Returns:
        ``(image uint8 [H,W], mask bool [H,W], kind)``; ``normal`` images have an empty mask.
    """
    rng = np.random.default_rng(seed)
    kind = _kind_for(rng, kind)
    cfg = PhantomConfig(height=height, width=width, seed=seed, kind=kind)
    lesions = [] if kind == "normal" else [random_lesion(rng, height, width, kind)]
    if kind == "benign" and rng.random() < 0.1:  # occasionally two lesions, like BUSI's _mask_1
        lesions.append(random_lesion(rng, height, width, kind))
    tissue = _tissue(rng, height, width)
    image, mask = render(lesions, tissue, _speckle(rng, height, width, cfg.speckle_sigma_px), cfg)
    return image, mask, kind


class PhantomCine:
    """An endless (or ``n_frames`` long) synthetic cine: slow lesion motion, evolving speckle.

    Iterating yields :class:`PhantomFrame` objects; the same config gives the same frames.
    """

    def __init__(self, cfg: PhantomConfig | None = None, n_frames: int | None = None) -> None:
        self.cfg = cfg or PhantomConfig()
        self.n_frames = n_frames

    @property
    def frame_rate_hz(self) -> float:
        return self.cfg.frame_rate_hz

    def __iter__(self) -> Iterator[PhantomFrame]:
        cfg = self.cfg
        h, w = cfg.height, cfg.width
        rng = np.random.default_rng(cfg.seed)
        kind = _kind_for(rng, cfg.kind)
        lesions = [] if kind == "normal" else [random_lesion(rng, h, w, kind)]
        tissue = _tissue(rng, h, w)
        speckle = _speckle(rng, h, w, cfg.speckle_sigma_px)
        heading = rng.uniform(0, 2 * math.pi)
        rho = math.sqrt(1.0 - cfg.speckle_decorrelation)
        index = 0
        while self.n_frames is None or index < self.n_frames:
            image, mask = render(lesions, tissue, speckle, cfg)
            yield PhantomFrame(image, mask, index, index / cfg.frame_rate_hz, list(lesions))
            index += 1
            # slow wandering motion, kept inside the field of view
            heading += rng.normal(0.0, 0.2)
            step = cfg.motion_px_per_frame
            moved = []
            for lesion in lesions:
                dy, dx = step * math.sin(heading), step * math.cos(heading)
                if not (
                    0.2 * h < lesion.cy + dy < 0.75 * h and 0.15 * w < lesion.cx + dx < 0.85 * w
                ):
                    heading += math.pi
                    dy, dx = -dy, -dx
                moved.append(lesion.moved(dy, dx))
            lesions = moved
            fresh = _speckle(rng, h, w, cfg.speckle_sigma_px)
            speckle = rho * speckle + math.sqrt(1.0 - rho**2) * fresh
