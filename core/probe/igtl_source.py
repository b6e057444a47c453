"""``--probe igtl://HOST:PORT[/DEVICE]``: frames from an OpenIGTLink server (PLUS Server, a
scanner's research interface, 3D Slicer) as a live probe.

IMAGE messages (8- or 16-bit, 1 or 3 components, 2-D) become frames; with ``/DEVICE`` only that
device's images (PLUS names its B-mode stream ``Image_Reference``). Everything is read through
:func:`qdev.core.igtl.read_message` (bounded body, CRC checked before decoding). The source is
live: the session keeps the newest frame and counts the ones it had no time for. A message that
fails its CRC or does not decode is counted and skipped; an oversized one is counted and its body
discarded unread; a header that makes no sense (the stream's framing is lost) is counted and the
connection is opened again (up to ``reconnects`` times). The server closing the connection ends
the stream. 16-bit pixels are mapped to 8 bits over the full 16-bit range (value x 255 / 65535):
a fixed mapping, so brightness does not change from frame to frame.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import numpy as np

from qdev.core.errors import ConfigError, DataError
from qdev.core.igtl import HEADER_SIZE, MAX_BODY, IgtlError, crc64, decode, parse_header
from qdev.core.probe.sources import ProbeFrame, ProbeSource

__all__ = ["IgtlSource", "parse_igtl_url"]


def parse_igtl_url(spec: str) -> tuple[str, int, str | None]:
    """``igtl://HOST:PORT[/DEVICE]`` -> (host, port, device or None)."""
    u = urlsplit(spec)
    try:
        port = u.port
    except ValueError:
        port = None
    if u.scheme != "igtl" or not u.hostname or port is None:
        raise ConfigError(f"--probe {spec}: expected igtl://HOST:PORT[/DEVICE]")
    return u.hostname, port, (u.path.strip("/") or None)


class IgtlSource(ProbeSource):
    live = True

    def __init__(
        self, spec: str, timeout: float = 5.0, reconnects: int = 3, max_body: int = MAX_BODY
    ) -> None:
        self.host, self.port, self.device = parse_igtl_url(spec)
        self.name = spec
        self.timeout, self.reconnects, self.max_body = timeout, reconnects, max_body
        self.fps = None
        self.errors = {"crc": 0, "malformed": 0, "oversized": 0, "unsupported": 0, "reconnects": 0}
        self.received = 0
        self._sock = self._connect()

    def _connect(self) -> socket.socket:
        try:
            s = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise DataError(
                f"--probe {self.name}: cannot connect ({exc.strerror or exc})"
            ) from None
        s.settimeout(self.timeout)
        return s

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise EOFError
            buf += chunk
        return bytes(buf)

    def _skip(self, n: int) -> None:
        while n > 0:
            chunk = self._sock.recv(min(n, 1 << 20))
            if not chunk:
                raise EOFError
            n -= len(chunk)

    def _next_image(self):  # noqa: ANN202 - a pyigtl ImageMessage, or None at the end
        while True:
            try:
                raw = self._recv_exact(HEADER_SIZE)
            except (EOFError, OSError):
                return None
            try:
                h = parse_header(raw, self.max_body)
            except IgtlError as exc:
                self.errors[exc.kind] += 1
                if exc.kind == "oversized":
                    size = int.from_bytes(raw[42:50], "big")
                    try:
                        self._skip(size)
                    except (EOFError, OSError):
                        return None
                    continue
                if not self._reopen():
                    return None
                continue
            try:
                body = self._recv_exact(h.body_size)
            except (EOFError, OSError):
                return None
            if h.type != "IMAGE" or (self.device and h.device != self.device):
                continue
            if crc64(body) != h.crc:
                self.errors["crc"] += 1
                continue
            try:
                return decode(h, body)
            except IgtlError as exc:
                self.errors[exc.kind] += 1

    def _reopen(self) -> bool:
        self._sock.close()
        for _ in range(self.reconnects):
            self.errors["reconnects"] += 1
            time.sleep(0.2)
            try:
                self._sock = self._connect()
                return True
            except DataError:
                continue
        return False

    def frames(self) -> Iterator[ProbeFrame]:
        t0 = time.monotonic()
        i = 0
        while True:
            msg = self._next_image()
            if msg is None:
                return
            img = to_frame(msg.image)
            if img is None:
                self.errors["unsupported"] += 1
                continue
            self.received += 1
            m = msg.ijk_to_world_matrix
            spacing = (float(np.linalg.norm(m[:3, 1])), float(np.linalg.norm(m[:3, 0])))
            yield ProbeFrame(i, img, time.monotonic() - t0, time.time(), spacing=spacing)
            i += 1

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    def describe(self) -> dict:
        return {
            **super().describe(),
            "protocol": "OpenIGTLink",
            "device": self.device,
            "received": self.received,
            "errors": dict(self.errors),
        }


def to_frame(vox: np.ndarray) -> np.ndarray | None:
    """A decoded IMAGE (k, j, i[, c]) -> an 8-bit frame [H, W] or [H, W, 3]; None for what is not
    a 2-D image of 1 or 3 components of 8 or 16 bits."""
    a = np.asarray(vox)
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4 or a.shape[0] != 1 or a.shape[3] not in (1, 3):
        return None
    a = a[0]
    if a.dtype == np.uint16 or a.dtype.newbyteorder("=") == np.dtype(np.uint16):
        a = ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif a.dtype != np.uint8:
        return None
    return np.ascontiguousarray(a[..., 0] if a.shape[2] == 1 else a)
