"""Serve a DeviceRuntime over links: TCP (one thread per connection) and a serial port.

Session rules (docs/PROTOCOL.md): the host speaks first (HELLO); until then the device answers
nothing but an ERROR to other requests. Each request gets exactly one reply carrying the
request's sequence number in ``meta["re"]``; a failed request gets an ERROR reply and the
session goes on. A link that stays silent longer than ``idle_timeout`` is dropped (TCP) or
reset to "no session" (serial).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
import zlib
from collections.abc import Callable

import numpy as np

from qdev.device.errors import QdevError
from qdev.device.link import Channel, Link, LinkError, LinkTimeout, Message, SerialLink, SocketLink
from qdev.device.protocol import DEFAULT_MAX_PAYLOAD, MsgType
from qdev.device.runtime.service import DeviceRuntime, FrameResult
from qdev.device.store import StoreError

__all__ = ["Session", "TcpServer", "serve_serial", "LiveHub", "HANDLERS"]

log = logging.getLogger("qdev.device")


class LiveHub:
    """Fan-out of on-device live results to watching sessions (newest wins, never blocks)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[queue.Queue] = []
        self.latest: dict | None = None

    def subscribe(self) -> queue.Queue:
        q: queue.Queue = queue.Queue(maxsize=1)
        with self._lock:
            self._subs.append(q)
        return q

    def unsubscribe(self, q: queue.Queue) -> None:
        with self._lock:
            if q in self._subs:
                self._subs.remove(q)

    def publish(self, meta: dict, blob: bytes) -> None:
        self.latest = meta
        with self._lock:
            subs = list(self._subs)
        for q in subs:
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            try:
                q.put_nowait((meta, blob))
            except queue.Full:
                pass


def _install_meta(res) -> dict:  # noqa: ANN001
    return {"done": True, "bundle_id": res.bundle_id, "activated": res.activated, "self_test": res.self_test,
            "previous": res.previous, "message": res.message}


