"""One accelerator interface, several backends, chosen the way PYNQ chooses its device.

``open_accelerator(bundle, backend="auto")`` asks every registered backend, highest priority
first, whether it can run here (``probe``) and opens the first that can: ``pynq`` on a board with
the bundle's bitstream, else ``software`` (the bit-exact numpy executor of the bundle's integer
model). Naming a backend that cannot run is an error that says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qdev.core.errors import QdevError
from qdev.core.maskrule import DEFAULT_RULE, MaskRule

__all__ = [
    "IoSpec",
    "Accelerator",
    "Backend",
    "register_backend",
    "backends",
    "open_accelerator",
    "codes_to_mask",
    "clock_mhz",
]


@dataclass(frozen=True)
class IoSpec:
    """What goes in and comes out (from the bundle manifest's ``io``)."""

    height: int
    width: int
    channels: int
    idt: str
    odt: str
    mask_rule: MaskRule
    output_scale: float

    @staticmethod
    def from_manifest(manifest: dict) -> IoSpec:
        io = manifest.get("io") or {}
        try:
            _, h, w, c = io["ishape_normal"]
            return IoSpec(
                int(h),
                int(w),
                int(c),
                str(io["idt"]),
                str(io["odt"]),
                MaskRule.from_manifest(manifest.get("mask_rule")),
                float(manifest.get("output_scale", 1.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise QdevError(f"bundle manifest has no usable io spec ({exc})") from exc

    def to_dict(self) -> dict:
        return {
            "height": self.height,
            "width": self.width,
            "channels": self.channels,
            "idt": self.idt,
            "odt": self.odt,
            "mask_rule": self.mask_rule.describe(),
            "mask_rule_params": self.mask_rule.to_dict(),
            "output_scale": self.output_scale,
        }


def clock_mhz(manifest: dict) -> float | None:
    """The fabric clock a bundle was built for (manifest ``clock_ns``), None if not stated."""
    ns = manifest.get("clock_ns")
    return 1000.0 / float(ns) if ns else None


def codes_to_mask(codes: np.ndarray, rule: MaskRule = DEFAULT_RULE) -> np.ndarray:
    """Output codes [N, H, W, 1] -> binary masks uint8 [N, H, W] by the bundle's mask rule."""
    return rule.apply(codes)


class Accelerator:
    """An opened accelerator: ``run(pixels) -> codes`` on uint8 frames [N, H, W]."""

    name = "accelerator"
    io: IoSpec
    clock_mhz: float | None
    manifest: dict

    def _bind(self, manifest: dict) -> None:
        """Take the io spec and clock from the bundle manifest (every backend starts here)."""
        self.manifest = manifest
        self.io = IoSpec.from_manifest(manifest)
        self.clock_mhz = clock_mhz(manifest)

    def run(self, pixels: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def masks(self, pixels: np.ndarray) -> tuple[np.ndarray, float]:
        """(binary masks [N, H, W], seconds the accelerator took)."""
        t0 = time.perf_counter()
        codes = self.run(pixels)
        return codes_to_mask(codes, self.io.mask_rule), time.perf_counter() - t0

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def describe(self) -> dict:
        return {"backend": self.name, "io": self.io.to_dict(), "clock_mhz": self.clock_mhz}


@dataclass
class Backend:
    name: str
    priority: int
    probe: Callable[[Path, dict], str | None]  # None when usable, else the reason why not
    open: Callable[[Path, dict], Accelerator]


_REGISTRY: dict[str, Backend] = {}


def register_backend(b: Backend) -> None:
    _REGISTRY[b.name] = b


def backends() -> list[Backend]:
    _load_builtin()
    return sorted(_REGISTRY.values(), key=lambda b: -b.priority)


def _load_builtin() -> None:
    import qdev.device.accel.onnx_backend  # noqa: F401  (registers "onnx")
    import qdev.device.accel.pynq_backend  # noqa: F401  (registers "pynq")
    import qdev.device.accel.software  # noqa: F401  (registers "software")


def open_accelerator(bundle_dir: Path, manifest: dict, backend: str = "auto") -> Accelerator:
    """Open ``bundle_dir`` (already verified) on the named backend or the best available one.

    Raises:
        QdevError: unknown backend, or the named one cannot run here (with its reason).
    """
    avail = backends()
    if backend != "auto":
        match = [b for b in avail if b.name == backend]
        if not match:
            raise QdevError(
                f"unknown backend {backend!r} (known: {', '.join(b.name for b in avail)})"
            )
        why = match[0].probe(bundle_dir, manifest)
        if why:
            raise QdevError(f"backend {backend} cannot run here: {why}")
        return match[0].open(bundle_dir, manifest)
    reasons = []
    for b in avail:
        why = b.probe(bundle_dir, manifest)
        if why is None:
            try:
                return b.open(bundle_dir, manifest)
            except (
                QdevError
            ) as exc:  # e.g. a model the onnx lowering does not express: the next one
                why = f"could not open ({exc})"
        reasons.append(f"{b.name}: {why}")
    raise QdevError("no accelerator backend can run this bundle here (" + "; ".join(reasons) + ")")
