"""Serve a DeviceRuntime over links: TCP (one thread per connection) and a serial port.

Session rules (docs/PROTOCOL.md): the host speaks first (HELLO); until then the device answers
nothing but an ERROR to other requests. Each request gets exactly one reply carrying the
request's sequence number in ``meta["re"]``; a failed request gets an ERROR reply and the
session goes on. Every request's meta is checked against :data:`REQUEST_FIELDS` before use. A
link from which no byte arrives for ``idle_timeout`` is dropped (TCP) or reset to "no session"
(serial); a TCP peer that has not said HELLO within ``hello_timeout`` is dropped, and at most
``max_sessions`` TCP sessions run at once (a new one evicts the oldest that never said HELLO).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
import zlib
from collections.abc import Callable, Mapping

import numpy as np

from qdev.core import codecs
from qdev.core.errors import QdevError
from qdev.core.link import Channel, Link, LinkError, LinkTimeout, Message, SerialLink, SocketLink
from qdev.core.protocol import DEFAULT_MAX_PAYLOAD, VERSION, MsgType
from qdev.device.runtime.service import DeviceRuntime, FrameResult
from qdev.core.messages import MAX_CHUNK, REQUESTS, allowed
from qdev.device.store import StoreError
from qdev.core.validate import BadRequest, Field, check_fields

__all__ = [
    "Session",
    "TcpServer",
    "SerialTlsServer",
    "serve_serial",
    "LiveHub",
    "HANDLERS",
    "REQUEST_FIELDS",
]

#: the longest message an ERROR reply carries (characters): far under the host's 64 KiB meta
ERROR_TEXT_MAX = 1024


def bounded_text(text: object, limit: int) -> str:
    """``text`` as a string of at most ``limit`` characters, cut in the middle with a marker."""
    s = str(text)
    if len(s) <= limit:
        return s
    keep = max(0, limit - 40)
    return f"{s[: keep // 2]} [... {len(s) - keep} characters cut ...] {s[-(keep - keep // 2) :]}"[
        :limit
    ]


#: the meta fields each request type must carry (others are ignored), from the one declaration
#: per request (:data:`qdev.core.messages.REQUESTS`); the blob limits are the frame's own (``h*w``
#: pixels, ``MAX_CHUNK`` bytes of upload)
REQUEST_FIELDS: dict[MsgType, Mapping[str, Field]] = {t: r.fields for t, r in REQUESTS.items()}

log = logging.getLogger("qdev.device")


class LiveHub:
    """Fan-out of on-device live results to watching sessions (newest wins, never blocks)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[queue.Queue] = []
        self.latest: dict | None = None
        self.ended: dict | None = None  # set once the on-device source has no more frames
        self.source: str | None = None  # the on-device probe's name (serve --probe)

    def subscribe(self) -> queue.Queue:
        q: queue.Queue = queue.Queue(maxsize=1)
        with self._lock:
            self._subs.append(q)
            if self.ended is not None:  # a watcher that comes after the end is told at once
                q.put_nowait((self.ended, None))
        return q

    def end(self, meta: dict) -> None:
        """The source ended: every watcher gets ``meta`` (``end``: true) after its last frame."""
        with self._lock:
            self.ended = {**meta, "end": True}
            subs = list(self._subs)
        for q in subs:
            while True:  # the end must not be dropped for the newest frame: wait for room
                try:
                    q.put((self.ended, None), timeout=0.5)
                    break
                except queue.Full:
                    if q not in self._subs:
                        break

    def unsubscribe(self, q: queue.Queue) -> None:
        with self._lock:
            if q in self._subs:
                self._subs.remove(q)

    def publish(self, meta: dict, blob: object) -> None:
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
    return {
        "done": True,
        "bundle_id": res.bundle_id,
        "activated": res.activated,
        "self_test": res.self_test,
        "previous": res.previous,
        "message": res.message,
    }


