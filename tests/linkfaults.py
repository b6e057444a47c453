"""Test plumbing with real parts: a rate-limited pty pair (like a UART) and a fault-injecting
TCP proxy. Importable in both environments (stdlib only)."""

from __future__ import annotations

import os
import random
import select
import socket
import threading
import time
import tty

__all__ = ["PtyPair", "FaultProxy"]


class PtyPair:
    """Two pseudo-terminals joined by a relay: open ``dev_path`` on one side, ``host_path`` on
    the other. ``bytes_per_s`` limits each direction (921600 baud 8N1 = 92160 bytes/s)."""

    def __init__(self, bytes_per_s: float | None = None, seed: int = 0) -> None:
        self.noise = 0.0  # share of bytes corrupted, in bursts of ``burst`` bytes (settable live)
        self.burst = 256
        self.corrupted = 0
        self.record = False  # a wiretap: what crossed, per direction, while set
        self.tapped = {"to_device": bytearray(), "to_host": bytearray()}
        self._rng = random.Random(seed)
        self.m1, self.s1 = os.openpty()
        self.m2, self.s2 = os.openpty()
        for fd in (self.s1, self.s2):
            tty.setraw(fd)
        self.dev_path, self.host_path = os.ttyname(self.s1), os.ttyname(self.s2)
        self._wlocks = {self.m1: threading.Lock(), self.m2: threading.Lock()}
        self.rate = bytes_per_s
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._pump, args=(a, b), daemon=True)
            for a, b in ((self.m1, self.m2), (self.m2, self.m1))
        ]
        for t in self.threads:
            t.start()

    def _pump(self, src: int, dst: int) -> None:
        budget_t = time.monotonic()
        while not self.stop.is_set():
            r, _, _ = select.select([src], [], [], 0.1)
            if not r:
                continue
            try:
                data = os.read(src, 4096 if self.rate is None else max(1, int(self.rate / 100)))
            except OSError:
                time.sleep(0.01)
                continue
            if self.rate:
                budget_t = max(budget_t, time.monotonic()) + len(data) / self.rate
                delay = budget_t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if self.noise:
                data = self._corrupt(data)
            if self.record:
                self.tapped["to_device" if dst == self.m1 else "to_host"] += data
            self._write(dst, data)

    def inject_to_device(self, data: bytes) -> None:
        """Bytes from a third party on the wire, as the device's port receives them."""
        self._write(self.m1, data)

    def _write(self, dst: int, data: bytes) -> None:
        with self._wlocks[dst]:  # per direction: one side's full buffer never stalls the other
            view = memoryview(data)
            while view and not self.stop.is_set():
                try:
                    n = os.write(dst, view)
                except BlockingIOError:
                    time.sleep(0.001)
                    continue
                except OSError:
                    break
                view = view[n:]

    def _corrupt(self, data: bytes) -> bytes:
        """Overwrite bursts of random bytes so that ``noise`` of all bytes are hit on average."""
        out = bytearray(data)
        p_start = self.noise / self.burst
        i = 0
        while i < len(out):
            if self._rng.random() < p_start:
                for j in range(i, min(i + self.burst, len(out))):
                    out[j] = self._rng.randrange(256)
                    self.corrupted += 1
                i += self.burst
            else:
                i += 1
        return bytes(out)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=2)
        for fd in (self.m1, self.m2, self.s1, self.s2):
            try:
                os.close(fd)
            except OSError:
                pass


class FaultProxy:
    """TCP proxy 127.0.0.1:port -> target that, per chunk and direction, flips a bit, drops the
    chunk, stalls, or (rarely) disconnects, with fixed probabilities and a fixed seed."""

    def __init__(
        self,
        target: tuple[str, int],
        seed: int = 0,
        flip: float = 0.02,
        drop: float = 0.01,
        stall: float = 0.01,
        disconnect: float = 0.0,
        stall_s: float = 0.3,
    ) -> None:
        self.target = target
        self.rng = random.Random(seed)
        self.p = {"flip": flip, "drop": drop, "stall": stall, "disconnect": disconnect}
        self.stall_s = stall_s
        self.counts = {k: 0 for k in self.p}
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.lock = threading.Lock()
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _fault(self) -> str | None:
        with self.lock:
            x = self.rng.random()
            acc = 0.0
            for k, p in self.p.items():
                acc += p
                if x < acc:
                    self.counts[k] += 1
                    return k
            return None

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            d = socket.create_connection(self.target)
            for s in (c, d):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = (c, d)
            for a, b in ((c, d), (d, c)):
                threading.Thread(target=self._pump, args=(a, b, pair), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket, pair: tuple) -> None:
        try:
            while not self.stop.is_set():
                data = a.recv(8192)
                if not data:
                    break
                f = self._fault()
                if f == "flip":
                    buf = bytearray(data)
                    i = self.rng.randrange(len(buf))
                    buf[i] ^= 1 << self.rng.randrange(8)
                    data = bytes(buf)
                elif f == "drop":
                    continue
                elif f == "stall":
                    time.sleep(self.stall_s)
                elif f == "disconnect":
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in pair:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
