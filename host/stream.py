"""Live segmentation of probe frames through a device: ``run_stream``.

Frames are read from the probe (``device.probe.sources``), converted to the model input exactly
as in training, and sent with several in flight. Pacing: ``fps`` (default: the probe's own rate
for live sources; as fast as the device goes for files). Live sources are read by a grabber
thread into a one-frame slot: when the device is slower, the newest frame wins and the
overwritten ones are counted as dropped. File sources are lossless: every frame is sent.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qdev.core.errors import ConfigError, QdevError
from qdev.core.masks import dice
from qdev.core.preprocess import mask_to_model, to_model_input
from qdev.core.probe.sources import ProbeFrame, ProbeSource
from qdev.host.client import DeviceClient, StreamReply
from qdev.host.session import SessionWriter, device_fields
from qdev.host.stream_config import StreamConfig

__all__ = [
    "StreamConfig",
    "StreamSummary",
    "run_stream",
    "stream_to_session",
    "default_session_dir",
]


@dataclass
class StreamSummary:
    frames_ok: int
    lost: int
    dropped: int
    seconds: float
    interrupted: bool

    @property
    def fps(self) -> float:
        return self.frames_ok / self.seconds if self.seconds > 0 else 0.0


class _NewestSlot:
    """Grabber thread for live sources: keeps only the newest frame, counts overwritten ones."""

    def __init__(self, source: ProbeSource, fps: float | None) -> None:
        self.source, self.period = source, (1.0 / fps if fps else 0.0)
        self.cond = threading.Condition()
        self.frame: ProbeFrame | None = None
        self.done = False
        self.dropped = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._grab, daemon=True)
        self.thread.start()

    def _grab(self) -> None:
        nxt = time.monotonic()
        try:
            for fr in self.source.frames():
                if self.stop.is_set():
                    break
                if self.period:  # a simulated live source (phantom) produces at its rate
                    nxt += self.period
                    delay = nxt - time.monotonic()
                    if delay > 0:
                        self.stop.wait(delay)
                fr.t_capture = time.time()
                with self.cond:
                    if self.frame is not None:
                        self.dropped += 1
                    self.frame = fr
                    self.cond.notify()
        finally:
            with self.cond:
                self.done = True
                self.cond.notify()

    def get(self) -> ProbeFrame | None:
        with self.cond:
            while self.frame is None and not self.done:
                self.cond.wait(0.5)
            fr, self.frame = self.frame, None
            return fr

    def close(self) -> None:
        self.stop.set()


class _Prefetch:
    """A file source read ahead by a thread (lossless: it blocks when ``depth`` frames wait), each
    frame already made the model's input and its truth mask the model's size: decoding PNGs,
    DICOMs and video frames overlaps the link and the device instead of stalling them."""

    _END = object()

    def __init__(self, source: ProbeSource, h: int, w: int, depth: int) -> None:
        self.q: queue.Queue = queue.Queue(maxsize=max(2, depth))
        self.stop = threading.Event()
        self.t = threading.Thread(
            target=self._run, args=(source, h, w), name="qdev-prefetch", daemon=True
        )
        self.t.start()

    def _run(self, source: ProbeSource, h: int, w: int) -> None:
        try:
            for fr in source.frames():
                item = (
                    fr,
                    to_model_input(fr.image, h, w),
                    mask_to_model(fr.truth, h, w) if fr.truth is not None else None,
                )
                if not self._put(item):
                    return
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(exc)
            return
        self._put(self._END)

    def _put(self, item: object) -> bool:
        """Queue ``item``, waiting while the consumer is behind; False once stopped."""
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self) -> tuple | None:
        item = self.q.get()
        if item is self._END:
            return None
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self.stop.set()


def _frames(
    feed: _NewestSlot | _Prefetch,
    hw: tuple[int, int],
    pace: float | None,
    stop: threading.Event,
    max_frames: int | None,
    sent: dict,
) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, model input) of each frame to send, until ``stop``, ``max_frames`` or the
    source's end; each frame, input and truth is kept in ``sent`` for its reply. A live source
    gives its newest frame (the slot paces); a file source is read ahead and paced here."""
    h, w = hw
    n = 0
    nxt = time.monotonic()
    while not stop.is_set() and (max_frames is None or n < max_frames):
        if isinstance(feed, _NewestSlot):
            fr = feed.get()
            if fr is None:
                return
            px = to_model_input(fr.image, h, w)
            truth = mask_to_model(fr.truth, h, w) if fr.truth is not None else None
        else:
            item = feed.get()
            if item is None:
                return
            fr, px, truth = item
            if pace:
                nxt += 1.0 / pace
                delay = nxt - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        sent[fr.index] = (fr, px, truth)
        n += 1
        yield fr.index, px


