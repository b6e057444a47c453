"""Attacks and link faults against a real ``qdev-device serve`` (software backend) on this machine,
in one run: per attack class, tried / survived (the service still answers a healthy client
afterwards, and the attack got a refusal, not a result); then frames over a noisy serial link
(a pty pair with 1% of the bytes overwritten in 256-byte bursts, both ways): ok / lost /
silently wrong / hangs.

    .venv/bin/python bench/robustness.py [--frames 200]

TLS against plain TCP: bench/tls.py.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.linkfaults: the pty relay

from qdev import assets  # noqa: E402
from qdev.core.link import pack_payload  # noqa: E402
from qdev.core.protocol import FrameParser, MsgType, encode  # noqa: E402
from qdev.host.client import connect  # noqa: E402
from qdev.host.local import LocalDevice  # noqa: E402
from tests.device.helpers import golden_masks  # noqa: E402

BUNDLE = assets.shipped_bundle("KV260")
PX = np.load(BUNDLE / "golden_pixels.npy")
# the masks the device must show: the golden codes through the bundle's own mask rule (codes > 0
# was right only while the shipped model had the default rule; it made every good frame "wrong")
WANT = golden_masks(BUNDLE).reshape(len(PX), -1).astype(bool)


def _frames(s: socket.socket, n: int, timeout: float = 5.0) -> list:
    parser, out, end = FrameParser(), [], time.monotonic() + timeout
    s.settimeout(0.2)
    while len(out) < n and time.monotonic() < end:
        try:
            data = s.recv(65536)
        except (TimeoutError, socket.timeout):
            continue
        if not data:
            break
        out += parser.feed(data)
    return out


def _raw_meta(t: MsgType, seq: int, raw: bytes) -> bytes:
    return encode(t, seq, struct.pack("<I", len(raw)) + raw)


ATTACKS = {
    "deeply nested meta": [(MsgType.INFO, b"[" * 10000 + b"]" * 10000)],
    "huge meta": [(MsgType.INFO, b'{"x":"' + b"a" * (300 << 10) + b'"}')],
    "non-JSON meta": [(MsgType.INFO, b"\xff\xfe{")],
    "overflowing numbers": [(MsgType.FLASH_BEGIN, b'{"sha256":"' + b"a" * 64 + b'","size":1e999}')],
    "wrong types": [(MsgType.INFER, b'{"h":"128","w":true}')],
    "path traversal in ids": [(MsgType.ACTIVATE, b'{"bundle_id":"../../state"}')],
    "unsigned update": [
        (
            MsgType.FLASH_BEGIN,
            json.dumps(
                {"sha256": "a" * 64, "size": 1000, "manifest": "{}", "signature": "{}"}
            ).encode(),
        )
    ],
    "garbage bytes": None,
    "requests before HELLO": None,
    "50 silent connections": None,
}


def _attack(port: str, name: str) -> bool:
    host, p = port[len("tcp://") :].split(":")
    if name == "50 silent connections":
        socks = [socket.create_connection((host, int(p))) for _ in range(50)]
        try:
            c = connect(port, timeout=10.0)
            ok = all(
                r.error is None for r in c.stream(((i, PX[i % 4]) for i in range(10)), window=4)
            )
            c.close()
            return ok
        finally:
            for s in socks:
                s.close()
    s = socket.create_connection((host, int(p)), timeout=5)
    try:
        if name == "requests before HELLO":
            s.sendall(encode(MsgType.ROLLBACK, 1, pack_payload({})))
            (f,) = _frames(s, 1)
            return f.type == MsgType.ERROR
        s.sendall(encode(MsgType.HELLO, 1, pack_payload({"client": "bench"})))
        _frames(s, 1)
        if name == "garbage bytes":
            s.sendall(np.random.default_rng(0).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes())
        else:
            for i, (t, raw) in enumerate(ATTACKS[name]):
                s.sendall(_raw_meta(t, 10 + i, raw))
            replies = _frames(s, len(ATTACKS[name]))
            if not all(f.type == MsgType.ERROR for f in replies) or len(replies) != len(
                ATTACKS[name]
            ):
                return False
        s.sendall(encode(MsgType.INFO, 99, pack_payload({})))
        return any(f.type == MsgType.INFO_REPLY for f in _frames(s, 1))
    finally:
        s.close()


def _serial_attacks(tmp: Path) -> dict[str, bool]:
    """Against a live TLS session on the serial link: a third party on the wire replays a
    recorded session and a recorded ClientHello, forges a record, speaks plain, taps; an unpaired
    host; an old (v1) host. Held: nothing of theirs runs and the paired host's session goes on (a
    forged record may end its connection: the host connects again)."""
    from qdev.core import tls
    from qdev.core.link import Channel, LinkError, SerialLink
    from tests.linkfaults import PtyPair

    out: dict[str, bool] = {}
    pty = PtyPair(seed=11)
    try:
        with LocalDevice(tmp / "store-serial", serial=pty.dev_path, tcp=False):
            pty.record = True
            c = connect(pty.host_path, timeout=30.0)
            c.flash(BUNDLE, assets.dev_public_keys())
            c.infer(0, PX[0])
            c.close()
            pty.record = False
            rec = bytes(pty.tapped["to_device"])
            frames = FrameParser().feed(rec)
            out["wiretap on a serial session (reads no pixels)"] = PX[0].tobytes()[
                :64
            ] not in rec and all(
                f.type in (MsgType.TLS_RECORD, MsgType.TLS_ACK, MsgType.TLS_RESET) for f in frames
            )
            c = connect(pty.host_path, timeout=30.0)
            before, store0 = c.stats(), c.info()["store"]
            pty.inject_to_device(
                encode(frames[0].type, frames[0].seq, frames[0].payload)
            )  # a ClientHello
            pty.inject_to_device(rec)  # a whole recorded session
            pty.inject_to_device(encode(MsgType.ROLLBACK, 7000, pack_payload({})))
            time.sleep(1.5)
            live = c.infer(1, PX[1]).error is None
            after = c.stats()
            ran = after["frames"] != before["frames"] + 1 or c.info()["store"] != store0
            hs0, hs1 = before["link"]["handshakes"], after["link"]["handshakes"]
            out["replayed ClientHello and session on serial"] = (
                live and not ran and hs1["completed"] == hs0["completed"]
            )
            out["plain request on the serial link"] = live and not ran
            last = [f for f in FrameParser().feed(rec) if f.type == MsgType.TLS_RECORD][-1]
            forged = bytearray(last.payload)
            forged[12] ^= 1
            n_before = c.stats()["frames"]
            pty.inject_to_device(encode(last.type, last.seq + 500, bytes(forged)))
            time.sleep(0.5)
            # the forged record ended the live connection, or was dropped; either way nothing ran
            try:
                ok = c.infer(2, PX[2]).error is None
            except LinkError:
                ok = False
            c.close()
            c = connect(pty.host_path, timeout=30.0)
            out["forged record on serial"] = c.stats()["frames"] in (n_before, n_before + int(ok))
            c.close()
        with LocalDevice(tmp / "store-unpaired", serial=pty.dev_path, tcp=False, pair=False):
            tls.pin_device(tls.device_identity(tmp / "store-unpaired")[1], "unpaired")
            try:
                connect(pty.host_path, timeout=10.0).close()
                out["unpaired host on serial"] = False
            except LinkError as exc:
                out["unpaired host on serial"] = "TLS handshake failed" in str(exc)
            ch = Channel(SerialLink(pty.host_path))
            ch.send(MsgType.HELLO, {"client": "old"}, version=1)
            try:
                r = ch.recv(2.0)
                while r.type in (
                    MsgType.TLS_RECORD,
                    MsgType.TLS_ACK,
                    MsgType.TLS_RESET,
                ):  # the refused TLS's rest
                    r = ch.recv(2.0)
                out["version-1 host on serial"] = (
                    r.version == 1 and r.meta.get("code") == "protocol_version"
                )
            except Exception:  # noqa: BLE001
                out["version-1 host on serial"] = False
            ch.close()
    finally:
        pty.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    a = ap.parse_args()
    from tests.linkfaults import PtyPair

    with tempfile.TemporaryDirectory() as tmp:
        with LocalDevice(Path(tmp) / "store") as dev:
            c = connect(dev.port)
            c.flash(BUNDLE, assets.dev_public_keys())
            c.close()
            print("| attack | tried | survived |\n|---|---:|---:|")
            for name in ATTACKS:
                ok = _attack(dev.port, name)
                probe = connect(dev.port)
                healthy = probe.info()["bundle_id"] is not None
                probe.close()
                print(f"| {name} | 1 | {int(ok and healthy)} |")
        for name, ok in _serial_attacks(Path(tmp)).items():
            print(f"| {name} | 1 | {int(ok)} |")
        pty = PtyPair(seed=7)
        try:
            with LocalDevice(Path(tmp) / "store2", serial=pty.dev_path, tcp=False):
                c = connect(pty.host_path, timeout=30.0)
                c.flash(BUNDLE, assets.dev_public_keys())
                pty.noise = 0.01
                t0 = time.monotonic()
                reps = list(
                    c.stream(((i, PX[i % 4]) for i in range(a.frames)), window=4, timeout=1.0)
                )
                secs = time.monotonic() - t0
                pty.noise = 0.0
                c.close()
        finally:
            pty.close()
    ok = [r for r in reps if r.error is None]
    wrong = [r for r in ok if not np.array_equal(r.mask.reshape(-1), WANT[r.frame_id % 4])]
    hangs = a.frames - len(reps)
    print(
        f"\nnoisy pty (1% of bytes overwritten in 256-byte bursts, both ways), {a.frames} frames "
        f"in {secs:.1f} s: "
        f"{len(ok) - len(wrong)} ok, {a.frames - len(ok) - hangs} lost, {len(wrong)} silently "
        "wrong, "
        f"{hangs} hangs ({pty.corrupted} bytes overwritten)"
    )


if __name__ == "__main__":
    main()
