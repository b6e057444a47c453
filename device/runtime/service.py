"""DeviceRuntime: what the device does, independent of the link it is reached over.

It owns the bundle store, the opened accelerator of the active bundle (re-opened after every
flash/activate/rollback), the power meter and the counters. Every method is thread-safe: one
lock serialises the accelerator, another the store, and the counters have their own.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qdev import __version__
from qdev.device.accel.backend import Accelerator, open_accelerator
from qdev.core.errors import QdevError
from qdev.device.power import PowerMeter, open_power_meter
from qdev.core.protocol import VERSION as PROTOCOL_VERSION
from qdev.device.store import BundleStore, InstallResult

__all__ = ["RuntimeConfig", "DeviceRuntime", "FrameResult"]

log = logging.getLogger("qdev.device")


@dataclass
class RuntimeConfig:
    """How the device runtime runs.

    Attributes:
        store: bundle store folder.
        board: this device's board name (bundles for another board are refused); None: any.
        backend: ``auto`` | ``pynq`` | ``onnx`` | ``software``.
        power: ``auto`` | ``pmbus`` | ``hwmon`` | ``estimate``.
        hwmon_root: where hwmon sensors are read from.
        threads: the BLAS/OpenMP threads the process was pinned to (reported in INFO).
        dev_key: trust qdev's shipped development key (``--dev-key``; INFO warns).
    """

    store: str = "/var/lib/qdev"
    board: str | None = None
    backend: str = "auto"
    power: str = "auto"
    hwmon_root: str = "/sys/class/hwmon"
    threads: int | None = None
    dev_key: bool = False


@dataclass
class FrameResult:
    frame_id: int
    mask: np.ndarray  # uint8 [H, W]
    t_start: float
    t_end: float
    power_w: float
    energy_mj: float
    energy_kind: str

    def meta(self) -> dict:
        h, w = self.mask.shape
        return {
            "frame_id": self.frame_id,
            "h": h,
            "w": w,
            "device_ms": (self.t_end - self.t_start) * 1e3,
            "t_start": self.t_start,
            "t_end": self.t_end,
            "power_w": self.power_w,
            "energy_mj": self.energy_mj,
            "energy_kind": self.energy_kind,
            "mask_area": int(self.mask.sum()),
        }

    def mask_bytes(self) -> bytes:
        return np.packbits(self.mask.reshape(-1)).tobytes()


@dataclass
class Counters:
    """Frame and error counters, updated by every session thread: change them only through
    :meth:`frame` and :meth:`error`, read them only through :meth:`snapshot` (one lock)."""

    frames: int = 0
    errors: int = 0
    busy_s: float = 0.0
    energy_mj: float = 0.0
    started: float = field(default_factory=time.time)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def frame(self, busy_s: float, energy_mj: float) -> None:
        with self._lock:
            self.frames += 1
            self.busy_s += busy_s
            self.energy_mj += energy_mj

    def error(self) -> None:
        with self._lock:
            self.errors += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "frames": self.frames,
                "errors": self.errors,
                "busy_s": self.busy_s,
                "energy_mj": self.energy_mj,
                "started": self.started,
            }


class DeviceRuntime:
    def __init__(self, cfg: RuntimeConfig, store: BundleStore | None = None) -> None:
        self.cfg = cfg
        # the store opened once: what opening it repaired (BundleStore.recovered) is reported
        self.store = store if store is not None else BundleStore(cfg.store, cfg.board, cfg.dev_key)
        self._accel_lock = threading.Lock()
        self._store_lock = threading.Lock()
        self.accel: Accelerator | None = None
        self.bundle_id: str | None = None
        self.meter: PowerMeter | None = None
        self.counters = Counters()
        self._open_active()

    # -------------------------------------------------------------- bundles
    def _open_active(self, fallback_test: bool = False) -> None:
        """Open the active bundle's accelerator. Safe boot: an active bundle that does not verify
        or open (a damaged file, a missing overlay) never stops the device: the previous bundle
        is used if it verifies and passes its self-test, else the device serves with no bundle
        (and can be flashed). Every such step is recorded in :attr:`degraded` for INFO."""
        with self._accel_lock:
            if self.accel is not None:
                self.accel.close()
            self.accel, self.bundle_id, self.meter = None, None, None
        st = self.store.state()
        # the active bundle, then the previous one; chosen here, in memory: state.json changes only
        # by a flash, activate or rollback (a signer untrusted at this start may be trusted at the
        # next, and a damaged bundle is replaced by the next flash)
        candidates = [st["active"]] if st["active"] else []
        if st["previous"] and st["previous"] != st["active"]:
            candidates.append(st["previous"])
        for i, bid in enumerate(candidates):
            try:
                vb = self.store.verified(bid)
                if fallback_test or i > 0:  # a fallback must prove itself first
                    res = self.self_test(vb.path, vb.manifest)
                    if not res.get("ok"):
                        raise QdevError(f"self-test failed: {res.get('error')}")
                with self._accel_lock:
                    self.accel = open_accelerator(vb.path, vb.manifest, self.cfg.backend)
                    self.bundle_id = bid
                    self.meter = open_power_meter(self.cfg.power, vb.manifest, self.cfg.hwmon_root)
                return
            except (QdevError, OSError, ValueError, KeyError) as exc:
                log.error("bundle %s unusable: %s", bid, exc)
                with self._accel_lock:
                    if self.accel is not None:
                        self.accel.close()
                    self.accel, self.bundle_id, self.meter = None, None, None
                which = "active" if i == 0 else "previous"
                self.store.recovered.append(f"{which} bundle {bid} unusable ({exc})")
        if candidates:
            self.store.recovered.append(
                "serving with no bundle: flash one (qdev flash) or activate one"
            )

    @property
    def degraded(self) -> list[str]:
        """Why this device is not running as flashed (empty: it is)."""
        return list(self.store.recovered)

    def self_test(self, bundle_dir: Path, manifest: dict) -> dict:
        """Run the bundle's golden frames on the backend this device uses; compare codes.

        Holds the accelerator lock: on a board the candidate's overlay replaces the active one
        on the fabric, so no frame may run meanwhile (``_after_change`` loads the active again)."""
        try:
            st = manifest.get("self_test") or {}
            pixels = np.load(Path(bundle_dir) / st["input"], allow_pickle=False)
            expected = np.load(Path(bundle_dir) / st["expected"], allow_pickle=False)
            with self._accel_lock:
                acc = open_accelerator(Path(bundle_dir), manifest, self.cfg.backend)
                try:
                    t0 = time.perf_counter()
                    codes = acc.run(pixels)
                    secs = time.perf_counter() - t0
                finally:
                    acc.close()
        except (KeyError, OSError, ValueError, QdevError) as exc:
            return {"ok": False, "error": f"self-test could not run: {exc}"}
        if (
            expected.shape != codes.shape
        ):  # the golden layout is the backend's output layout: never reshaped
            return {
                "ok": False,
                "error": f"output shape {list(codes.shape)} != golden {list(expected.shape)}",
            }
        differ = int((codes != expected).sum())
        return {
            "ok": differ == 0,
            "frames": int(pixels.shape[0]),
            "codes_differing": differ,
            "seconds": round(secs, 4),
            "backend": acc.name,
            **(
                {}
                if differ == 0
                else {"error": f"{differ} output codes differ from the golden batch"}
            ),
        }

    def _after_change(self, res: InstallResult) -> InstallResult:
        # also after a failed self-test: the candidate's bitstream may now be on the fabric,
        # and the bundle that stays active must be loaded again
        if res.activated:
            self.store.recovered.clear()  # a bundle that passed its self-test is active: healthy
        self._open_active()
        return res

    def begin_upload(
        self, sha: str, size: int, manifest: bytes, signature: bytes, allow_downgrade: bool = False
    ) -> dict:
        with self._store_lock:
            return self.store.begin_upload(sha, size, manifest, signature, allow_downgrade)

    def write_chunk(self, sha: str, offset: int, data: bytes, crc: int) -> int:
        with self._store_lock:
            return self.store.write_chunk(sha, offset, data, crc)

    def finish_upload(self, sha: str, size: int) -> InstallResult:
        with self._store_lock:
            return self._after_change(self.store.finish_upload(sha, size, self.self_test))

    def activate(self, bid: str, allow_downgrade: bool = False) -> InstallResult:
        with self._store_lock:
            return self._after_change(self.store.activate(bid, self.self_test, allow_downgrade))

    def rollback(self) -> InstallResult:
        with self._store_lock:
            return self._after_change(self.store.rollback(self.self_test))

    # ------------------------------------------------------------ inference
    def infer(self, frame_id: int, pixels: np.ndarray) -> FrameResult:
        """One uint8 frame [H, W] -> its mask, with device timing and energy."""
        with self._accel_lock:
            if self.accel is None:
                raise QdevError("no bundle is active on this device: flash one first")
            io = self.accel.io
            if pixels.shape != (io.height, io.width):
                raise QdevError(
                    f"frame {frame_id}: {pixels.shape[1]}x{pixels.shape[0]} pixels, "
                    f"the active model takes {io.width}x{io.height}"
                )
            t0 = time.perf_counter()
            masks, _ = self.accel.masks(pixels[None])
            t1 = time.perf_counter()
            reading = self.meter.read(active=True)
        energy = reading.watts * (t1 - t0) * 1e3
        self.counters.frame(t1 - t0, energy)
        return FrameResult(frame_id, masks[0], t0, t1, reading.watts, energy, reading.kind)

    # ------------------------------------------------------------ reporting
    def info(self) -> dict:
        import numpy

        out = {
            "device_version": __version__,
            "protocol": PROTOCOL_VERSION,
            "python": platform.python_version(),
            "numpy": numpy.__version__,
            "machine": platform.machine(),
            "board": self.cfg.board,
            "bundle_id": self.bundle_id,
            "store": self.store.describe(),
            "threads": self.cfg.threads,
            "degraded": bool(self.degraded),
            "degraded_reasons": self.degraded,
            "dev_key": self.cfg.dev_key,
            **(
                {
                    "warning": "trusts qdev's public development key (--dev-key): anyone can sign "
                    "bundles for it"
                }
                if self.cfg.dev_key
                else {}
            ),
        }
        try:
            import pynq

            out["pynq"] = pynq.__version__
        except Exception:
            out["pynq"] = None
        with self._accel_lock:
            if self.accel is not None:
                out.update(self.accel.describe())
                out["model"] = self.accel.manifest.get("model")
                out["estimate_only"] = self.accel.manifest.get("estimate_only")
                out["power"] = self.meter.describe() if self.meter else None
            else:
                out["backend"] = None
        return out

    def power(self) -> dict:
        with self._accel_lock:
            if self.meter is None:
                raise QdevError("no bundle is active: the power model needs one")
            idle = self.meter.read(active=False)
            busy = self.meter.read(active=True)
        return {
            "idle_w": idle.watts,
            "active_w": busy.watts,
            "kind": idle.kind,
            "source": idle.source,
        }

    def stats(self) -> dict:
        c = self.counters.snapshot()
        up = time.time() - c["started"]
        return {
            "frames": c["frames"],
            "errors": c["errors"],
            "busy_s": round(c["busy_s"], 4),
            "uptime_s": round(up, 3),
            "energy_mj": round(c["energy_mj"], 3),
            "device_fps": (c["frames"] / c["busy_s"]) if c["busy_s"] else None,
        }
