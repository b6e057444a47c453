"""TLS 1.3 over the serial link: the same mutually pinned TLS as TCP (:mod:`qdev.core.tls`),
run by stdlib ``ssl`` over memory BIOs (``SSLContext.wrap_bio``) on the framed byte stream.

A serial line has no connections, so TLS's bytes travel in **carrier frames**: qdev's frame
(magic, CRC-checked header and payload, :mod:`qdev.core.protocol`) of type ``TLS_RECORD`` whose
payload is an 8-byte connection id (the host's random choice per handshake) and up to
:data:`MAX_CHUNK` bytes of the TLS stream. Line noise is dropped by the frame CRC; a lost
carrier frame breaks its TLS connection (TLS authenticates every record and has no
retransmission), and the host starts a new one.

The device keeps at most one **live** connection and one **pending** handshake. A handshake
becomes live only when it completes with a paired certificate (mutual TLS: the host proved its
key); only then is the previous live connection closed. So a recorded or replayed ClientHello,
or any stream of frames from someone without a paired key, never touches the live session (it
dies in the pending slot), and a recorded session is worthless: TLS 1.3's ephemeral (EC)DHE
gives every connection fresh keys (forward secrecy), which the sealed frames of protocol v2
(static ECDH, :mod:`qdev.core.linkauth` until this module replaced it) did not.

Inside a live connection the protocol is unchanged: framed messages (HELLO first), as over TCP.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable

from qdev.core.link import Link, LinkError, LinkTimeout
from qdev.core.protocol import FrameParser, MsgType, encode

__all__ = ["CID_BYTES", "MAX_CHUNK", "MAX_UNACKED", "Carrier", "TlsBioLink", "client_over_serial"]

CID_BYTES = 8
MAX_CHUNK = 1024  # bytes of the TLS stream per carrier frame: a noise burst costs one small resend
MAX_OUT_OF_ORDER = 512  # frames a receiver keeps past a gap, waiting for the missing one
MAX_UNACKED = 8 << 20  # bytes a connection may have unacknowledged


class _Tx:
    """One connection's sending side: the next sequence number and what the peer has not acked."""

    def __init__(self) -> None:
        self.next = 0
        self.unacked: dict[int, bytes] = {}  # seq -> the whole encoded frame, in sending order
        self.sent_at = 0.0  # when the oldest unacked frame was (re)sent
        self.resends = 0
        self.dups = 0  # acks in a row that acknowledged nothing new


