"""The browser live view: a small HTTP server (stdlib ``http.server``, one thread per client) on
127.0.0.1 by default, for a headless host, a tablet at the bedside or several viewers at once.

Endpoints:

* ``/``: the page (the live overlay, the HUD figures, a latency sparkline);
* ``/frame.jpg?after=N``: the newest JPEG frame, waiting (long poll, up to 5 s) until one newer
  than frame number ``N`` exists; headers ``X-Frame`` (this frame's number) and ``X-Frame-Id``;
* ``/stream.mjpg``: the same frames as MJPEG (``multipart/x-mixed-replace``), for players and
  ``<img>`` tags that want a push stream;
* ``/stats.json``: the latest HUD figures and the last 120 round-trip/device latencies;
* ``/viewer?shown=&fps=&frame=``: a page's own report of what it displays (once a second), kept
  in :attr:`_State.viewers` for benchmarks.

Why long-polled JPEGs in the page rather than MJPEG or a WebSocket: each viewer pulls the newest
frame when it has drawn the last one, so a slow viewer skips frames instead of queueing them
(MJPEG pushes every frame and a slow client's socket backs up), and it needs nothing beyond the
standard library on either side (a WebSocket server would be a dependency for the same frames).
Frames are JPEG-encoded once per frame, whatever the number of viewers.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, parse_qs, urlparse

import numpy as np

from qdev.core.errors import ConfigError

__all__ = ["WebView", "PAGE"]

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("webview.html")
JPEG_QUALITY = 80
LONG_POLL_S = 5.0


class _State:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.n = 0  # frames published
        self.jpeg: bytes | None = None
        self.hud: dict = {}
        self.history: deque = deque(maxlen=120)
        self.closed = False
        self.served = 0  # frames sent to viewers (all endpoints)
        # what pages report they show: (t, shown, fps, frame)
        self.viewers: deque = deque(maxlen=256)


class _Handler(BaseHTTPRequestHandler):
    """One viewer's requests; ``state`` and ``page_body`` are set on a subclass per server."""

    protocol_version = "HTTP/1.1"
    state: _State
    page_body: bytes
    #: path -> the method that answers it
    ROUTES = {
        "/": "page",
        "/index.html": "page",
        "/frame.jpg": "frame",
        "/stats.json": "stats",
        "/stream.mjpg": "mjpeg",
        "/viewer": "viewer",
    }

    def log_message(self, fmt: str, *args) -> None:  # noqa: ANN002
        log.debug("webview: " + fmt, *args)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlparse(self.path)
        route = self.ROUTES.get(url.path)
        if route is None:
            self._send(404, "text/plain", b"not found\n")
            return
        try:
            getattr(self, route)(parse_qs(url.query))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send(self, code: int, ctype: str, body: bytes, headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def page(self, q: dict) -> None:
        self._send(200, "text/html; charset=utf-8", self.page_body)

    def frame(self, q: dict) -> None:
        state = self.state
        try:
            after = int(q.get("after", ["0"])[0])
        except ValueError:
            after = 0
        with state.cond:
            state.cond.wait_for(lambda: state.n > after or state.closed, LONG_POLL_S)
            n, jpeg, hud, closed = state.n, state.jpeg, state.hud, state.closed
        if jpeg is None or n <= after:  # nothing newer: the session ended, or the poll timed out
            self._send(204, "text/plain", b"", {"X-Ended": "1" if closed else "0"})
            return
        with state.cond:
            state.served += 1
        # the frame's own figures ride with it, so the page's table is always the frame
        # shown
        self._send(
            200,
            "image/jpeg",
            jpeg,
            {
                "X-Frame": str(n),
                "X-Frame-Id": str(hud.get("frame_id")),
                "X-Mask-Area": str(hud.get("mask_area")),
                "X-Hud": quote(json.dumps(hud, default=str)),
            },
        )

    def stats(self, q: dict) -> None:
        state = self.state
        with state.cond:
            body = json.dumps(
                {
                    "frames": state.n,
                    "hud": state.hud,
                    "history": list(state.history),
                    "ended": state.closed,
                    "served": state.served,
                    "viewers": list(state.viewers)[-8:],
                }
            ).encode()
        self._send(200, "application/json", body)

    def viewer(self, q: dict) -> None:
        state = self.state
        try:
            rec = (time.time(), int(q["shown"][0]), float(q["fps"][0]), int(q["frame"][0]))
        except (KeyError, ValueError, IndexError):
            self._send(400, "text/plain", b"bad report\n")
            return
        with state.cond:
            state.viewers.append(rec)
        self._send(204, "text/plain", b"")

    def mjpeg(self, q: dict) -> None:
        state = self.state
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=qdevframe")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        seen = 0
        while True:
            with state.cond:
                state.cond.wait_for(lambda: state.n > seen or state.closed, LONG_POLL_S)
                if state.closed:
                    return
                seen, jpeg = state.n, state.jpeg
            if jpeg is None:
                continue
            self.wfile.write(
                b"--qdevframe\r\nContent-Type: image/jpeg\r\nContent-Length: "
                + str(len(jpeg)).encode()
                + b"\r\n\r\n"
                + jpeg
                + b"\r\n"
            )
            with state.cond:
                state.served += 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        log.debug("webview: viewer %s went away", client_address)  # a closed tab, not an error


class WebView:
    """``publish(bgr, hud)`` per frame; viewers connect to :attr:`url`."""

    def __init__(
        self, port: int = 8765, host: str = "127.0.0.1", quality: int = JPEG_QUALITY
    ) -> None:
        import cv2

        self._cv2, self.quality = cv2, quality
        self.state = _State()
        attrs = {"state": self.state, "page_body": PAGE.read_bytes()}
        handler = type("Handler", (_Handler,), attrs)
        try:
            self.httpd = _Server((host, port), handler)
        except OSError as exc:
            raise ConfigError(
                f"--view web:{port}: cannot serve the browser view on {host}:{port} "
                f"({exc.strerror or exc})"
            ) from exc
        self.address = self.httpd.server_address[:2]
        self.url = f"http://{self.address[0]}:{self.address[1]}/"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="qdev-webview", daemon=True
        )
        self._thread.start()

    def publish(self, bgr: np.ndarray, hud: dict) -> None:
        ok, buf = self._cv2.imencode(".jpg", bgr, [self._cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return
        st = self.state
        with st.cond:
            st.n += 1
            st.jpeg, st.hud = (
                buf.tobytes(),
                {**hud, "t": time.time(), "size": [bgr.shape[1], bgr.shape[0]]},
            )
            st.history.append([hud.get("rtt_ms"), hud.get("device_ms")])
            st.cond.notify_all()

    def close(self, grace_s: float = 1.5) -> None:
        """End the session: pages waiting for a frame are told it ended, and the server keeps
        answering for ``grace_s`` so that every page can show the end state before it goes."""
        with self.state.cond:
            self.state.closed = True
            self.state.cond.notify_all()
        if grace_s > 0 and self.state.served:
            time.sleep(grace_s)
        self.httpd.shutdown()
        self.httpd.server_close()
