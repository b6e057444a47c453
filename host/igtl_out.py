"""``--igtl [HOST:]PORT``: serve a session's frames and masks over OpenIGTLink (3D Slicer's
OpenIGTLinkIF, PLUS-style consumers, SlicerIGT).

Per frame, every connected client gets three messages, packed once per header version:

* IMAGE ``qdev-frame``: the probe frame at its own size (8-bit; RGB as 3 components);
* IMAGE ``qdev-mask``: the mask as a labelmap (0 / 1, uint8) at the model's pixels (the
  session's mask exactly), its spacing scaled so that it covers the frame's extent: the same
  geometry, overlaid by Slicer;
* STRING ``qdev-info``: JSON with frame id, device latency, energy and what it describes, the
  bundle id; the same keys as v3 metadata on both IMAGEs for a client that speaks v3 (one that
  has sent us any header-version-2 message).

Frames are encoded by a packer thread, never on the session's own (publish only hands them over).
Bounded in every direction: at most ``max_clients`` at once (more are closed at once, counted);
each client has a queue of ``backlog`` frames, and a client slower than the session loses its
oldest queued frame (counted per client) rather than slowing anything; a client that accepts no
byte for ``stall_s`` seconds is dropped; what clients send is read through
:func:`qdev.core.igtl.read_message` with a 1 MiB body bound and otherwise ignored, and a garbled
or oversized message drops that client. Loopback unless a host is named.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from qdev.core.errors import ConfigError
from qdev.core.igtl import IgtlError, encode_image, encode_string, read_message

__all__ = ["IgtlServer", "parse_igtl_address", "open_igtl_server", "frame_info", "DEFAULT_PORT"]

DEFAULT_PORT = 18944  # OpenIGTLink's registered port
_CLIENT_BODY = 1 << 20


def parse_igtl_address(text: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); loopback when no host is
    named."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        p = int(port)
    except ValueError:
        raise ConfigError(f"--igtl {text!r}: expected PORT or HOST:PORT") from None
    if not 0 <= p <= 65535:
        raise ConfigError(f"--igtl {text!r}: port out of range")
    return host, p


@dataclass
class _Client:
    sock: socket.socket
    peer: str
    queue: deque = field(default_factory=deque)
    v3: bool = False
    sent: int = 0
    skipped: int = 0
    alive: bool = True
    sending: bool = False  # the writer has taken a message off the queue and not finished it


class IgtlServer:
    """An OpenIGTLink server that publishes frames; ``with IgtlServer(...) as srv:
    srv.publish(...)``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        max_clients: int = 8,
        backlog: int = 4,
        stall_s: float = 5.0,
    ) -> None:
        self.host, self.max_clients, self.backlog, self.stall_s = (
            host,
            max_clients,
            backlog,
            stall_s,
        )
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._lsock = socket.socket(fam, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._lsock.bind((host, port))
        except OSError as exc:
            self._lsock.close()
            raise ConfigError(
                f"--igtl {host}:{port}: cannot listen ({exc.strerror or exc})"
            ) from None
        self._lsock.listen(16)
        self.port = self._lsock.getsockname()[1]
        self._clients: list[_Client] = []
        self._lock = threading.Condition()
        self._closed = False
        self._pending: deque = deque()
        self.counts = {
            "clients": 0,
            "refused_busy": 0,
            "dropped_garbage": 0,
            "dropped_oversized": 0,
            "dropped_stalled": 0,
            "disconnected": 0,
            "frames_published": 0,
            "frames_skipped": 0,
        }
        threading.Thread(target=self._accept, name="igtl-accept", daemon=True).start()
        self._packing = threading.Thread(target=self._packer, name="igtl-pack", daemon=True)
        self._packing.start()

    def __enter__(self) -> IgtlServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    # ------------------------------------------------------------------ connections
    def _accept(self) -> None:
        while not self._closed:
            try:
                sock, addr = self._lsock.accept()
            except OSError:
                return
            with self._lock:
                if sum(c.alive for c in self._clients) >= self.max_clients:
                    self.counts["refused_busy"] += 1
                    sock.close()
                    continue
                c = _Client(sock, f"{addr[0]}:{addr[1]}")
                self._clients.append(c)
                self.counts["clients"] += 1
                self._lock.notify_all()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._reader, args=(c,), name="igtl-read", daemon=True).start()
            threading.Thread(target=self._writer, args=(c,), name="igtl-write", daemon=True).start()

    def _drop(self, c: _Client, why: str) -> None:
        with self._lock:
            if not c.alive:
                return
            c.alive = False
            self.counts[why] += 1
            self._lock.notify_all()
        try:
            c.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        c.sock.close()

    def _reader(self, c: _Client) -> None:
        """Whatever a client sends is verified and ignored; v3 headers switch it to metadata."""

        def recv_exact(n: int) -> bytes:
            buf = bytearray()
            while len(buf) < n:
                chunk = c.sock.recv(min(n - len(buf), 1 << 16))
                if not chunk:
                    raise ConnectionError("closed")
                buf += chunk
            return bytes(buf)

        while c.alive:
            try:
                h, _ = read_message(recv_exact, _CLIENT_BODY)
            except IgtlError as exc:
                self._drop(c, "dropped_oversized" if exc.kind == "oversized" else "dropped_garbage")
                return
            except (OSError, ConnectionError):
                self._drop(c, "disconnected")
                return
            if h.version >= 2:
                c.v3 = True

    def _writer(self, c: _Client) -> None:
        c.sock.settimeout(self.stall_s)
        while True:
            with self._lock:
                while c.alive and not c.queue:
                    self._lock.wait(0.5)
                if not c.alive:
                    return
                item = c.queue.popleft()
                c.sending = True
            try:
                c.sock.sendall(item[1] if c.v3 else item[0])
                c.sent += 1
                c.sending = False
            except socket.timeout:
                self._drop(c, "dropped_stalled")
                return
            except OSError:
                self._drop(c, "disconnected")
                return

    # ------------------------------------------------------------------ publishing
    def publish(
        self,
        frame_id: int,
        image: np.ndarray,
        mask: np.ndarray,
        info: dict,
        spacing: tuple[float, float] | None = None,
    ) -> None:
        """Hand one frame to the packer thread and return (never blocks: with ``backlog`` frames
        already waiting to be packed, the oldest is dropped, counted as skipped for every
        client)."""
        self.counts["frames_published"] += 1
        with self._lock:
            if not any(c.alive for c in self._clients):
                return
            if len(self._pending) >= self.backlog:
                self._pending.popleft()
                self.counts["frames_skipped"] += 1
                for c in self._clients:
                    if c.alive:
                        c.skipped += 1
            self._pending.append((frame_id, image, mask, info, spacing))
            self._lock.notify_all()

    def _packer(self) -> None:
        """Encode each handed frame once per header version and queue it for every client; the
        session's thread never pays for the encoding."""
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._lock.wait(0.5)
                if not self._pending:
                    return
                item = self._pending.popleft()
            self._distribute(*item)

    def _distribute(
        self,
        frame_id: int,
        image: np.ndarray,
        mask: np.ndarray,
        info: dict,
        spacing: tuple[float, float] | None,
    ) -> None:
        with self._lock:
            clients = [c for c in self._clients if c.alive]
        if not clients:
            return
        img = image if image.dtype == np.uint8 else np.clip(image, 0, 255).astype(np.uint8)
        h, w = img.shape[:2]
        label = np.asarray(mask).astype(np.uint8)
        sy, sx = spacing if spacing else (1.0, 1.0)
        # the labelmap at the model's pixels, spaced so that it covers the frame's extent exactly
        lspacing = (sy * h / label.shape[0], sx * w / label.shape[1])
        meta = {k: ("" if v is None else v) for k, v in info.items()}
        ts = time.time()
        text = json.dumps({"frame_id": frame_id, **info})
        v2 = b"".join(
            [
                encode_image(img, "qdev-frame", ts, spacing),
                encode_image(label, "qdev-mask", ts, lspacing),
                encode_string(text, "qdev-info", ts),
            ]
        )
        v3 = (
            b"".join(
                [
                    encode_image(img, "qdev-frame", ts, spacing, meta),
                    encode_image(label, "qdev-mask", ts, lspacing, meta),
                    encode_string(text, "qdev-info", ts, meta),
                ]
            )
            if any(c.v3 for c in clients)
            else v2
        )
        with self._lock:
            for c in clients:
                if len(c.queue) >= self.backlog:
                    c.queue.popleft()
                    c.skipped += 1
                    self.counts["frames_skipped"] += 1
                c.queue.append((v2, v3))
            self._lock.notify_all()

    def wait_for_client(self, seconds: float) -> bool:
        """Block until a client is connected (True) or ``seconds`` pass (False)."""
        deadline = time.monotonic() + seconds
        with self._lock:
            while not any(c.alive for c in self._clients):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.1))
        return True

    def stats(self) -> dict:
        with self._lock:
            return {
                **self.counts,
                "connected": sum(c.alive for c in self._clients),
                "per_client": [
                    {
                        "peer": c.peer,
                        "sent": c.sent,
                        "skipped": c.skipped,
                        "v3": c.v3,
                        "connected": c.alive,
                    }
                    for c in self._clients
                ],
            }

    def close(self) -> None:
        with self._lock:  # the frame handed last is still packed and sent
            self._closed = True
            self._lock.notify_all()
        self._packing.join(5.0)
        try:
            self._lsock.close()
        except OSError:
            pass
        with self._lock:
            clients = list(self._clients)
        for c in clients:
            if c.alive:
                # let queued frames go out for a moment, the one being sent included (closing
                # in the middle of it cut the session's last message on a busy machine)
                deadline = time.monotonic() + 2.0
                while (c.queue or c.sending) and c.alive and time.monotonic() < deadline:
                    time.sleep(0.01)
                self._drop(c, "disconnected")


def open_igtl_server(spec: str | None) -> IgtlServer | None:
    """The OpenIGTLink server ``--igtl [HOST:]PORT`` asks for (None: not asked); a busy port is a
    one-line error, raised before the caller writes anything."""
    if spec is None:
        return None
    host, port = parse_igtl_address(spec)
    return IgtlServer(host, port)


#: what the STRING qdev-info message of each frame carries
INFO_KEYS = ("frame_id", "device_ms", "energy_mj", "energy_kind", "bundle_id")


def frame_info(meta: dict, **given: object) -> dict:
    """The qdev-info of one frame from the device's answer ``meta``; ``given`` values (the
    frame id, the bundle where the answer lacks it) take their place."""
    return {k: given[k] if k in given else meta.get(k) for k in INFO_KEYS}
