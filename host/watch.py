"""``qdev stream --probe device:SOURCE``: watch the wearable segment its own probe, as a session.

The device runs the probe, the accelerator and the mask rule by itself and pushes each result
(LIVE); this side shows it (window, page, OpenIGTLink) and writes the same session folder as host
mode: ``manifest.json``, ``frames.csv`` + ``frames.parquet``, ``masks.bin``, the gallery, so that
``qdev report`` and ``qdev export dicom`` read it like any other session. Frames the device
dropped at its probe and frames this viewer skipped (the device moved on while it was busy) are
counted in the manifest; the session ends when the device says its source ended, after
``frames``, on Ctrl-C, or when the window closes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qdev.core.errors import ConfigError, QdevError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["WatchConfig", "WatchSummary", "watch_to_session"]


@dataclass
class WatchConfig:
    """Settings of one ``device:`` session (see :class:`qdev.host.stream.StreamConfig` for the
    shared
    ones). ``display_max``: the longer side of the probe's own frame as the device sends it for
    display (its aspect kept; 0: the model's input instead)."""

    spec: str = ""
    frames: int | None = None
    view: str = "none"
    save: Path | None = None
    quality: int = 40
    igtl: str | None = None
    out: Path | None = None
    display_max: int = 320


@dataclass
class WatchSummary:
    received: int
    skipped: int
    dropped_at_device: int
    seconds: float
    ended_by_device: dict | None


def _same_source(spec: str, source: str) -> bool:
    """``device:SPEC`` names the device's own probe: its full name, its kind (``phantom`` for
    ``phantom:0``) or a part of a file name."""
    return spec == source or source.startswith(spec + ":") or spec in source


class _Watch:
    """One ``device:`` session's sinks (log, masks, gallery, view, OpenIGTLink) and counters."""

    def __init__(
        self, client, cfg: WatchConfig, source: str | None, echo: Callable[[str], None]
    ) -> None:  # noqa: ANN001
        from qdev.host.gallery import Gallery
        from qdev.host.session import SessionWriter
        from qdev.host.igtl_out import open_igtl_server
        from qdev.host.stream import default_session_dir
        from qdev.host.view import OverlayView

        self.cfg, self.echo, self.label = cfg, echo, f"device:{cfg.spec or source}"
        self.folder = cfg.out or default_session_dir()
        if self.folder.exists():
            raise ConfigError(f"{self.folder} already exists: choose another --out")
        info = client.info()
        self.igtl = open_igtl_server(cfg.igtl)  # a busy port: an error before anything is written
        try:
            self.ov = OverlayView(cfg.view, cfg.save)
        except BaseException:
            if self.igtl is not None:
                self.igtl.close()
            raise
        self.writer = SessionWriter(
            self.folder,
            {
                "source": {
                    "source": self.label,
                    "live": True,
                    "on_device": True,
                    "device_source": source,
                },
                "device": info,
                "power": None,
                "settings": {
                    "max_frames": cfg.frames,
                    "display_quality": cfg.quality,
                    "display_max": cfg.display_max,
                },
            },
        )
        if self.ov.web is not None:
            print(f"browser view: {self.ov.web.url}", file=sys.stderr, flush=True)
        if self.igtl is not None:
            print(f"OpenIGTLink: {self.igtl.address}", file=sys.stderr, flush=True)
        self.gallery = Gallery(self.folder / "gallery")
        self.n, self.t0, self.last_id, self.skipped, self.dropped = 0, time.time(), None, 0, 0

    def _row(self, fid: int, m: dict, t: float) -> dict:
        from qdev.host.session import device_fields

        row = {"frame_id": fid, "status": "ok", "t_received": t, **device_fields(m)}
        return {**row, "source": m.get("source")}

    def _hud(self, fid: int, m: dict, px: np.ndarray, t: float):  # noqa: ANN202
        """The HUD of one push: it says when the view is reduced from the probe's size."""
        from qdev.host.view import Hud

        label = self.label
        ph, pw = m.get("probe_h"), m.get("probe_w")
        if ph and (px.shape[0], px.shape[1]) != (int(ph), int(pw)):
            label += f" (display {px.shape[1]}x{px.shape[0]} of {pw}x{ph})"
        el = t - self.t0
        fps = self.n / el if el else 0.0
        dropped = self.dropped + self.skipped
        return Hud.of(m, fid, fps, None, dropped, 0, m.get("bundle_id"), label)

    def frame(self, msg) -> bool:  # noqa: ANN001
        """Log, keep and show one LIVE push; False when the viewer closed or enough frames came."""
        from qdev.host.client import live_frame

        m = msg.meta
        mask, px = live_frame(msg)
        self.n += 1
        fid = int(m["frame_id"])
        if self.last_id is not None and fid > self.last_id + 1:
            self.skipped += fid - self.last_id - 1  # the device moved on while this viewer was busy
        self.last_id = fid
        self.dropped = int(m.get("dropped") or 0)
        t = time.time()
        self.writer.row(self._row(fid, m, t))
        self.writer.mask(fid, mask)
        self.gallery.offer(fid, px, mask, None, None, None)
        self.echo(
            f"frame {fid}: device {m['device_ms']:.1f} ms, {m['energy_mj']:.1f} mJ "
            f"({m['energy_kind']}), mask {m['mask_area']} px, dropped {self.dropped} at the "
            f"probe, {self.skipped} skipped by this viewer"
        )
        hud = self._hud(fid, m, px, t)
        if self.igtl is not None:
            from qdev.host.igtl_out import frame_info

            self.igtl.publish(fid, px, mask, frame_info(m))
        return self.ov.show(px, mask, hud) and not (self.cfg.frames and self.n >= self.cfg.frames)

    def close(self, end: dict | None) -> WatchSummary:
        self.ov.close()
        extra = {"igtl": self.igtl.stats()} if self.igtl is not None else {}
        if self.igtl is not None:
            self.igtl.close()
        el = time.time() - self.t0
        lost_here = self.dropped + self.skipped
        self.writer.counts["dropped"] = lost_here
        self.gallery.write()
        self.writer.close(
            summary={
                "frames_ok": self.n,
                "lost": 0,
                "dropped": lost_here,
                "dropped_at_device": self.dropped,
                "skipped_by_viewer": self.skipped,
                "seconds": el,
                "fps": self.n / el if el else 0.0,
                "ended_by_device": end,
            },
            **extra,
        )
        return WatchSummary(self.n, self.skipped, self.dropped, el, end)


def watch_to_session(
    client, cfg: WatchConfig, echo: Callable[[str], None] = print
) -> tuple[Path, WatchSummary]:  # noqa: ANN001
    """Watch the device's own probe into a session folder; returns (folder, summary).

    Raises:
        QdevError: the device segments another source than ``cfg.spec``, or the folder exists.
    """
    try:
        source = client.stats().get("live_source")
    except QdevError:
        source = None
    if cfg.spec and source and not _same_source(cfg.spec, source):
        raise QdevError(
            f"--probe device:{cfg.spec}: this device segments its own probe '{source}' (chosen by "
            "qdev-device serve --probe); say device: or device:" + source
        )
    w = _Watch(client, cfg, source, echo)
    try:
        for msg in client.watch(jpeg_quality=cfg.quality, display_max=cfg.display_max):
            if not w.frame(msg):
                break
    except KeyboardInterrupt:
        pass
    finally:
        summary = w.close(client.watch_end)
    return w.folder, summary