class Carrier:
    """Carrier frames on a byte link, reliable and in order per connection id:
    ``send(cid, data)``, ``recv(timeout) -> (cid, data)``.

    Each connection numbers its frames (the frame header's ``seq``); the receiver delivers them
    in order, drops duplicates and anything past a gap, and acknowledges cumulatively (a
    ``TLS_ACK`` frame: the next ``seq`` it wants) and keeps what arrives past a gap; the sender
    sends the oldest unacknowledged frame again when the same acknowledgement comes twice more
    (frames are arriving past a gap) or when it has waited longer than the link needs to carry
    what is in flight plus :attr:`rto` (selective repeat, with small frames). So line
    noise, which the CRCs turn into lost frames, costs a resend of a kilobyte, not the TLS
    connection. Unacknowledged data is bounded (:data:`MAX_UNACKED`): a
    peer that never acknowledges fails the connection. Frames of any other type are handed to
    ``other`` (the device answers a plain HELLO of an older host with an ERROR saying why).
    A frame in the middle of a connection this side does not know (it ended it) is answered with
    ``TLS_RESET``, so the peer starts a new one at once instead of waiting out its timeout.
    Acknowledgements and resets are not authenticated: forging them can only break a connection,
    which anyone on the wire can do by jamming it."""

    rto = 0.15  # seconds, beyond the time the link needs to carry what is in flight
    max_resends = 200  # a connection whose data is never acknowledged is given up

    def __init__(self, link: Link, other: Callable | None = None) -> None:
        self.link = link
        self.parser = FrameParser(max_payload=CID_BYTES + MAX_CHUNK)
        self.other = other
        self.rate = float(getattr(link, "baudrate", 921600)) / 10.0  # bytes/s, 8N1
        self._wlock = threading.Lock()
        self._slock = threading.Lock()
        self._tx: dict[bytes, _Tx] = {}
        self._expect: dict[bytes, int] = {}
        self._held: dict[bytes, dict[int, bytes]] = {}  # per connection: frames past a gap
        self._ready: deque = deque()
        self.stall_s = 1.0
        self.last_rx = time.monotonic()
        self.bytes_out = 0
        self.bytes_in = 0
        self.frames_out = 0
        self.resent = 0
        self.out_of_order = 0
        self.resets: set[bytes] = set()

    def _write(self, frame: bytes) -> None:
        with self._wlock:
            self.link.write(frame)
            self.bytes_out += len(frame)
            self.frames_out += 1

    def send(self, cid: bytes, data: bytes) -> None:
        for i in range(0, len(data), MAX_CHUNK):
            with self._slock:
                st = self._tx.setdefault(cid, _Tx())
                if sum(map(len, st.unacked.values())) > MAX_UNACKED:
                    raise LinkError(
                        f"{self.link.name}: the peer acknowledges nothing ({MAX_UNACKED} bytes "
                        "waiting)"
                    )
                frame = encode(
                    MsgType.TLS_RECORD,
                    st.next,
                    cid + data[i : i + MAX_CHUNK],
                    CID_BYTES + MAX_CHUNK,
                )
                if not st.unacked:
                    st.sent_at = time.monotonic()
                st.unacked[st.next] = frame
                st.next = (st.next + 1) & 0xFFFFFFFF
            self._write(frame)

    def forget(self, cid: bytes) -> None:
        """Drop a connection's state (it ended): nothing of it is sent again."""
        with self._slock:
            self._tx.pop(cid, None)
            self._expect.pop(cid, None)
            self._held.pop(cid, None)
            self.resets.discard(cid)

    def _resend_due(self) -> None:
        now = time.monotonic()
        due = []
        with self._slock:
            for cid, st in list(self._tx.items()):
                if not st.unacked:
                    continue
                wait = self.rto + min(sum(map(len, st.unacked.values())), 64 << 10) / self.rate
                if now - st.sent_at < wait:
                    continue
                st.resends += 1
                if (
                    st.resends > self.max_resends
                ):  # the peer is gone: stop (the TLS layer times out)
                    del self._tx[cid]
                    continue
                st.sent_at = now
                due.append(
                    next(iter(st.unacked.values()))
                )  # the oldest: the receiver holds what came after it
        for frame in due:
            self.resent += 1
            self._write(frame)

    def recv(self, timeout: float) -> tuple[bytes, bytes]:
        """The next in-order data of any connection: (connection id, bytes).

        Raises:
            LinkTimeout: none within ``timeout``.
            LinkError: the link failed.
        """
        deadline = time.monotonic() + timeout
        while not self._ready:
            self._resend_due()
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkTimeout(f"{self.link.name}: nothing within {timeout:g} s")
            data = self.link.read(min(left, 0.05))
            now = time.monotonic()
            if not data:
                # a partial frame whose sender went quiet for stall_s: it died mid-frame; a pause
                # shorter than that is a busy sender, and its frame is still coming
                if self.parser.buffered and now - self.last_rx > self.stall_s:
                    self.last_rx = now
                    for fr in self.parser.expire():
                        self._take(fr)
                continue
            self.last_rx = now
            self.bytes_in += len(data)
            for fr in self.parser.feed(data):
                self._take(fr)
        return self._ready.popleft()

    def _take(self, fr) -> None:  # noqa: ANN001
        if fr.type == MsgType.TLS_RESET and len(fr.payload) == CID_BYTES:
            self.resets.add(fr.payload)  # the peer has no such connection (any more)
            return
        if fr.type == MsgType.TLS_ACK and len(fr.payload) == CID_BYTES:
            with self._slock:
                st = self._tx.get(fr.payload)
                fast = None
                if st is not None:
                    acked = [q for q in st.unacked if 0 < ((fr.seq - q) & 0xFFFFFFFF) <= 0x80000000]
                    for q in acked:  # every seq before the one the peer wants next
                        del st.unacked[q]
                    if acked:
                        st.sent_at, st.resends, st.dups = time.monotonic(), 0, 0
                    elif st.unacked:  # the same ack again: frames arrive past a gap (fast resend)
                        st.dups += 1
                        if st.dups == 2:
                            fast, st.sent_at = next(iter(st.unacked.values())), time.monotonic()
            if fast is not None:
                self.resent += 1
                self._write(fast)
            return
        if fr.type != MsgType.TLS_RECORD or len(fr.payload) <= CID_BYTES:
            if self.other is not None:
                self.other(fr)
            return
        cid = fr.payload[:CID_BYTES]
        if cid not in self._expect and fr.seq != 0:  # the middle of a connection this side ended
            self._write(encode(MsgType.TLS_RESET, 0, cid))
            return
        want = self._expect.get(cid, 0)
        ahead = (fr.seq - want) & 0xFFFFFFFF
        if ahead == 0:
            self._ready.append((cid, fr.payload[CID_BYTES:]))
            want = (want + 1) & 0xFFFFFFFF
            held = self._held.get(cid, {})
            while want in held:  # what came past the gap, now in order
                self._ready.append((cid, held.pop(want)))
                want = (want + 1) & 0xFFFFFFFF
            self._expect[cid] = want
            if len(self._expect) > 8:  # ids of ended connections: keep the newest few
                old = next(iter(self._expect))
                self._expect.pop(old)
                self._held.pop(old, None)
        elif ahead < MAX_OUT_OF_ORDER:  # past a gap: kept until the missing frame comes again
            self.out_of_order += 1
            held = self._held.setdefault(cid, {})
            if len(held) < MAX_OUT_OF_ORDER:
                held[fr.seq] = fr.payload[CID_BYTES:]
        else:
            self.out_of_order += 1  # a duplicate (or far ahead): the ack says what is wanted
        self._write(encode(MsgType.TLS_ACK, self._expect.get(cid, want), cid))