class Session:
    """One host conversation over one link."""

    def __init__(
        self,
        runtime: DeviceRuntime,
        link: Link,
        hub: LiveHub | None = None,
        idle_timeout: float = 60.0,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self.rt = runtime
        self.ch = Channel(link, max_payload)
        self.hub = hub
        self.idle_timeout = idle_timeout
        self.hello = False
        self.role = "operator"  # loopback TCP is local; TLS (TCP or serial) sets the paired role
        self.link_error: LinkError | None = None  # how run() ended, if the link failed
        self.watch: queue.Queue | None = None
        self.jpeg_quality = 70
        # the display frame's longer side (0: the model's input, as protocol v2 began)
        self.display_max = 0
        self.upload: dict | None = None
        self.codecs = codecs.negotiate(None)  # until a HELLO offers better: the uncoded forms
        # when the last whole request arrived (bytes alone do not count)
        self.last_request = time.monotonic()
        self.link_facts: Callable[[], dict] | None = None

    def reply(
        self, req: Message, mtype: MsgType, meta: dict | None = None, blob: bytes = b""
    ) -> None:
        self.ch.send(mtype, {"re": req.seq, **(meta or {})}, blob)

    def run(self, stop: threading.Event, beat=None, hello_timeout: float | None = None) -> None:  # noqa: ANN001
        """Serve until ``stop``, the peer closes, or no byte came for ``idle_timeout`` (any byte:
        a noisy link is not idle). ``hello_timeout``: drop a peer that has not said HELLO by
        then. ``beat()`` is called every turn (the supervisor's liveness check)."""
        started = time.monotonic()
        try:
            while not stop.is_set():
                if beat is not None:
                    beat()
                self._push_live()
                try:
                    # watching: a short wait, so a new result goes out within ~5 ms (50 ms capped
                    # the pushes at 20 per second whatever the link and the accelerator could do)
                    msg = self.ch.recv(0.005 if self.watch else 0.5)
                except LinkTimeout:
                    if self._quiet_too_long(started, hello_timeout):
                        return
                    continue
                self.last_request = time.monotonic()
                self.handle(msg)
        except LinkError as exc:
            log.info("%s: %s", self.ch.link.name, exc)
            self.link_error = exc
        finally:
            if self.watch is not None and self.hub is not None:
                self.hub.unsubscribe(self.watch)

    def _quiet_too_long(self, started: float, hello_timeout: float | None) -> bool:
        """No byte for ``idle_timeout``, or no HELLO within ``hello_timeout`` of the start."""
        now = time.monotonic()
        name = self.ch.link.name
        if now - self.ch.last_rx > self.idle_timeout:
            log.info("%s: idle for %.0f s, closing the session", name, self.idle_timeout)
            return True
        if hello_timeout is not None and not self.hello and now - started > hello_timeout:
            log.info("%s: no HELLO within %.0f s, closing", name, hello_timeout)
            return True
        return False

    def _push_live(self) -> None:
        if self.watch is None:
            return
        try:
            meta, item = self.watch.get_nowait()
        except queue.Empty:
            return
        if item is None:  # the end of the on-device source
            self.ch.send(MsgType.LIVE, meta)
            return
        mask, px, probe = item
        shown = px if self.display_max <= 0 else codecs.fit_display(probe, self.display_max)
        mb = codecs.encode_mask(mask, self.codecs["mask"])
        db = codecs.encode_display(shown, self.codecs["display"], self.jpeg_quality)
        self.ch.send(
            MsgType.LIVE,
            {
                **meta,
                "mask_enc": self.codecs["mask"],
                "mask_len": len(mb),
                "display_enc": self.codecs["display"],
                "dh": int(shown.shape[0]),
                "dw": int(shown.shape[1]),
                "probe_h": int(probe.shape[0]),
                "probe_w": int(probe.shape[1]),
                "mask_crc": zlib.crc32(np.packbits(mask.reshape(-1)).tobytes()),
            },
            mb + db,
        )

    def handle(self, msg: Message) -> None:
        """Answer one request (exactly one reply), by the dispatch table :data:`HANDLERS`."""
        if msg.version != VERSION:  # answered in its own framing, so that an old host can say why
            self.ch.send(
                MsgType.ERROR,
                {
                    "re": msg.seq,
                    "code": "protocol_version",
                    "message": f"this device speaks qdev protocol {VERSION}, not {msg.version}: "
                    "update the host "
                    "(pip install -U qdev)",
                },
                version=msg.version,
            )
            return
        if msg.type == MsgType.HELLO:
            try:
                self._on_hello(msg)
            except BadRequest as exc:
                self._error(msg, f"bad HELLO: {exc}", "bad_request")
            return
        if not self.hello:
            self.reply(
                msg, MsgType.ERROR, {"message": "no session: send HELLO first", "code": "no_hello"}
            )
            return
        handler = HANDLERS.get(msg.type)
        try:
            if msg.bad is not None:
                raise BadRequest("meta", msg.bad)
            if handler is None:
                raise QdevError(f"unknown request type {msg.type}")
            if not allowed(MsgType(msg.type), self.role):
                self._error(
                    msg,
                    f"{msg.name} needs the {REQUESTS[MsgType(msg.type)].role} role; this host is "
                    f"paired as {self.role}",
                    "forbidden",
                )
                return
            check_fields(msg.meta, REQUEST_FIELDS[MsgType(msg.type)])
            handler(self, msg)
        except BadRequest as exc:
            self._error(msg, f"bad {msg.name} request: {exc}", "bad_request")
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            self._error(msg, f"bad {msg.name} request ({type(exc).__name__}: {exc})", "bad_request")
        except QdevError as exc:
            self._error(msg, str(exc), type(exc).__name__)
        except OSError as exc:  # the store's disk: full, read-only, gone
            log.error("%s: %s failed: %s", self.ch.link.name, msg.name, exc)
            self._error(msg, f"device storage error: {exc.strerror or exc}", "storage")
        except LinkError:
            raise
        except Exception as exc:  # a bug: keep the session, tell the host, keep the traceback here
            log.exception("%s: internal error in %s", self.ch.link.name, msg.name)
            self._error(
                msg,
                f"internal error in {msg.name} ({type(exc).__name__}); see the device log",
                "internal",
            )

    def _error(self, msg: Message, text: str, code: str) -> None:
        """An ERROR reply, bounded: the message cut to :data:`ERROR_TEXT_MAX` characters (a name
        repeated from the request, e.g. a 17 MiB tar member name, never makes a reply too big for
        the frame or the host's meta limit), the code to 64 characters of its own alphabet."""
        self.rt.counters.error()
        self.ch.send(
            MsgType.ERROR,
            {
                "re": msg.seq,
                "message": bounded_text(text, ERROR_TEXT_MAX),
                "code": bounded_text(code, 64),
            },
        )

    def _on_hello(self, msg: Message) -> None:
        """Start a session: the codecs both sides speak, and what this device is. The peer's role
        is the link's (a paired certificate's over TLS; operator on loopback TCP) and HELLO_ACK
        states it."""
        if msg.bad is not None:
            raise BadRequest("meta", msg.bad)
        check_fields(msg.meta, REQUEST_FIELDS[MsgType.HELLO])
        self.hello = True
        self.codecs = codecs.negotiate(msg.meta.get("codecs"))
        self.reply(
            msg,
            MsgType.HELLO_ACK,
            {
                "protocol": VERSION,
                **self.rt.info(),
                "codecs": self.codecs,
                "max_payload": self.ch.max_payload,
                "role": self.role,
            },
        )

    # -- request handlers (one per message type; see HANDLERS) --------------------------------

    def _on_info(self, msg: Message) -> None:
        self.reply(msg, MsgType.INFO_REPLY, self.rt.info())

    def _on_echo(self, msg: Message) -> None:  # link test: the blob comes back unchanged
        self.reply(msg, MsgType.ECHO_REPLY, {}, msg.blob)

    def _on_frame(self, msg: Message) -> None:
        t_recv = time.perf_counter()
        m = msg.meta
        h, w = int(m["h"]), int(m["w"])  # checked (REQUEST_FIELDS): h*w cannot overflow
        enc = m.get("enc", "raw")
        if enc not in self.codecs["frame"]:
            raise BadRequest(
                "enc", f"{enc!r} was not negotiated (this session takes {self.codecs['frame']})"
            )
        try:
            px = codecs.decode_frame(msg.blob, enc, h, w)
        except codecs.CodecError as exc:  # the host's frame, not the device: bad_request
            raise BadRequest("blob", f"frame {m.get('frame_id')}: {exc}") from exc
        res: FrameResult = self.rt.infer(int(m.get("frame_id", 0)), px)
        meta = res.meta()
        meta["t_recv"] = t_recv
        meta["bundle_id"] = self.rt.bundle_id
        meta["mask_crc"] = zlib.crc32(res.mask_bytes())  # of the packed bits, whatever the coding
        meta["mask_enc"] = self.codecs["mask"]
        kind = MsgType.INFER_REPLY if msg.type == MsgType.INFER else MsgType.STREAM_RESULT
        self.reply(msg, kind, meta, codecs.encode_mask(res.mask, self.codecs["mask"]))

    def _on_flash_begin(self, msg: Message) -> None:
        m = msg.meta
        sha, size = m["sha256"], m["size"]
        res = self.rt.begin_upload(
            sha,
            size,
            m["manifest"].encode(),
            m["signature"].encode(),
            bool(m.get("allow_downgrade", False)),
        )
        if "installed" in res:  # that bundle is here and intact: nothing to upload
            self.upload = None
            self.reply(msg, MsgType.FLASH_STATUS, {"installed": res["installed"], "offset": size})
            return
        self.upload = {"sha256": sha, "size": size}
        self.reply(msg, MsgType.FLASH_STATUS, {"offset": res["offset"], "max_chunk": MAX_CHUNK})

    def _current_upload(self) -> dict:
        if not self.upload:
            raise StoreError("no upload in progress (send FLASH_BEGIN)")
        return self.upload

    def _on_flash_chunk(self, msg: Message) -> None:
        if len(msg.blob) > MAX_CHUNK:
            raise BadRequest("blob", f"{len(msg.blob)} bytes, the chunk limit is {MAX_CHUNK}")
        up = self._current_upload()
        off = self.rt.write_chunk(
            up["sha256"], int(msg.meta["offset"]), msg.blob, int(msg.meta["crc"])
        )
        self.reply(msg, MsgType.FLASH_STATUS, {"offset": off})

    def _on_flash_end(self, msg: Message) -> None:
        up = self._current_upload()
        self.upload = None
        self.reply(
            msg,
            MsgType.FLASH_STATUS,
            _install_meta(self.rt.finish_upload(up["sha256"], up["size"])),
        )

    def _on_activate(self, msg: Message) -> None:
        res = self.rt.activate(msg.meta["bundle_id"], bool(msg.meta.get("allow_downgrade", False)))
        self.reply(msg, MsgType.FLASH_STATUS, _install_meta(res))

    def _on_rollback(self, msg: Message) -> None:
        self.reply(msg, MsgType.FLASH_STATUS, _install_meta(self.rt.rollback()))

    def _on_stats(self, msg: Message) -> None:
        ps = self.ch.parser.stats
        link = {
            "bytes_in": self.ch.bytes_in,
            "bytes_out": self.ch.bytes_out,
            "dropped_frames": ps.header_crc_errors + ps.payload_crc_errors,
            "discarded_bytes": ps.discarded_bytes,
        }
        if self.link_facts is not None:  # the serial port's TLS: handshakes, the carrier's drops
            link.update(self.link_facts())
        self.reply(
            msg,
            MsgType.STATS,
            {
                **self.rt.stats(),
                "link": link,
                "live": self.hub.latest if self.hub else None,
                "live_source": self.hub.source if self.hub else None,
            },
        )

    def _on_power(self, msg: Message) -> None:
        self.reply(msg, MsgType.POWER, self.rt.power())

    def _on_watch(self, msg: Message) -> None:
        if self.hub is None:
            raise QdevError("this device runs no on-device probe (start serve with --probe)")
        self.jpeg_quality = int(msg.meta.get("jpeg_quality", self.jpeg_quality))
        self.display_max = int(msg.meta.get("display_max", self.display_max))
        if self.watch is None:
            self.watch = self.hub.subscribe()
        self.reply(msg, MsgType.WATCH, {"watching": True})


#: the device's handler of every declared request (HELLO included: Session.handle runs it first)
HANDLERS: dict[MsgType, Callable[[Session, Message], None]] = {
    t: getattr(Session, r.handler) for t, r in REQUESTS.items()
}


class TcpServer:
    """Accepts TCP connections; each gets its own Session thread, up to ``max_sessions``."""

    def __init__(
        self,
        runtime: DeviceRuntime,
        host: str = "127.0.0.1",
        port: int = 7967,
        hub: LiveHub | None = None,
        idle_timeout: float = 60.0,
        max_sessions: int = 16,
        hello_timeout: float = 5.0,
        tls_store: str | None = None,
        evict_after: float = 10.0,
    ) -> None:
        self.rt, self.hub, self.idle_timeout = runtime, hub, idle_timeout
        self.max_sessions, self.hello_timeout, self.evict_after = (
            max_sessions,
            hello_timeout,
            evict_after,
        )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host, port), family=family, reuse_port=False)
        self.address = self.sock.getsockname()[:2]
        self.stop = threading.Event()
        self._sessions: list[Session] = []  # in order of arrival
        self._lock = threading.Lock()
        self.refused = 0
        self.tls_store = tls_store
        self.tls = None
        if tls_store is not None:
            from qdev.core.tls import server_context

            self.tls = server_context(tls_store)  # made now: a broken identity fails at start

    def serve_forever(self, beat=None) -> None:  # noqa: ANN001
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            if beat is not None:
                beat()
            try:
                conn, peer = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                if self.stop.is_set():
                    break
                raise  # the listening socket failed: the supervisor restarts this loop
            threading.Thread(target=self._start, args=(conn, peer), daemon=True).start()

    def _start(self, conn: socket.socket, peer: tuple) -> None:
        role = "operator"
        if (
            self.tls is not None
        ):  # the handshake runs here, off the acceptor: a slow peer blocks no one
            import ssl

            from qdev.core.tls import peer_role

            from qdev.core.tls import server_context

            try:
                conn.settimeout(self.hello_timeout)
                # per connection: a host paired (qdev-device pair) while serving is known at once
                conn = server_context(self.tls_store).wrap_socket(conn, server_side=True)
                role = peer_role(self.tls_store, conn)
            except (ssl.SSLError, OSError) as exc:
                log.warning("tls://%s:%s refused: %s", peer[0], peer[1], exc)
                conn.close()
                return
            if role is None:  # cannot happen with only paired certificates as anchors; never assume
                conn.close()
                return
        link = SocketLink(conn, f"{'tls' if self.tls else 'tcp'}://{peer[0]}:{peer[1]}")
        s = Session(self.rt, link, self.hub, self.idle_timeout)
        s.role = role
        if not self._admit(s):
            self.refused += 1
            log.warning("%s refused: %d sessions already", link.name, self.max_sessions)
            link.close()
            return
        self._run(s)

    def _admit(self, s: Session) -> bool:
        """Take ``s``, making room when the cap is full; nobody can hold the cap against others:
        the oldest peer that never said HELLO goes first; then, for an operator, the oldest viewer
        (an operator can always get in); then the session whose last whole request is oldest, if
        that is over ``evict_after`` seconds ago and it is not watching the live feed (a peer that
        says HELLO and then trickles a byte now and then holds nothing)."""
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                victim = self._victim(s)
                if victim is None:
                    return False
                log.warning(
                    "session cap full: closing %s to admit %s", victim.ch.link.name, s.ch.link.name
                )
                victim.ch.close()
                self._sessions.remove(victim)
            self._sessions.append(s)
            return True

    def _victim(self, s: Session) -> Session | None:
        silent = [x for x in self._sessions if not x.hello]
        if silent:
            return silent[0]
        if s.role == "operator":
            viewers = [x for x in self._sessions if x.role == "viewer"]
            if viewers:
                return viewers[0]
        now = time.monotonic()
        stale = [
            x for x in self._sessions if x.watch is None and now - x.last_request > self.evict_after
        ]
        return min(stale, key=lambda x: x.last_request) if stale else None

    def _run(self, s: Session) -> None:
        try:
            s.run(self.stop, hello_timeout=self.hello_timeout)
        except LinkError:
            pass
        finally:
            s.ch.close()
            with self._lock:
                if s in self._sessions:
                    self._sessions.remove(s)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


