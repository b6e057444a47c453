"""Bundle fixtures for device tests: copies of the shipped bundle, re-signed with a test key."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
import socket
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHIPPED = {b: REPO / "bitstreams" / b / "quantunet-w8" for b in ("KV260", "ZCU104")}
DEV_PUB = REPO / "keys" / "dev" / "qdev-dev.pub"


def make_key(folder: Path) -> tuple[object, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pub = folder / "test.pub"
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, pub


def resign(bundle: Path, key, **manifest_updates) -> Path:  # noqa: ANN001
    """Rewrite file entries and the given manifest fields of ``bundle`` and sign it with ``key``."""
    from qdev.core.bundle import file_entry, sign_manifest

    m = json.loads((bundle / "manifest.json").read_text())
    m.update(manifest_updates)
    m["files"] = {n: file_entry(bundle / n) for n in m["files"]}
    mb = json.dumps(m, indent=1, sort_keys=True).encode()
    (bundle / "manifest.json").write_bytes(mb)
    (bundle / "manifest.json.sig").write_bytes(sign_manifest(mb, key))
    return bundle


def golden_masks(bundle: Path) -> np.ndarray:
    """The masks [N, H, W] a device must show for a bundle's golden frames: its golden codes
    through the bundle's own mask rule (core/maskrule.py)."""
    from qdev.core.maskrule import MaskRule

    m = json.loads((bundle / "manifest.json").read_text())
    _, h, w, _ = m["io"]["ishape_normal"]
    codes = np.load(bundle / "golden_codes.npy").reshape(-1, h, w)
    return MaskRule.from_manifest(m.get("mask_rule")).apply(codes)


def copy_bundle(dst: Path, board: str = "KV260") -> Path:
    shutil.copytree(SHIPPED[board], dst)
    return dst


def broken_selftest_bundle(dst: Path, key) -> Path:  # noqa: ANN001
    """A correctly signed bundle whose golden codes are wrong: its self-test must fail."""
    b = copy_bundle(dst)
    codes = np.load(b / "golden_codes.npy")
    codes = codes.copy()
    codes.flat[0] = 1 - codes.flat[0] if codes.flat[0] in (0, 1) else 0
    np.save(b / "golden_codes.npy", codes)
    return resign(b, key, run_id="broken-selftest")


def raw_socket(port: str) -> socket.socket:
    """A plain TCP socket to a ``tcp://HOST:PORT`` device: for bytes no client would send."""
    host, p = port[len("tcp://") :].split(":")
    s = socket.create_connection((host, int(p)), timeout=5)
    return s


def read_frames(s: socket.socket, want: int, timeout: float = 5.0) -> list:
    """Up to ``want`` whole frames from ``s`` within ``timeout``."""
    from qdev.core.protocol import FrameParser

    parser = FrameParser()
    out: list = []
    deadline = time.monotonic() + timeout
    s.settimeout(0.2)
    while len(out) < want and time.monotonic() < deadline:
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        if not data:
            break
        out += parser.feed(data)
    return out


@contextmanager
def client_and_fake_device(timeout: float = 5.0) -> Iterator[tuple[object, socket.socket]]:
    """A host ``DeviceClient`` on a loopback socket whose other end the test plays, raw frames
    in hand: for devices that answer wrongly (another protocol version, another reply type)."""
    from qdev.core.link import SocketLink
    from qdev.host.client import DeviceClient

    srv = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(srv.getsockname())
    b, _ = srv.accept()
    srv.close()
    c = DeviceClient(SocketLink(a), timeout=timeout)
    try:
        yield c, b
    finally:
        c.close()
        b.close()
