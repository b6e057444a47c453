"""A headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``).

The tests look at pages the way a user does: in a real browser, by screenshot. Chromium's
``--screenshot`` flag with ``--virtual-time-budget`` cannot do that for a live page on a busy
machine: virtual time stands still while a request is pending, and the live view always has one
(its long poll for the next frame), so the shot can wait without end. Here the test waits, in
real time and with a deadline, for what the user would wait for (a frame on the page), then
shoots. No port is opened: the protocol runs over two file descriptors (3 and 4 in the browser).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

__all__ = ["CHROMIUM", "Browser"]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One headless browser with one page; a context manager."""

    def __init__(self, profile: Path, size: tuple[int, int] = (1000, 720)) -> None:
        if CHROMIUM is None:
            raise RuntimeError("chromium not installed")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def _fds() -> (
            None
        ):  # in the child: its ends of the pipes as fds 3 (commands) and 4 (replies)
            a, b = os.dup(to_child_r), os.dup(from_child_w)  # above 4 first, so dup2 cannot clobber
            os.dup2(a, 3)
            os.dup2(b, 4)

        self._log_path = Path(
            f"{profile}.log"
        )  # a file: a pipe nobody reads would fill and stall it
        self._log = self._log_path.open("wb")
        self._proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--window-size={size[0]},{size[1]}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            preexec_fn=_fds,
            close_fds=False,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        target = self._call("Target.createTarget", {"url": "about:blank"}, timeout=60)["targetId"]
        self._session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        self._call(
            "Emulation.setDeviceMetricsOverride",
            {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False},
            page=True,
        )

    # -- the protocol --------------------------------------------------------------------------

    def _send(self, method: str, params: dict, page: bool) -> int:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if page:
            msg["sessionId"] = self._session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        return self._id

    def _call(
        self, method: str, params: dict | None = None, page: bool = False, timeout: float = 30.0
    ) -> dict:
        want = self._send(method, params or {}, page)
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                msg = json.loads(raw)
                if msg.get("id") == want:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return msg.get("result", {})
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{method}: no reply from chromium in {timeout:.0f} s")
            if select.select([self._from_child], [], [], left)[0]:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise RuntimeError(
                        f"chromium exited: {self._log_path.read_text(errors='replace')[-1000:]}"
                    )
                self._buf += chunk

    # -- what a test does ----------------------------------------------------------------------

    def open(self, url: str) -> None:
        self._call("Page.navigate", {"url": url}, page=True)

    def evaluate(self, expression: str):  # noqa: ANN201 - any JSON value
        r = self._call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, page=True
        )
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails'].get('text')}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0) -> None:
        """Wait (real time) until the page's ``expression`` is truthy (an exception, e.g. while the
        page is still loading and the element is not there yet, counts as not yet)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.evaluate(expression):
                    return
                why = "false"
            except RuntimeError as e:
                why = str(e)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"page never satisfied {expression!r} in {timeout:.0f} s (last: {why})"
                )
            time.sleep(0.1)

    def screenshot(self, path: Path) -> Path:
        data = self._call("Page.captureScreenshot", {"format": "png"}, page=True, timeout=60)[
            "data"
        ]
        path.write_bytes(base64.b64decode(data))
        return path

    def dom(self) -> str:
        return self.evaluate("document.documentElement.outerHTML")

    def close(self) -> None:
        try:
            self._send("Browser.close", {}, page=False)
            self._proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
        finally:
            self._log.close()
            os.close(self._to_child)
            os.close(self._from_child)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
