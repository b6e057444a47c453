"""A device runtime on this machine, in its own process (the demo and the tests use it):
``qdev-device serve`` with the software backend, reached over TCP loopback or a pty."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from qdev import assets
from qdev.core.errors import QdevError

__all__ = ["LocalDevice", "default_trusted", "default_bundle"]


def default_trusted() -> list[Path]:
    """Trusted public keys: $QDEV_TRUST (colon-separated) or the shipped development key."""
    env = os.environ.get("QDEV_TRUST")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    return assets.dev_public_keys()


def default_bundle(board: str = "KV260") -> Path:
    """The shipped default model's signed bundle for ``board`` (package data)."""
    return assets.shipped_bundle(board)


class LocalDevice:
    """``with LocalDevice(store) as dev: dev.port`` -> ``tcp://127.0.0.1:PORT``."""

    def __init__(
        self,
        store: Path,
        trusted: list[Path] | None = None,
        board: str | None = None,
        serial: str | None = None,
        tcp: bool = True,
        extra: list[str] | None = None,
        python: str | None = None,
        backend: str = "software",
        env: dict | None = None,
        pair: bool | None = None,
    ) -> None:
        self.store = Path(store)
        self.serial = serial
        self.auto_pair = (
            bool(serial) if pair is None else pair
        )  # a serial link admits paired hosts only
        self.env = env or {}
        args = [
            python or sys.executable,
            "-m",
            "qdev.device",
            "serve",
            "--store",
            str(store),
            "--backend",
            backend,
        ]
        keys = list(trusted if trusted is not None else default_trusted())
        for k in keys:
            args += ["--trust", str(k)]
        dev = {p.read_bytes() for p in assets.dev_public_keys()}
        if any(Path(k).read_bytes() in dev for k in keys):
            args.append("--dev-key")  # a local demo/test device trusting the development key
        if board:
            args += ["--board", board]
        if tcp:
            args += ["--tcp", "127.0.0.1:0"]
        if serial:
            args += ["--serial", serial]
        self.args = args + (extra or [])
        self.proc: subprocess.Popen | None = None
        self.port: str | None = None
        self.log = self.store.parent / f"{self.store.name}.device.log"

    def __enter__(self) -> LocalDevice:
        self.start()
        return self

    def pair(self) -> None:
        """Pair this host (operator) and the device, as ``qdev pair`` / ``qdev-device pair`` would:
        a serial link accepts paired hosts only."""
        from qdev.core import tls

        _, host_cert = tls.host_identity()
        _, dev_cert = tls.device_identity(self.store)
        tls.pair_host(self.store, host_cert, "operator", "local-host")
        tls.pin_device(dev_cert, f"local-{self.store.name}")

    def start(self, timeout: float = 30.0) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        if self.auto_pair:
            self.pair()
        err = open(self.log, "ab")
        self.proc = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=str(self.store.parent),
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(r"tcp://[\d.]+:\d+", line)
            if m:
                self.port = m.group(0)
            if line.startswith("ready:"):
                return
        self.stop()
        raise QdevError(f"the local device runtime did not start (log: {self.log})")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.stop()
