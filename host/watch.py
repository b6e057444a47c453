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

from qdev.core.errors import ConfigError, QdevError

__all__ = ["WatchConfig", "WatchSummary", "watch_to_session"]


@dataclass
class WatchConfig:
    """Settings of one ``device:`` session (see :class:`qdev.host.stream.StreamConfig` for the shared
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


def watch_to_session(client, cfg: WatchConfig, echo: Callable[[str], None] = print) -> tuple[Path, WatchSummary]:  # noqa: ANN001
    """Watch the device's own probe into a session folder; returns (folder, summary).

    Raises:
        QdevError: the device segments another source than ``cfg.spec``, or the folder exists.
    """
    from qdev.host.client import live_frame
    from qdev.host.gallery import Gallery
    from qdev.host.session import SessionWriter
    from qdev.host.stream import _igtl_server, default_session_dir
    from qdev.host.view import Hud, OverlayView

    try:
        source = client.stats().get("live_source")
    except QdevError:
        source = None
    if cfg.spec and source and not _same_source(cfg.spec, source):
        raise QdevError(f"--probe device:{cfg.spec}: this device segments its own probe '{source}' (chosen by "
                        "qdev-device serve --probe); say device: or device:" + source)
    folder = cfg.out or default_session_dir()
    if folder.exists():
        raise ConfigError(f"{folder} already exists: choose another --out")
    info = client.info()
    igtl = _igtl_server(cfg.igtl)
    try:
        ov = OverlayView(cfg.view, cfg.save)
    except BaseException:
        if igtl is not None:
            igtl.close()
        raise
    writer = SessionWriter(folder, {"source": {"source": f"device:{cfg.spec or source}", "live": True,
                                               "on_device": True, "device_source": source},
                                    "device": info, "power": None, "settings": {"max_frames": cfg.frames,
                                                                                "display_quality": cfg.quality}})
    if ov.web is not None:
        print(f"browser view: {ov.web.url}", file=sys.stderr, flush=True)
    if igtl is not None:
        print(f"OpenIGTLink: {igtl.address}", file=sys.stderr, flush=True)
    gallery = Gallery(folder / "gallery")
    n, t0, last_id, skipped, dropped = 0, time.time(), None, 0, 0
    try:
        for msg in client.watch(jpeg_quality=cfg.quality, display_max=cfg.display_max):
            m = msg.meta
            mask, px = live_frame(msg)
            n += 1
            fid = int(m["frame_id"])
            if last_id is not None and fid > last_id + 1:
                skipped += fid - last_id - 1  # the device moved on while this viewer was busy
            last_id = fid
            dropped = int(m.get("dropped") or 0)
            t = time.time()
            writer.row({"frame_id": fid, "status": "ok", "t_received": t, "device_ms": m.get("device_ms"),
                        "device_t_start": m.get("t_start"), "device_t_end": m.get("t_end"),
                        "power_w": m.get("power_w"), "energy_mj": m.get("energy_mj"),
                        "energy_kind": m.get("energy_kind"), "mask_area": m.get("mask_area"),
                        "source": m.get("source")})
            writer.mask(fid, mask)
            gallery.offer(fid, px, mask, None, None, None)
            echo(f"frame {fid}: device {m['device_ms']:.1f} ms, {m['energy_mj']:.1f} mJ ({m['energy_kind']}), "
                 f"mask {m['mask_area']} px, dropped {dropped} at the probe, {skipped} skipped by this viewer")
            el = t - t0
            label = f"device:{cfg.spec or source}"
            ph, pw = m.get("probe_h"), m.get("probe_w")
            if ph and (px.shape[0], px.shape[1]) != (int(ph), int(pw)):  # the HUD says when the view is reduced
                label += f" (display {px.shape[1]}x{px.shape[0]} of {pw}x{ph})"
            hud = Hud(fid, n / el if el else 0.0, None, m.get("device_ms"), m.get("power_w"), m.get("energy_mj"),
                      m.get("energy_kind"), dropped + skipped, 0, m.get("bundle_id"), int(m.get("mask_area") or 0),
                      label)
            if igtl is not None:
                igtl.publish(fid, px, mask, {k: m.get(k) for k in ("frame_id", "device_ms", "energy_mj",
                                                                     "energy_kind", "bundle_id")})
            if not ov.show(px, mask, hud):
                break
            if cfg.frames and n >= cfg.frames:
                break
    except KeyboardInterrupt:
        pass
    finally:
        ov.close()
        extra = {"igtl": igtl.stats()} if igtl is not None else {}
        if igtl is not None:
            igtl.close()
        el = time.time() - t0
        writer.counts["dropped"] = dropped + skipped
        gallery.write()
        end = client.watch_end
        writer.close(summary={"frames_ok": n, "lost": 0, "dropped": dropped + skipped, "dropped_at_device": dropped,
                              "skipped_by_viewer": skipped, "seconds": el, "fps": n / el if el else 0.0,
                              "ended_by_device": end}, **extra)
    return folder, WatchSummary(n, skipped, dropped, el, end)