class Session:
    """One host conversation over one link."""

    def __init__(self, runtime: DeviceRuntime, link: Link, hub: LiveHub | None = None,
                 idle_timeout: float = 60.0, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.rt = runtime
        self.ch = Channel(link, max_payload)
        self.hub = hub
        self.idle_timeout = idle_timeout
        self.hello = False
        self.watch: queue.Queue | None = None
        self.upload: dict | None = None

    def reply(self, req: Message, mtype: MsgType, meta: dict | None = None, blob: bytes = b"") -> None:
        self.ch.send(mtype, {"re": req.seq, **(meta or {})}, blob)

    def run(self, stop: threading.Event) -> None:
        last = time.monotonic()
        try:
            while not stop.is_set():
                self._push_live()
                try:
                    msg = self.ch.recv(0.05 if self.watch else 0.5)
                except LinkTimeout:
                    if time.monotonic() - last > self.idle_timeout:
                        log.info("%s: idle for %.0f s, closing the session", self.ch.link.name, self.idle_timeout)
                        return
                    continue
                last = time.monotonic()
                self.handle(msg)
        except LinkError as exc:
            log.info("%s: %s", self.ch.link.name, exc)
        finally:
            if self.watch is not None and self.hub is not None:
                self.hub.unsubscribe(self.watch)

    def _push_live(self) -> None:
        if self.watch is None:
            return
        try:
            meta, blob = self.watch.get_nowait()
        except queue.Empty:
            return
        self.ch.send(MsgType.LIVE, meta, blob)

    def handle(self, msg: Message) -> None:
        """Answer one request (exactly one reply), by the dispatch table :data:`HANDLERS`."""
        if msg.type == MsgType.HELLO:
            self.hello = True
            self.reply(msg, MsgType.HELLO_ACK, {"protocol": 1, **self.rt.info(),
                                                "max_payload": self.ch.max_payload})
            return
        if not self.hello:
            self.reply(msg, MsgType.ERROR, {"message": "no session: send HELLO first", "code": "no_hello"})
            return
        handler = HANDLERS.get(msg.type)
        try:
            if handler is None:
                raise QdevError(f"unknown request type {msg.type}")
            handler(self, msg)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            self._error(msg, f"malformed {msg.name} request ({exc})", "malformed")
        except QdevError as exc:
            self._error(msg, str(exc), type(exc).__name__)
        except OSError as exc:  # the store's disk: full, read-only, gone
            log.error("%s: %s failed: %s", self.ch.link.name, msg.name, exc)
            self._error(msg, f"device storage error: {exc.strerror or exc}", "storage")
        except LinkError:
            raise
        except Exception as exc:  # a bug: keep the session, tell the host, keep the traceback here
            log.exception("%s: internal error in %s", self.ch.link.name, msg.name)
            self._error(msg, f"internal error in {msg.name} ({type(exc).__name__}); see the device log", "internal")

    def _error(self, msg: Message, text: str, code: str) -> None:
        self.rt.counters.error()
        self.reply(msg, MsgType.ERROR, {"message": text, "code": code})

    # -- request handlers (one per message type; see HANDLERS) --------------------------------

    def _on_info(self, msg: Message) -> None:
        self.reply(msg, MsgType.INFO_REPLY, self.rt.info())

    def _on_echo(self, msg: Message) -> None:  # link test: the blob comes back unchanged
        self.reply(msg, MsgType.ECHO_REPLY, {}, msg.blob)

    def _on_frame(self, msg: Message) -> None:
        t_recv = time.perf_counter()
        m = msg.meta
        h, w = int(m["h"]), int(m["w"])
        if len(msg.blob) != h * w:
            raise QdevError(f"frame {m.get('frame_id')}: {len(msg.blob)} bytes for {w}x{h} pixels")
        px = np.frombuffer(msg.blob, dtype=np.uint8).reshape(h, w)
        res: FrameResult = self.rt.infer(int(m.get("frame_id", 0)), px)
        meta = res.meta()
        meta["t_recv"] = t_recv
        meta["bundle_id"] = self.rt.bundle_id
        meta["mask_crc"] = zlib.crc32(res.mask_bytes())
        kind = MsgType.INFER_REPLY if msg.type == MsgType.INFER else MsgType.STREAM_RESULT
        self.reply(msg, kind, meta, res.mask_bytes())

    def _on_flash_begin(self, msg: Message) -> None:
        sha, size = str(msg.meta["sha256"]), int(msg.meta["size"])
        off = self.rt.begin_upload(sha, size)
        self.upload = {"sha256": sha, "size": size}
        self.reply(msg, MsgType.FLASH_STATUS, {"offset": off, "max_chunk": 1 << 20})

    def _current_upload(self) -> dict:
        if not self.upload:
            raise StoreError("no upload in progress (send FLASH_BEGIN)")
        return self.upload

    def _on_flash_chunk(self, msg: Message) -> None:
        up = self._current_upload()
        off = self.rt.write_chunk(up["sha256"], int(msg.meta["offset"]), msg.blob, int(msg.meta["crc"]))
        self.reply(msg, MsgType.FLASH_STATUS, {"offset": off})

    def _on_flash_end(self, msg: Message) -> None:
        up = self._current_upload()
        self.upload = None
        self.reply(msg, MsgType.FLASH_STATUS, _install_meta(self.rt.finish_upload(up["sha256"], up["size"])))

    def _on_activate(self, msg: Message) -> None:
        self.reply(msg, MsgType.FLASH_STATUS, _install_meta(self.rt.activate(str(msg.meta["bundle_id"]))))

    def _on_rollback(self, msg: Message) -> None:
        self.reply(msg, MsgType.FLASH_STATUS, _install_meta(self.rt.rollback()))

    def _on_stats(self, msg: Message) -> None:
        ps = self.ch.parser.stats
        link = {"bytes_in": self.ch.bytes_in, "bytes_out": self.ch.bytes_out,
                "dropped_frames": ps.header_crc_errors + ps.payload_crc_errors,
                "discarded_bytes": ps.discarded_bytes}
        self.reply(msg, MsgType.STATS, {**self.rt.stats(), "link": link,
                                        "live": self.hub.latest if self.hub else None})

    def _on_power(self, msg: Message) -> None:
        self.reply(msg, MsgType.POWER, self.rt.power())

    def _on_watch(self, msg: Message) -> None:
        if self.hub is None:
            raise QdevError("this device runs no on-device probe (start serve with --probe)")
        if self.watch is None:
            self.watch = self.hub.subscribe()
        self.reply(msg, MsgType.WATCH, {"watching": True})


HANDLERS: dict[MsgType, Callable[[Session, Message], None]] = {
    MsgType.INFO: Session._on_info,
    MsgType.ECHO: Session._on_echo,
    MsgType.INFER: Session._on_frame,
    MsgType.STREAM_FRAME: Session._on_frame,
    MsgType.FLASH_BEGIN: Session._on_flash_begin,
    MsgType.FLASH_CHUNK: Session._on_flash_chunk,
    MsgType.FLASH_END: Session._on_flash_end,
    MsgType.ACTIVATE: Session._on_activate,
    MsgType.ROLLBACK: Session._on_rollback,
    MsgType.STATS: Session._on_stats,
    MsgType.POWER: Session._on_power,
    MsgType.WATCH: Session._on_watch,
}


class TcpServer:
    """Accepts TCP connections; each gets its own Session thread."""

    def __init__(self, runtime: DeviceRuntime, host: str = "127.0.0.1", port: int = 7967,
                 hub: LiveHub | None = None, idle_timeout: float = 60.0) -> None:
        self.rt, self.hub, self.idle_timeout = runtime, hub, idle_timeout
        self.sock = socket.create_server((host, port), reuse_port=False)
        self.address = self.sock.getsockname()[:2]
        self.stop = threading.Event()

    def serve_forever(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                break
            link = SocketLink(conn, f"tcp://{peer[0]}:{peer[1]}")
            s = Session(self.rt, link, self.hub, self.idle_timeout)
            threading.Thread(target=self._run, args=(s,), daemon=True).start()

    def _run(self, s: Session) -> None:
        try:
            s.run(self.stop)
        finally:
            s.ch.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def serve_serial(runtime: DeviceRuntime, url: str, baudrate: int, stop: threading.Event,
                 hub: LiveHub | None = None, idle_timeout: float = 3600.0) -> None:
    """Serve one serial port until ``stop``; a broken session is restarted (host speaks first)."""
    link = SerialLink(url, baudrate)
    try:
        while not stop.is_set():
            Session(runtime, link, hub, idle_timeout).run(stop)
            time.sleep(0.05)  # the session ended (peer reset, idle): wait for the next HELLO
    finally:
        link.close()
