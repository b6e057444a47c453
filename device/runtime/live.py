"""On-device live segmentation: read a probe attached to the board, segment every frame,
keep rolling per-frame logs with bounded disk use, and publish results to watching hosts.

The host is not in the data path: it attaches with WATCH and receives LIVE messages (newest
wins). Logs rotate at ``max_bytes`` per file and keep ``keep`` files (``live-0.csv`` newest).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from qdev.core.errors import QdevError
from qdev.core.preprocess import to_luma_u8, to_model_input
from qdev.core.probe.sources import ProbeSource
from qdev.device.runtime.server import LiveHub
from qdev.device.runtime.service import DeviceRuntime

__all__ = ["RollingLog", "LiveLoop"]

log = logging.getLogger("qdev.device")

COLUMNS = [
    "frame_id",
    "t_capture",
    "t_start",
    "t_end",
    "device_ms",
    "power_w",
    "energy_mj",
    "energy_kind",
    "mask_area",
    "dropped",
]


class RollingLog:
    def __init__(self, folder: Path, max_bytes: int = 1 << 20, keep: int = 5) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.keep = max_bytes, keep
        self._fh = None
        self._open()

    def _path(self, i: int) -> Path:
        return self.folder / f"live-{i}.csv"

    def _open(self) -> None:
        new = not self._path(0).exists()
        self._fh = open(self._path(0), "a", buffering=1)
        if new:
            self._fh.write(",".join(COLUMNS) + "\n")

    def _rotate(self) -> None:
        self._fh.close()
        self._path(self.keep - 1).unlink(missing_ok=True)
        for i in range(self.keep - 2, -1, -1):
            if self._path(i).exists():
                self._path(i).rename(self._path(i + 1))
        self._open()

    def write(self, row: dict) -> None:
        self._fh.write(",".join(str(row.get(c, "")) for c in COLUMNS) + "\n")
        if self._fh.tell() >= self.max_bytes:
            self._rotate()

    def close(self) -> None:
        if self._fh:
            self._fh.close()


class LiveLoop:
    def __init__(
        self,
        runtime: DeviceRuntime,
        source: ProbeSource,
        hub: LiveHub,
        log_dir: Path,
        max_bytes: int = 1 << 20,
        keep: int = 5,
    ) -> None:
        self.rt, self.source, self.hub = runtime, source, hub
        hub.source = source.name
        self.log = RollingLog(log_dir, max_bytes, keep)
        self.stop = threading.Event()
        self.frames = 0
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name="qdev-live", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            t_prev = None
            waited = False
            for fr in self.source.frames():
                if self.stop.is_set():
                    break
                while self.rt.accel is None and not self.stop.is_set():
                    if not waited:  # a file source is not used up while no bundle is active
                        log.info("on-device probe: waiting for a bundle to be flashed")
                        waited = True
                    self.stop.wait(0.2)
                acc = self.rt.accel
                if acc is None:
                    break
                # a live probe keeps producing while we compute: count what we could not take
                if self.source.live and self.source.fps and t_prev is not None:
                    behind = int((time.time() - t_prev) * self.source.fps) - 1
                    self.dropped += max(0, behind)
                t_prev = time.time()
                px = to_model_input(fr.image, acc.io.height, acc.io.width)
                try:
                    res = self.rt.infer(fr.index, px)
                except QdevError as exc:
                    log.warning("live frame %d: %s", fr.index, exc)
                    continue
                meta = {
                    **res.meta(),
                    "t_capture": fr.t_capture,
                    "dropped": self.dropped,
                    "bundle_id": self.rt.bundle_id,
                    "source": self.source.name,
                }
                self.log.write(meta)
                # each watcher codes it as it negotiated: the model's input or the probe's own frame
                self.hub.publish(meta, (res.mask, px, to_luma_u8(fr.image)))
                self.frames += 1
                if self.source.live and self.source.fps:  # pace a simulated live source to its rate
                    wait = 1.0 / self.source.fps - (time.time() - t_prev)
                    if wait > 0:
                        self.stop.wait(wait)
            if not self.stop.is_set():
                self.hub.end(
                    {
                        "frames": self.frames,
                        "dropped": self.dropped,
                        "source": self.source.name,
                        "reason": "the source has no more frames",
                    }
                )
        finally:
            self.source.close()
            self.log.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