def _row(
    rep: StreamReply, fr: ProbeFrame | None, truth: np.ndarray | None
) -> tuple[dict, float | None]:
    """One frame's log row, and its Dice against the truth (None: no truth or no answer)."""
    row = {
        "frame_id": rep.frame_id,
        "t_sent": rep.t_sent,
        "t_received": rep.t_received,
        "t_capture": fr.t_capture if fr else None,
        "source": fr.name if fr else None,
    }
    if rep.error is not None:
        row["status"] = rep.error if rep.error in ("lost", "timeout") else "error"
        return row, None
    row["status"] = "ok"
    row["rtt_ms"] = (rep.t_received - rep.t_sent) * 1e3
    row.update(device_fields(rep.meta))
    d = dice(rep.mask, truth) if truth is not None else None
    if d is not None:
        row["dice_vs_truth"] = round(d, 4)
    return row, d


def run_stream(
    client: DeviceClient,
    source: ProbeSource,
    cfg: StreamConfig,
    writer: SessionWriter,
    on_frame: Callable[[ProbeFrame, np.ndarray, StreamReply, int, int, float | None], None]
    | None = None,
    stop: threading.Event | None = None,
) -> StreamSummary:
    """Stream ``source`` through the device; log every frame to ``writer``."""
    io = client.info()["io"]
    h, w = int(io["height"]), int(io["width"])
    stop = stop or threading.Event()
    pace = cfg.fps if cfg.fps else (source.fps if source.live else None)
    slot = _NewestSlot(source, pace) if source.live else None
    feed = slot if slot is not None else _Prefetch(source, h, w, 2 * cfg.window)
    sent: dict[int, tuple[ProbeFrame, np.ndarray, np.ndarray | None]] = {}
    frames = _frames(feed, (h, w), pace, stop, cfg.max_frames, sent)
    t0 = time.time()
    ok = lost = 0
    interrupted = False
    try:
        for rep in client.stream(frames, cfg.window, cfg.timeout):
            fr, px, truth = sent.pop(rep.frame_id, (None, None, None))
            row, d = _row(rep, fr, truth)
            writer.row(row)
            if rep.error is not None:
                lost += 1
                continue
            ok += 1
            if on_frame is not None and fr is not None:
                on_frame(fr, px, rep, lost, slot.dropped if slot is not None else 0, d)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        feed.close()
        source.close()
    dropped = slot.dropped if slot is not None else 0
    writer.counts["dropped"] = dropped
    return StreamSummary(ok, lost, dropped, time.time() - t0, interrupted)


def default_session_dir(root: Path = Path("sessions")) -> Path:
    return root / time.strftime("%Y%m%d-%H%M%S")


