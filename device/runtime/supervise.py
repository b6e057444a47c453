"""Keep the device's service loops alive, and let systemd see when they are not.

* :class:`Supervisor` runs each loop (the TCP acceptor, the serial service, the on-device probe)
  in its own thread. A loop that raises is logged with its traceback and restarted after a
  backoff (0.5 s doubling to 10 s). One that keeps dying (``max_restarts`` within
  ``window_s``) is given up on: the supervisor sets ``failed`` and the process exits non-zero, so
  systemd (``Restart=on-failure``) starts it afresh.
* Transports (TCP, TLS, serial: ``add(..., transport=True)``) are independent: one that keeps
  dying (an unplugged USB-serial adapter) is retried every ``RETRY_S`` while another transport
  still serves; only when every transport keeps dying does the process give up.
* Each loop calls its ``beat()`` at least once per turn. :func:`sd_notify` sends systemd's
  ``READY=1`` once the loops run and ``WATCHDOG=1`` every half ``WATCHDOG_USEC``, but only while
  every loop has beaten within ``stale_s``: a hung loop stops the pings and systemd's
  ``WatchdogSec`` restarts the service. Without ``NOTIFY_SOCKET`` (not under systemd) nothing
  is sent. The protocol is a datagram on an AF_UNIX socket (sd_notify(3)); no libsystemd.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

__all__ = ["Supervisor", "sd_notify", "Loop", "RETRY_S"]

RETRY_S = 10.0  # how often a failing transport is retried while others serve

log = logging.getLogger("qdev.device")

Loop = Callable[[Callable[[], None], threading.Event], None]
"""``loop(beat, stop)``: runs until ``stop`` is set, calling ``beat()`` every turn."""


def sd_notify(state: str, env: dict | None = None) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to systemd's notify socket; False when there is none."""
    addr = (env or os.environ).get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):  # abstract namespace
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect(addr)
            s.sendall(state.encode())
        except OSError as exc:
            log.warning("sd_notify(%s) failed: %s", state, exc)
            return False
    return True


class Supervisor:
    """Run named loops, restart the ones that die, give up on the ones that keep dying."""

    def __init__(
        self,
        stop: threading.Event,
        max_restarts: int = 5,
        window_s: float = 60.0,
        stale_s: float = 10.0,
    ) -> None:
        self.stop = stop
        self.max_restarts, self.window_s, self.stale_s = max_restarts, window_s, stale_s
        self.failed: str | None = None
        self._beats: dict[str, float] = {}
        self._lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.restarts: dict[str, int] = {}
        self.transports: set[str] = set()
        self.failing: set[str] = set()  # transports past max_restarts, retried while another serves

    def add(self, name: str, loop: Loop, transport: bool = False) -> None:
        if transport:
            self.transports.add(name)
        t = threading.Thread(target=self._run, args=(name, loop), name=f"qdev-{name}", daemon=True)
        self.threads.append(t)
        self._beat(name)
        t.start()

    def _beat(self, name: str) -> None:
        with self._lock:
            self._beats[name] = time.monotonic()

    def healthy(self) -> bool:
        """Every loop beat within ``stale_s`` (and none was given up on)."""
        now = time.monotonic()
        with self._lock:
            return self.failed is None and all(now - t < self.stale_s for t in self._beats.values())

    def _run(self, name: str, loop: Loop) -> None:
        deaths: list[float] = []
        backoff = 0.5
        while not self.stop.is_set():
            try:
                loop(lambda: self._beat(name), self.stop)
                if self.stop.is_set():
                    return
                raise RuntimeError("the loop returned")
            except Exception:
                log.exception("service loop %s died", name)
            now = time.monotonic()
            deaths = [t for t in deaths if now - t < self.window_s] + [now]
            self.restarts[name] = self.restarts.get(name, 0) + 1
            if len(deaths) > self.max_restarts:
                with self._lock:
                    if name in self.transports:
                        self.failing.add(name)
                    others = self.transports - self.failing
                if name in self.transports and others:
                    log.error(
                        "%s died %d times within %g s; retrying it every %g s while %s serve(s)",
                        name,
                        len(deaths),
                        self.window_s,
                        RETRY_S,
                        ", ".join(sorted(others)),
                    )
                    self._wait_beating(name, RETRY_S)
                    continue
                self.failed = f"{name} died {len(deaths)} times within {self.window_s:g} s"
                log.error(
                    "giving up: %s; exiting so that the service manager restarts the device",
                    self.failed,
                )
                self.stop.set()
                return
            with self._lock:
                self.failing.discard(name)
            log.warning("restarting %s in %.1f s", name, backoff)
            self._wait_beating(name, backoff)
            backoff = min(backoff * 2, 10.0)

    def _wait_beating(self, name: str, seconds: float) -> None:
        """Wait (until stop), beating for ``name``: a loop waiting to be retried is not stalled."""
        end = time.monotonic() + seconds
        while not self.stop.is_set() and (left := end - time.monotonic()) > 0:
            self._beat(name)
            self.stop.wait(min(1.0, left))
        self._beat(name)

    def watchdog(self, env: dict | None = None) -> None:
        """Tell systemd we are up, then ping its watchdog while :meth:`healthy` (a thread)."""
        env = env if env is not None else dict(os.environ)
        sd_notify("READY=1", env)
        usec = int(env.get("WATCHDOG_USEC", "0") or 0)
        if not usec:
            return
        period = usec / 2e6

        def ping() -> None:
            while not self.stop.wait(period):
                if self.healthy():
                    sd_notify("WATCHDOG=1", env)
                else:
                    log.error("a service loop is stalled or failed: no watchdog ping")

        threading.Thread(target=ping, name="qdev-watchdog", daemon=True).start()