class TlsBioLink(Link):
    """One TLS connection over a :class:`Carrier`, as a byte :class:`Link` (the protocol's
    Channel runs on it as on a TLS socket). The host side pumps the carrier itself; the device
    side is fed by its demultiplexer (:meth:`feed`) from another thread."""

    serial = True  # the codings a slow line wants (codecs.offer_for)

    def __init__(
        self,
        carrier: Carrier,
        ctx: ssl.SSLContext,
        server_side: bool,
        cid: bytes | None = None,
        name: str = "tls-serial",
        pump: bool = True,
    ) -> None:
        self.carrier, self.name = carrier, name
        self.cid = cid or os.urandom(CID_BYTES)
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self._in, self._out, server_side=server_side)
        self._ctx, self._device_name = ctx, None
        self.reconnects = 0
        self._lock = threading.Lock()
        self._fed = threading.Condition(self._lock)
        self._pump = pump
        self.closed = False
        self.failed: str | None = None
        self.device: str | None = None  # host side: the pinned device's name
        self.got_data = False

    # -- the device's demultiplexer hands this connection its bytes --------------------------
    def feed(self, data: bytes) -> None:
        with self._fed:
            self._in.write(data)
            self._fed.notify_all()

    def handshake_step(self) -> bool:
        """Advance the handshake on what was fed (device side). True: complete.

        Raises:
            ssl.SSLError: the peer failed it (unpaired, a replay, garbage).
        """
        with self._lock:
            try:
                self.obj.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            except ssl.SSLError:
                out = self._out.read()  # the alert tells the peer why
                if out:
                    self.carrier.send(self.cid, out)
                raise
            out = self._out.read()
        if out:
            self.carrier.send(self.cid, out)
        return done

    # -- Link ----------------------------------------------------------------------------------
    def handshake(self, timeout: float) -> None:
        """Run the whole handshake (host side: pumps the carrier).

        Raises:
            LinkError: it failed or timed out.
        """
        deadline = time.monotonic() + timeout
        # a port opened after our ClientHello left flushes it (pyserial's open() does): with no
        # answer at all for a while, start over (as the plain HELLO is retried)
        retry_after = min(3.0, timeout / 3)
        started, heard = time.monotonic(), False
        while True:
            if not heard and time.monotonic() - started > retry_after and self._pump:
                self._restart()
                started = time.monotonic()
            try:
                with self._lock:
                    self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
            except ssl.SSLError as exc:
                self._flush()  # the alert tells the peer why
                raise LinkError(
                    f"{self.name}: TLS handshake failed ({exc.reason or exc}): is this device "
                    "paired with this host (qdev pair / qdev-device pair)?"
                ) from exc
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkError(
                    f"{self.name}: no TLS answer within {timeout:g} s (is qdev-device serving "
                    "this port, and at this baud rate?)"
                )
            heard = self._wait_input(min(left, retry_after)) or heard

    def _flush(self) -> None:
        with self._lock:
            out = self._out.read()
        if out:
            self.carrier.send(self.cid, out)

    def _wait_input(self, timeout: float) -> bool:
        """Host: read carrier frames of this connection into the BIO. Device: wait to be fed.
        True when bytes of this connection came."""
        if not self._pump:
            with self._fed:
                if not self._in.pending and not self.closed:  # fed since the last read: no wait
                    self._fed.wait(min(timeout, 0.5))
            return False
        try:
            cid, data = self.carrier.recv(timeout)
        except LinkTimeout:
            return False
        if cid == self.cid:
            self.feed(data)
            return True
        return False

    def _restart(self) -> None:
        """A fresh connection (new id, new TLS object) in place of one that got no answer."""
        self.carrier.forget(self.cid)
        with self._lock:
            self.cid = os.urandom(CID_BYTES)
            self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.obj = self._ctx.wrap_bio(self._in, self._out, server_side=False)
            self.failed, self.got_data = None, False

    def write(self, data: bytes) -> None:
        if self.closed:
            raise LinkError(f"{self.name}: closed")
        try:
            with self._lock:
                self.obj.write(data)
                out = self._out.read()
        except ssl.SSLError as exc:
            raise LinkError(f"{self.name}: TLS failed ({exc.reason or exc})") from exc
        self.carrier.send(self.cid, out)

    def read(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            if self.closed:
                raise LinkError(
                    f"{self.name}: closed" + (f" ({self.failed})" if self.failed else "")
                )
            try:
                with self._lock:
                    data = self.obj.read(1 << 16)
                self.got_data = True
                return data
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError as exc:
                raise LinkError(f"{self.name}: the peer closed the connection") from exc
            except ssl.SSLError as exc:
                self.failed = str(exc.reason or exc)
                if (
                    not self.got_data and "ALERT" in self.failed
                ):  # TLS 1.3: the server refused our certificate
                    raise LinkError(
                        f"{self.name}: TLS handshake failed ({self.failed}): is this host paired "
                        "with "
                        "the device (qdev-device pair HOST.pem on the device)?"
                    ) from exc
                raise LinkError(
                    f"{self.name}: TLS failed ({self.failed}): a frame was lost or forged"
                ) from exc
            if self.cid in self.carrier.resets:
                raise LinkError(
                    f"{self.name}: the peer ended this TLS connection (it closed, or a record was "
                    "forged)"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                return b""
            self._wait_input(left)

    def reconnect(self, timeout: float) -> None:
        """Host side: a fresh TLS connection (new id, new keys) over the same port, after the last
        one broke (a lost or forged record). The device's session state starts afresh with it."""
        from qdev.core.errors import QdevError
        from qdev.core.tls import check_pinned_der

        self._restart()
        self.handshake(timeout)
        try:
            check_pinned_der(self.peer_der(), self._device_name)
        except QdevError as exc:
            raise LinkError(f"{self.name}: {exc}") from exc
        self.reconnects += 1

    def peer_der(self) -> bytes | None:
        return self.obj.getpeercert(binary_form=True)

    def close(self) -> None:
        self.closed = True
        with self._fed:
            self._fed.notify_all()
        self.carrier.forget(self.cid)
        if self._pump:  # the host's connection owns its port
            self.carrier.link.close()


def client_over_serial(
    link: Link, device_name: str | None = None, timeout: float = 10.0
) -> TlsBioLink:
    """The host's TLS connection to a paired device over a serial ``link``.

    Raises:
        LinkError: the handshake failed (unpaired on either side, no device, wrong baud rate).
    """
    from qdev.core.errors import QdevError
    from qdev.core.tls import check_pinned_der, client_context, pin_name

    try:
        ctx = client_context(device_name)
    except QdevError as exc:
        link.close()
        raise LinkError(f"{link.name}: {exc}") from exc
    t = TlsBioLink(Carrier(link), ctx, server_side=False, name=link.name)
    t._device_name = device_name
    try:
        t.handshake(timeout)
        fp = check_pinned_der(t.peer_der(), device_name)
    except QdevError as exc:
        link.close()
        raise LinkError(f"{link.name}: {exc}") from exc
    t.device = pin_name(fp)
    return t
