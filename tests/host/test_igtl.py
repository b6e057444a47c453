"""OpenIGTLink out (`qdev stream --igtl`) and in (`--probe igtl://`), against the OpenIGTLink
reference library (libopenigtlink, C++): a client and a PLUS-style server compiled here, and
hostile peers (garbage, a 4 GiB length, a client that never reads)."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from qdev.core.igtl import HEADER, IgtlError, crc64, encode_image, parse_header
from qdev.host.session import read_masks, read_session
from tests.netutil import free_port

CPP = Path(__file__).parent / "igtl_cpp"
INCLUDE = Path("/usr/include/openigtlink")


@pytest.fixture(scope="module")
def igtl_bin(tmp_path_factory):
    """The reference-library client and server, compiled with g++ (skips without them)."""
    if shutil.which("g++") is None or not (INCLUDE / "igtlImageMessage.h").is_file():
        pytest.skip(
            "needs g++ and the OpenIGTLink reference library (apt install libopenigtlink-dev)"
        )
    out = tmp_path_factory.mktemp("igtl")
    for name in ("receive", "send"):
        r = subprocess.run(
            [
                "g++",
                "-O1",
                "-o",
                str(out / name),
                str(CPP / f"{name}.cxx"),
                f"-I{INCLUDE}",
                "-lOpenIGTLink",
            ],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def device(flashed_device):
    return flashed_device


def _stream(device, out: Path, frames: int, port: int, *extra: str) -> subprocess.Popen:  # noqa: ANN001
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qdev.host.cli",
            "-p",
            device.port,
            "stream",
            "--probe",
            "phantom",
            "--frames",
            str(frames),
            "--no-view",
            "--out",
            str(out),
            "--igtl",
            str(port),
            "--igtl-wait",
            "30",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _parse_receiver(text: str) -> list[dict]:
    """Per frame: the mask line's fields and the following STRING's JSON."""
    frames, pending = [], {}
    for line in text.splitlines():
        if line.startswith("qdev-mask "):
            dev, i, j, k, comps, stype, si, sj, hexpx = line.split()
            pending.update(
                {
                    "size": (int(i), int(j), int(k)),
                    "comps": int(comps),
                    "type": int(stype),
                    "spacing": (float(si), float(sj)),
                    "mask": bytes.fromhex(hexpx),
                }
            )
        elif line.startswith("qdev-frame "):
            _, i, j, k, comps, stype, *_ = line.split()
            pending = {}  # a frame's messages: IMAGE frame, IMAGE mask, STRING info
            pending["frame_size"] = (int(i), int(j), int(k))
            pending["frame_type"] = int(stype)
        elif line.startswith("STRING "):
            pending["info"] = json.loads(line[len("STRING ") :])
            frames.append(pending)
            pending = {}
    return frames


def test_reference_client_gets_every_frame_and_the_session_s_masks(device, igtl_bin, tmp_path):
    n, port = 300, free_port()
    out = tmp_path / "s"
    p = _stream(device, out, n, port)
    recv = subprocess.run(
        [str(igtl_bin / "receive"), "127.0.0.1", str(port), str(n)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert recv.returncode == 0, recv.stderr
    got = _parse_receiver(recv.stdout)
    assert len(got) == n  # 0 lost on loopback
    manifest, rows = read_session(out)
    masks = read_masks(out, manifest)
    assert len(masks) == n and [g["info"]["frame_id"] for g in got] == sorted(masks)
    for g in got:
        m = masks[g["info"]["frame_id"]]
        assert (
            g["size"] == (m.shape[1], m.shape[0], 1) and g["comps"] == 1 and g["type"] == 3
        )  # uint8 labelmap
        assert np.array_equal(
            np.frombuffer(g["mask"], np.uint8).reshape(m.shape), m.astype(np.uint8)
        )
        assert g["frame_size"][2] == 1 and g["frame_type"] == 3
        assert g["info"]["energy_kind"] and "device_ms" in g["info"]
    st = manifest["igtl"]
    assert st["frames_published"] == n and st["frames_skipped"] == 0
    assert st["per_client"][0]["sent"] == n


def _hostile(port: int, kind: str) -> socket.socket:
    s = socket.socket()
    if kind == "never-reads":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for _ in range(200):
        try:
            s.connect(("127.0.0.1", port))
            break
        except OSError:
            time.sleep(0.05)
    if kind == "garbage":
        s.sendall(b"\xff" * 200)
    elif kind == "4GiB":
        s.sendall(HEADER.pack(1, b"IMAGE", b"x", 0, 0, 4 << 30, 0))
    return s


def test_hostile_clients_are_dropped_and_counted_while_the_session_goes_on(
    device, igtl_bin, tmp_path
):
    n, port = 120, free_port()
    out = tmp_path / "s"
    p = _stream(device, out, n, port, "--fps", "40")
    peers = [_hostile(port, k) for k in ("garbage", "4GiB", "never-reads")]
    recv = subprocess.run(
        [str(igtl_bin / "receive"), "127.0.0.1", str(port), str(n)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    _, err = p.communicate(timeout=300)
    for s in peers:
        s.close()
    assert p.returncode == 0, err
    manifest, rows = read_session(out)
    assert sum(r["status"] == "ok" for r in rows) == n  # the session lost nothing to them
    st = manifest["igtl"]
    assert st["dropped_garbage"] >= 1 and st["dropped_oversized"] >= 1
    # the reader that never reads lost frames (its queue is bounded) or was dropped as stalled
    slow = [c for c in st["per_client"] if c["sent"] < n]
    assert slow and (st["frames_skipped"] > 0 or st["dropped_stalled"] >= 1)
    # a well-behaved reference client beside them still got frames with masks
    assert recv.returncode == 0 and len(_parse_receiver(recv.stdout)) == n


@pytest.mark.parametrize("kind", ["u8", "u16", "rgb"])
def test_igtl_probe_takes_frames_from_a_reference_server(igtl_bin, kind):
    from qdev.core.probe.sources import open_probe

    port, n, w, h = free_port(), 12, 64, 48
    srv = subprocess.Popen(
        [str(igtl_bin / "send"), str(port), str(n), kind, str(w), str(h), "50"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert srv.stdout.readline().strip() == "listening"
    src = open_probe(f"igtl://127.0.0.1:{port}/Image_Reference")
    got = list(src.frames())
    src.close()
    srv.wait(timeout=30)
    assert len(got) == n and src.describe()["errors"]["crc"] == 0
    y, x = np.mgrid[0:h, 0:w]
    for f, fr in enumerate(got):
        v = ((3 * x + 5 * y + 7 * f) % 256).astype(np.uint8)
        want = (
            np.stack([(v.astype(int) + c) % 256 for c in range(3)], -1).astype(np.uint8)
            if kind == "rgb"
            else v
        )
        assert np.array_equal(fr.image, want), f
        assert fr.spacing == pytest.approx((0.25, 0.2))


def _fake_server(port_box: list, payloads: list[bytes]) -> threading.Thread:
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    port_box.append(ls.getsockname()[1])

    def run() -> None:
        c, _ = ls.accept()
        for p in payloads:
            c.sendall(p)
        time.sleep(0.2)
        c.close()
        ls.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_igtl_probe_counts_bad_messages_and_never_crashes():
    from qdev.core.probe.igtl_source import IgtlSource

    good = encode_image(np.full((8, 10), 7, np.uint8), "Image_Reference", 1.0)
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0xFF
    over = HEADER.pack(
        1, b"IMAGE", b"Image_Reference", 0, 0, 4 << 30, 0
    )  # 4 GiB declared, never sent
    short = encode_image(np.full((8, 10), 9, np.uint8), "Image_Reference", 1.0)
    h = parse_header(short[:58])
    body = bytearray(short[58:])
    body[6:8] = (100).to_bytes(2, "big")  # claims 100 columns, carries 10; its CRC made to match
    body = bytes(body)
    forged = HEADER.pack(1, b"IMAGE", b"Image_Reference", 0, 0, len(body), crc64(body)) + body
    box: list = []
    t = _fake_server(box, [good, bytes(bad_crc), forged, good, over])
    src = IgtlSource(f"igtl://127.0.0.1:{box[0]}", timeout=2.0, reconnects=0)
    got = list(src.frames())
    t.join(5)
    d = src.describe()
    assert len(got) == 2 and all((g.image == 7).all() for g in got)
    assert (
        d["errors"]["crc"] == 1 and d["errors"]["malformed"] == 1 and d["errors"]["oversized"] == 1
    )
    assert h.type == "IMAGE"


def test_header_checks_refuse_what_pyigtl_would_read():
    with pytest.raises(IgtlError, match="version 7"):
        parse_header(HEADER.pack(7, b"IMAGE", b"", 0, 0, 0, 0))
    with pytest.raises(IgtlError, match="over the"):
        parse_header(HEADER.pack(1, b"IMAGE", b"", 0, 0, 1 << 40, 0))
    with pytest.raises(IgtlError, match="printable"):
        parse_header(HEADER.pack(1, b"IM\x01GE", b"", 0, 0, 0, 0))
    assert struct.calcsize("> H 12s 20s I I Q Q") == 58


def test_framing_is_byte_for_byte_pyigtl_s_and_reads_back():
    """qdev frames messages itself (for a CRC ~100x faster than pyigtl's crcmod table); the bytes
    must be exactly pyigtl's pack(), v2 and v3 with metadata, and a v3 body reads back."""
    import pyigtl

    from qdev.core.igtl import _matrix, decode, encode_image, read_message

    img = np.random.default_rng(0).integers(0, 256, (48, 64), dtype=np.uint8)
    meta = {"frame_id": "7", "energy_kind": "estimated", "bundle_id": "abc"}
    for m in (None, meta):
        ours = encode_image(img, "qdev-frame", 1234.5, (0.2, 0.3), m)
        ref = pyigtl.ImageMessage(
            img[None],
            ijk_to_world_matrix=_matrix(48, 64, (0.2, 0.3)),
            device_name="qdev-frame",
            timestamp=1234.5,
        )
        if m is not None:
            ref.header_version, ref.metadata = 2, dict(m)
        assert ours == ref.pack()
        buf = memoryview(ours)
        pos = [0]

        def recv_exact(n: int) -> bytes:
            pos[0] += n
            return bytes(buf[pos[0] - n : pos[0]])

        h, body = read_message(recv_exact)
        back = decode(h, body)
        assert np.array_equal(back.image[0], img) and (m is None or back.metadata == m)


def test_closing_lets_the_message_being_sent_finish():
    """A slow client: the writer has taken the last message off the queue and is still sending it
    when the session closes the server. It arrives whole (it used to be cut: 'header cut after
    299 masks' from the reference receiver on a busy machine)."""
    from qdev.host.igtl_out import IgtlServer

    srv = IgtlServer("127.0.0.1", 0, stall_s=10.0)
    cli = socket.socket()
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    cli.connect(("127.0.0.1", srv.port))
    deadline = time.monotonic() + 5
    while srv.counts["clients"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    # larger than the kernel's socket buffers, so that sendall is still running at the close
    frame = np.random.default_rng(0).integers(0, 256, (3000, 3000), dtype=np.uint8)
    srv.publish(1, frame, np.zeros((128, 128), bool), {"frame": 1})
    time.sleep(0.2)  # packed and queued; the writer takes it and blocks on the full socket
    while time.monotonic() < deadline:
        with srv._lock:
            if not srv._pending and not any(c.queue for c in srv._clients):
                break
        time.sleep(0.001)
    closer = threading.Thread(target=srv.close)
    closer.start()
    time.sleep(0.3)  # the client only starts reading after the close began
    data = bytearray()
    cli.settimeout(10)
    while chunk := cli.recv(1 << 16):
        data += chunk
    closer.join(10)
    cli.close()
    types, at = [], 0
    while at < len(data):
        h = parse_header(bytes(data[at : at + HEADER.size]))
        assert at + HEADER.size + h.body_size <= len(data), f"message {len(types) + 1} cut"
        types.append(h.type)
        at += HEADER.size + h.body_size
    assert types and types[0] == "IMAGE"
