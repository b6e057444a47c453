"""Byte links and the message channel on top of them (device and host share this module).

A *link* moves bytes: a TCP socket, or a pyserial port opened with ``serial.serial_for_url``
(``/dev/ttyPS0``, a pty path, ``socket://``, ``rfc2217://``, ``loop://``). A :class:`Channel`
puts the framing of :mod:`device.protocol` on a link and carries *messages*: a frame whose
payload is ``u32 meta_len | meta (JSON, UTF-8) | blob`` (the blob holds pixels, masks or bundle
bytes; everything else is in the JSON).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from qdev.core.errors import QdevError
from qdev.core.protocol import DEFAULT_MAX_PAYLOAD, VERSION, Frame, FrameParser, MsgType, encode
from qdev.core.validate import BadRequest, check_meta_bytes

__all__ = [
    "is_loopback",
    "LinkError",
    "LinkTimeout",
    "Link",
    "SocketLink",
    "SerialLink",
    "Message",
    "Channel",
    "pack_payload",
    "unpack_payload",
    "open_link",
    "parse_tcp",
]

_META = struct.Struct("<I")


class LinkError(QdevError):
    """The link failed: closed by the peer, unreachable, or a malformed message."""


class LinkTimeout(LinkError):
    """No (complete) answer within the timeout."""


class Link:
    """A bidirectional byte pipe."""

    name = "link"

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def read(self, timeout: float) -> bytes:
        """Up to a chunk of bytes; b"" when nothing arrived within ``timeout``.

        Raises:
            LinkError: the peer closed the link.
        """
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SocketLink(Link):
    """TCP (TCP_NODELAY: Nagle would add ~40 ms stalls to every small reply)."""

    #: how long a send may wait for the peer to take bytes (its own deadline: a send used to
    #: inherit the last receive's 0.05-0.5 s timeout and cut a large reply to a slow reader)
    SEND_TIMEOUT_S = 30.0

    def __init__(self, sock: socket.socket, name: str = "tcp") -> None:
        self.sock = sock
        self.name = name
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def write(self, data: bytes) -> None:
        self.sock.settimeout(self.SEND_TIMEOUT_S)
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise LinkError(f"{self.name}: send failed ({exc})") from exc

    def read(self, timeout: float) -> bytes:
        self.sock.settimeout(max(timeout, 1e-4))
        try:
            data = self.sock.recv(1 << 20)
        except (TimeoutError, socket.timeout):
            return b""
        except OSError as exc:
            raise LinkError(f"{self.name}: receive failed ({exc})") from exc
        if not data:
            raise LinkError(f"{self.name}: closed by the peer")
        return data

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class SerialLink(Link):
    serial = True  # the codings a slow line wants (codecs.offer_for)

    """A pyserial port (any URL ``serial.serial_for_url`` accepts).

    On a posix tty (a UART, a pty) writes are full duplex: while the output drains, incoming
    bytes are read into a buffer that ``read`` hands out first. Otherwise two peers that both
    write more than the tty buffers hold before reading (pipelined frames one way, replies the
    other) would block each other for good.
    """

    def __init__(self, url: str, baudrate: int = 921600, write_timeout: float = 30.0) -> None:
        import serial

        try:
            self.port = serial.serial_for_url(
                url, baudrate=baudrate, timeout=0.1, write_timeout=write_timeout
            )
        except (serial.SerialException, ValueError, OSError) as exc:
            raise LinkError(f"cannot open serial port {url}: {exc}") from exc
        self.name = url
        self.write_timeout = write_timeout
        self._rx = bytearray()
        self._rlock = threading.Lock()
        try:
            self._fd = self.port.fileno() if hasattr(self.port, "fd") else None
        except (AttributeError, OSError, serial.SerialException):
            self._fd = None

    def write(self, data: bytes) -> None:
        import os
        import select

        import serial

        if self._fd is None:
            try:
                self.port.write(data)
                self.port.flush()
            except (serial.SerialException, OSError) as exc:
                raise LinkError(f"{self.name}: write failed ({exc})") from exc
            return
        view = memoryview(data)
        deadline = time.monotonic() + self.write_timeout
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkError(f"{self.name}: write timed out after {self.write_timeout:g} s")
            try:
                r, w, _ = select.select([self._fd], [self._fd], [], min(left, 0.5))
                if r and self._rlock.acquire(blocking=False):  # unless another thread reads now
                    try:
                        self._rx += os.read(self._fd, 1 << 16)
                    finally:
                        self._rlock.release()
                if w:
                    n = os.write(self._fd, view[: 1 << 16])
                    view = view[n:]
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                raise LinkError(f"{self.name}: write failed ({exc})") from exc

    def read(self, timeout: float) -> bytes:
        import serial

        with (
            self._rlock
        ):  # one reader at a time (the device reads on one thread, writes on another)
            if self._rx:
                out = bytes(self._rx)
                self._rx.clear()
                return out
            try:
                self.port.timeout = max(timeout, 1e-4)
                first = self.port.read(1)
                if not first:
                    return b""
                n = self.port.in_waiting
                return first + (self.port.read(n) if n else b"")
            except (serial.SerialException, OSError) as exc:
                raise LinkError(f"{self.name}: read failed ({exc})") from exc

    def close(self) -> None:
        self.port.close()


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_tcp(spec: str) -> tuple[str, int] | None:
    """``tcp://HOST:PORT`` or ``HOST:PORT`` (host a name, a dotted IPv4 or a bracketed IPv6
    address, ``[::1]:7968``) -> (host, port); else None."""
    s = spec[len("tcp://") :] if spec.startswith("tcp://") else spec
    if s.startswith("["):
        host, sep, port = s[1:].partition("]:")
        return (host, int(port)) if sep and host and ":" in host and port.isdigit() else None
    if s.startswith("/") or "://" in s or s.count(":") != 1:
        return None
    host, _, port = s.partition(":")
    if not host or not port.isdigit():
        return None
    return host, int(port)


def open_link(spec: str, baudrate: int = 921600, timeout: float = 5.0) -> Link:
    """A link from a port spec: ``tls://HOST:PORT`` (mutually authenticated TLS 1.3 to a paired
    device, :mod:`qdev.core.tls`), ``tcp://HOST:PORT`` / ``HOST:PORT``, or a serial URL / path
    (the same TLS over the serial line, :mod:`qdev.core.tlsserial`)."""
    if spec.startswith("tls://"):
        import ssl

        from qdev.core.tls import check_pinned, client_context

        hp = parse_tcp("tcp://" + spec[len("tls://") :])
        if hp is None:
            raise LinkError(f"{spec}: expected tls://HOST:PORT")
        ctx = client_context()
        try:
            raw = socket.create_connection(hp, timeout=timeout)
            sock = ctx.wrap_socket(raw)
        except ssl.SSLError as exc:
            raise LinkError(
                f"{spec}: TLS handshake failed ({exc.reason or exc}): is this device paired "
                "with this host (qdev pair / qdev-device pair)?"
            ) from exc
        except OSError as exc:
            raise LinkError(f"cannot connect to {spec}: {exc}") from exc
        try:
            check_pinned(sock)
        except QdevError as exc:
            sock.close()
            raise LinkError(f"{spec}: {exc}") from exc
        return SocketLink(sock, spec)
    tcp = parse_tcp(spec)
    if tcp is not None:
        try:
            sock = socket.create_connection(tcp, timeout=timeout)
        except OSError as exc:
            raise LinkError(f"cannot connect to {spec}: {exc}") from exc
        return SocketLink(sock, f"tcp://{tcp[0]}:{tcp[1]}")
    from qdev.core.tlsserial import client_over_serial

    return client_over_serial(SerialLink(spec, baudrate), timeout=timeout)


def pack_payload(meta: dict, blob: bytes = b"") -> bytes:
    m = json.dumps(meta, separators=(",", ":")).encode()
    return _META.pack(len(m)) + m + blob


def unpack_payload(payload: bytes) -> tuple[dict, bytes]:
    """(meta, blob) of a payload; the meta's size and depth are checked before it is parsed.

    Raises:
        LinkError: the payload or its meta is unusable (the message says why).
    """
    if len(payload) < _META.size:
        raise LinkError("malformed message: payload shorter than its meta length")
    (n,) = _META.unpack_from(payload)
    if _META.size + n > len(payload):
        raise LinkError("malformed message: meta length beyond the payload")
    raw = payload[_META.size : _META.size + n]
    try:
        check_meta_bytes(raw)
        meta = json.loads(raw)
    except BadRequest as exc:
        raise LinkError(f"malformed message: {exc}") from exc
    except (ValueError, RecursionError) as exc:
        raise LinkError("malformed message: meta is not JSON") from exc
    if not isinstance(meta, dict):
        raise LinkError("malformed message: meta is not an object")
    return meta, payload[_META.size + n :]


@dataclass
class Message:
    type: int
    seq: int
    meta: dict
    blob: bytes = b""
    bad: str | None = None  # why the payload could not be read (the frame itself was intact)
    version: int = VERSION

    @property
    def name(self) -> str:
        try:
            return MsgType(self.type).name
        except ValueError:
            return f"type {self.type}"


@dataclass
class Channel:
    """Messages over a link: framed, CRC-checked; malformed frames are dropped and counted.
    Security is the link's: TLS 1.3 on TCP (:mod:`qdev.core.tls`) and on serial
    (:mod:`qdev.core.tlsserial`); loopback TCP is plain."""

    link: Link
    max_payload: int = DEFAULT_MAX_PAYLOAD
    parser: FrameParser = field(init=False)
    _seq: int = 0
    _pending: list = field(default_factory=list)
    _wlock: threading.Lock = field(default_factory=threading.Lock)
    bytes_out: int = 0
    bytes_in: int = 0
    malformed: int = 0
    stall_s: float = (
        1.0  # a partial frame with no byte for this long is dropped (sender died mid-frame)
    )
    last_rx: float = field(default_factory=time.monotonic)  # when a byte last arrived (any byte)

    def __post_init__(self) -> None:
        self.parser = FrameParser(self.max_payload)

    def send(
        self,
        msg_type: int,
        meta: dict | None = None,
        blob: bytes = b"",
        seq: int | None = None,
        version: int = VERSION,
    ) -> int:
        """Send one message; returns its sequence number. ``version=1``: a version-1 frame (only
        to refuse a v1 peer)."""
        with self._wlock:
            if seq is None:
                seq = self._seq
                self._seq = (self._seq + 1) & 0xFFFFFFFF
            payload, mtype = pack_payload(meta or {}, blob), int(msg_type)
            data = encode(mtype, seq, payload, self.max_payload, version)
            self.link.write(data)
            self.bytes_out += len(data)
        return seq

    def recv(self, timeout: float) -> Message:
        """The next message.

        Raises:
            LinkTimeout: nothing complete within ``timeout`` seconds.
            LinkError: the link closed.
        """
        deadline = time.monotonic() + timeout
        while not self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkTimeout(f"{self.link.name}: no answer within {timeout:g} s")
            data = self.link.read(min(left, 0.5))
            now = time.monotonic()
            if data:
                self.last_rx = now
                frames = self.parser.feed(data)
                self.bytes_in += len(data)
            elif self.parser.buffered and now - self.last_rx > self.stall_s:
                frames = self.parser.expire()
                self.last_rx = now
            else:
                frames = []
            for fr in frames:
                self._pending.append(self._message(fr))
        return self._pending.pop(0)

    def _message(self, fr: Frame) -> Message:
        """The message of an intact frame."""
        if fr.version != VERSION:  # kept only to say why it is refused (same payload format)
            try:
                meta, _ = unpack_payload(fr.payload)
            except LinkError:
                meta = {}
            return Message(
                fr.type, fr.seq, meta, b"", bad=f"protocol version {fr.version}", version=fr.version
            )
        try:
            meta, blob = unpack_payload(fr.payload)
        except LinkError as exc:  # an intact frame with an unusable payload: still a
            self.malformed += 1  # request, which gets its (ERROR) reply
            return Message(fr.type, fr.seq, {}, b"", bad=str(exc))
        return Message(fr.type, fr.seq, meta, blob)

    def close(self) -> None:
        self.link.close()