class SerialTlsServer:
    """The serial port's TLS (:mod:`qdev.core.tlsserial`): carrier frames demultiplexed by
    connection id into one **live** TLS session (served by a :class:`Session` on its own thread)
    and at most one **pending** handshake. A handshake replaces the live session only once it
    completes with a paired certificate, so a replayed or forged ClientHello, or a stranger's
    frames, never disturb the paired host's session. A plain frame (an older host's HELLO) gets
    a plain ERROR saying what this link needs."""

    def __init__(
        self,
        runtime: DeviceRuntime,
        link: Link,
        hub: LiveHub | None = None,
        idle_timeout: float = 3600.0,
        handshake_timeout: float = 10.0,
    ) -> None:
        from qdev.core.tlsserial import Carrier

        self.rt, self.link, self.hub = runtime, link, hub
        self.idle_timeout, self.handshake_timeout = idle_timeout, handshake_timeout
        self.carrier = Carrier(link, other=self._plain)
        self.live = None  # (TlsBioLink, Session, Thread)
        self.pending = None  # (TlsBioLink, started)
        self.handshakes = {"completed": 0, "failed": 0, "expired": 0, "unpaired": 0}

    def _plain(self, fr) -> None:  # noqa: ANN001
        from qdev.core.protocol import encode

        text = (
            "this serial link carries TLS only (qdev protocol 2 over TLS 1.3): update the host "
            "(pip install -U qdev) and pair it (qdev pair / qdev-device pair)"
        )
        if fr.version != VERSION:
            text = (
                f"this device speaks qdev protocol {VERSION}, not {fr.version}: "
                "update the host (pip install -U qdev)"
            )
        if fr.type == MsgType.ERROR:
            return  # never answer an answer
        from qdev.core.link import pack_payload

        code = "protocol_version" if fr.version != VERSION else "unauthenticated"
        self.link.write(
            encode(
                MsgType.ERROR,
                0,
                pack_payload({"re": fr.seq, "code": code, "message": text}),
                version=fr.version,
            )
        )

    def run(self, stop: threading.Event, beat=None) -> None:  # noqa: ANN001
        """Serve until ``stop``. A link failure (the port vanished) raises :class:`LinkError`."""
        failures = 0
        try:
            while not stop.is_set():
                if beat is not None:
                    beat()
                self._reap()
                try:
                    cid, data = self.carrier.recv(0.25)
                    failures = 0
                except LinkTimeout:
                    failures = 0
                    continue
                except LinkError:
                    # a pty or USB adapter whose other end just closed reports a read with no data;
                    # only a port that keeps failing is gone (the supervisor then reopens it)
                    failures += 1
                    if failures >= 5:
                        raise
                    time.sleep(0.05)
                    continue
                if self.live is not None and cid == self.live[0].cid:
                    self.live[0].feed(data)
                else:
                    self._handshake(cid, data, stop)
        finally:
            self._close_live()

    def _handshake(self, cid: bytes, data: bytes, stop: threading.Event) -> None:
        """Feed a record of a connection that is not the live one to its TLS handshake (a new
        connection id abandons the unfinished handshake); a finished one goes live."""
        import ssl

        from qdev.core.tlsserial import TlsBioLink
        from qdev.core.tls import peer_role_der, server_context

        store = self.rt.cfg.store
        if self.pending is None or cid != self.pending[0].cid:
            if self.pending is not None:
                self.handshakes["failed"] += 1  # a new handshake abandons the unfinished one
                self.pending[0].close()
            # per handshake: a host paired while serving is known at once
            ctx = server_context(store)
            link = TlsBioLink(self.carrier, ctx, True, cid, self.link.name, pump=False)
            self.pending = (link, time.monotonic())
        t = self.pending[0]
        t.feed(data)
        try:
            done = t.handshake_step()
        except ssl.SSLError as exc:
            self.handshakes["failed"] += 1
            log.warning("%s: TLS handshake refused (%s)", self.link.name, exc.reason or exc)
            t.close()
            self.pending = None
            return
        if done:
            self.pending = None
            self._go_live(t, peer_role_der(store, t.peer_der()), stop)

    def _go_live(self, t, role: str | None, stop: threading.Event) -> None:  # noqa: ANN001
        if (
            role is None
        ):  # only paired certificates are anchors, so this cannot happen; never assume
            self.handshakes["unpaired"] += 1
            return
        self._close_live()
        s = Session(self.rt, t, self.hub, self.idle_timeout)
        s.role = role
        s.link_facts = self.facts
        th = threading.Thread(
            target=self._serve, args=(s, stop), daemon=True, name="serial-session"
        )
        self.live = (t, s, th)
        self.handshakes["completed"] += 1
        th.start()

    @staticmethod
    def _serve(s: Session, stop: threading.Event) -> None:
        try:
            s.run(stop)
        except LinkError:
            pass
        finally:
            s.ch.link.close()

    def facts(self) -> dict:
        ps = self.carrier.parser.stats
        return {
            "tls": "TLS 1.3 over serial",
            "handshakes": dict(self.handshakes),
            "carrier_resent": self.carrier.resent,
            "carrier_out_of_order": self.carrier.out_of_order,
            "carrier_bytes_in": self.carrier.bytes_in,
            "carrier_bytes_out": self.carrier.bytes_out,
            "carrier_dropped_frames": ps.header_crc_errors + ps.payload_crc_errors,
            "carrier_discarded_bytes": ps.discarded_bytes,
        }

    def _reap(self) -> None:
        if self.live is not None and not self.live[2].is_alive():
            self.live[0].close()
            self.live = (
                None  # the session ended (idle, TLS failure): the next handshake starts afresh
            )
        if self.pending is not None and time.monotonic() - self.pending[1] > self.handshake_timeout:
            self.handshakes["expired"] += 1
            self.pending[0].close()
            self.pending = None

    def _close_live(self) -> None:
        if self.live is not None:
            t, _, th = self.live
            t.close()
            th.join(timeout=2.0)
            self.live = None


def serve_serial(
    runtime: DeviceRuntime,
    url: str,
    baudrate: int,
    stop: threading.Event,
    hub: LiveHub | None = None,
    idle_timeout: float = 3600.0,
    beat=None,
) -> None:  # noqa: ANN001
    """Serve one serial port until ``stop`` (TLS 1.3, :class:`SerialTlsServer`). A port that
    fails raises: the supervisor reopens it after a backoff."""
    link = SerialLink(url, baudrate)
    try:
        SerialTlsServer(runtime, link, hub, idle_timeout).run(stop, beat)
    finally:
        link.close()