def _interruptible(stop: threading.Event):  # noqa: ANN202
    """First Ctrl-C sets ``stop`` (the frames in flight finish and are logged); a second one
    raises KeyboardInterrupt. Returns the previous handler (None off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def _interrupt(signum, frame) -> None:  # noqa: ANN001
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    return signal.signal(signal.SIGINT, _interrupt)


def _open_outputs(folder: Path, source: ProbeSource, cfg: StreamConfig, info: dict, pw):  # noqa: ANN001, ANN202
    """(OpenIGTLink server or None, live view, session writer), opened in that order; on any
    failure what was opened is closed again (no half-open window, port or web server)."""
    from qdev.host.igtl_out import open_igtl_server
    from qdev.host.view import OverlayView

    # before the folder: a busy port is an error that writes nothing
    igtl = open_igtl_server(cfg.igtl)
    opened = [igtl] if igtl is not None else []
    try:
        ov = OverlayView(cfg.view, cfg.save, fps=cfg.fps or source.fps or 20.0)
        opened.insert(0, ov)
        settings = {k: getattr(cfg, k) for k in ("fps", "window", "max_frames", "timeout", "port")}
        head = {"source": source.describe(), "device": info, "power": pw, "settings": settings}
        writer = SessionWriter(folder, head)
    except BaseException:
        for x in opened:
            x.close()
        raise
    return igtl, ov, writer


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class _LiveOutputs:
    """Where each answered frame goes: the session folder, the gallery, the live view and the
    OpenIGTLink clients; ``stop`` is set when the viewer closes the window."""

    def __init__(self, folder: Path, source: ProbeSource, info: dict, igtl, ov, writer) -> None:  # noqa: ANN001
        from qdev.host.gallery import Gallery

        self.source, self.info = source, info
        self.igtl, self.ov, self.writer = igtl, ov, writer
        self.gallery = Gallery(folder / "gallery")
        self.stop = threading.Event()
        self.t0 = time.time()
        self.shown = 0

    def _hud(self, rep: StreamReply, lost: int, dropped: int, bid: str | None):  # noqa: ANN202
        from qdev.host.view import Hud

        el = time.time() - self.t0
        fps = self.shown / el if el else 0.0
        rtt = (rep.t_received - rep.t_sent) * 1e3
        return Hud.of(rep.meta, rep.frame_id, fps, rtt, dropped, lost, bid, self.source.name)

    def on_frame(
        self,
        fr: ProbeFrame,
        px: np.ndarray,
        rep: StreamReply,
        lost: int,
        dropped: int,
        d: float | None,
    ) -> None:
        self.shown += 1
        bid = rep.meta.get("bundle_id") or self.info.get("bundle_id")
        hud = self._hud(rep, lost, dropped, bid)
        self.gallery.offer(rep.frame_id, fr.image, rep.mask, d, fr.display_window, fr.truth)
        self.writer.mask(rep.frame_id, rep.mask)
        if self.igtl is not None:
            from qdev.host.igtl_out import frame_info

            info = frame_info(rep.meta, frame_id=rep.frame_id, bundle_id=bid)
            self.igtl.publish(rep.frame_id, fr.image, rep.mask, info, fr.spacing)
        if not self.ov.show(fr.image, rep.mask, hud, fr.display_window):
            self.stop.set()

    def close(self) -> None:
        self.ov.close()
        if self.igtl is not None:
            self.igtl.close()


def _announce(out: _LiveOutputs, cfg: StreamConfig) -> None:
    """Where the OpenIGTLink server and the browser view are (waiting for a client if asked)."""
    igtl = out.igtl
    if igtl is not None:
        _say(f"OpenIGTLink: {igtl.address} (IMAGE qdev-frame, IMAGE qdev-mask, STRING qdev-info)")
        if cfg.igtl_wait and not igtl.wait_for_client(cfg.igtl_wait):
            _say(f"no OpenIGTLink client within {cfg.igtl_wait:g} s: streaming anyway")
    if out.ov.web is not None:
        _say(f"browser view: {out.ov.web.url}")


def stream_to_session(
    client: DeviceClient,
    source: ProbeSource,
    cfg: StreamConfig,
    status: Callable[[str], object] | None = None,
) -> tuple[Path, StreamSummary]:
    """A whole ``qdev stream`` session against a connected device: checks, the session folder
    and its manifest, the live view, Ctrl-C handling, and the closing statistics.

    ``status(text)``, if given, is a context-manager factory shown while streaming (rich's
    ``Console.status``). Returns the session folder and the summary.
    """
    import contextlib

    cfg.check()
    folder = cfg.out or default_session_dir()
    info = client.info()
    if not info.get("backend"):
        raise QdevError("no bundle is active on the device: qdev flash BUNDLE first")
    try:
        pw = client.power()
    except QdevError:
        pw = None
    if folder.exists():
        raise ConfigError(f"{folder} already exists: choose another --out")
    out = _LiveOutputs(folder, source, info, *_open_outputs(folder, source, cfg, info, pw))
    _announce(out, cfg)
    old = _interruptible(out.stop)
    try:
        text = f"streaming {source.name} -> {info.get('backend')} ... (Ctrl-C to stop)"
        with status(text) if status else contextlib.nullcontext():
            summ = run_stream(client, source, cfg, out.writer, out.on_frame, out.stop)
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)
        out.close()
    summ.interrupted = summ.interrupted or (
        out.stop.is_set() and (cfg.max_frames is None or summ.frames_ok < cfg.max_frames)
    )
    out.gallery.write()
    extra = {"igtl": out.igtl.stats()} if out.igtl is not None else {}
    fields = ("frames_ok", "lost", "dropped", "seconds", "fps", "interrupted")
    writer_summary = {k: getattr(summ, k) for k in fields}
    out.writer.close(
        summary=writer_summary, stats=client.stats(), source_end=source.describe(), **extra
    )
    return folder, summ
