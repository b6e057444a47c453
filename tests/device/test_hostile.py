"""Hostile peers against a real ``qdev-device serve`` over TCP on 127.0.0.1: malformed, huge,
nested and ill-typed metas, floods of silent connections, noisy links; plus the supervisor, the
systemd watchdog and the refusal to serve unauthenticated beyond loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from qdev.core.link import pack_payload
from qdev.core.protocol import MsgType, encode
from qdev.host.client import connect
from qdev.host.local import LocalDevice
from tests.device.helpers import DEV_PUB, SHIPPED, golden_masks, raw_socket, read_frames

pytestmark = pytest.mark.device_env

GOLD_PX = np.load(SHIPPED["KV260"] / "golden_pixels.npy")


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    store = tmp_path_factory.mktemp("hostile") / "store"
    with LocalDevice(
        store, trusted=[DEV_PUB], extra=["--idle-timeout", "2", "--max-sessions", "8"]
    ) as dev:
        c = connect(dev.port)
        assert c.flash(SHIPPED["KV260"], [DEV_PUB])["activated"]
        c.close()
        yield dev


def _meta_frame(t: MsgType, seq: int, raw_meta: bytes) -> bytes:
    import struct

    return encode(t, seq, struct.pack("<I", len(raw_meta)) + raw_meta)


def _hello(s: socket.socket) -> None:
    s.sendall(encode(MsgType.HELLO, 1, pack_payload({"client": "hostile"})))
    (f,) = read_frames(s, 1)
    assert f.type == MsgType.HELLO_ACK


def _reply(f) -> dict:  # noqa: ANN001
    return json.loads(f.payload[4 : 4 + int.from_bytes(f.payload[:4], "little")].decode())


HOSTILE = {
    "nested 10k deep": (MsgType.INFO, b"[" * 10000 + b"]" * 10000, "nested deeper"),
    "nested object": (MsgType.INFO, b'{"a":' * 50 + b"1" + b"}" * 50, "nested deeper"),
    "not JSON": (MsgType.INFO, b"\xff\xfe{garbage", "not JSON"),
    "not an object": (MsgType.INFO, b"[1,2,3]", "not an object"),
    "size 1e999": (
        MsgType.FLASH_BEGIN,
        b'{"sha256":"' + b"a" * 64 + b'","size":1e999}',
        "size: must be an integer",
    ),
    "size negative": (
        MsgType.FLASH_BEGIN,
        b'{"sha256":"' + b"a" * 64 + b'","size":-5}',
        "size: -5 is outside",
    ),
    "sha not hex": (MsgType.FLASH_BEGIN, b'{"sha256":"../../etc/passwd","size":10}', "sha256:"),
    "h a string": (MsgType.INFER, b'{"h":"128","w":128}', "h: must be an integer"),
    "h a bool": (MsgType.INFER, b'{"h":true,"w":128}', "h: must be an integer"),
    "w huge": (MsgType.INFER, b'{"h":128,"w":1000000000}', "w: 1000000000 is outside"),
    "h missing": (MsgType.INFER, b'{"w":128}', "h: missing"),
    "bundle id traversal": (MsgType.ACTIVATE, b'{"bundle_id":"../../state"}', "bundle_id:"),
    "chunk crc NaN": (MsgType.FLASH_CHUNK, b'{"offset":0,"crc":NaN}', "crc: must be an integer"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_meta_gets_bad_request_naming_the_field_and_the_session_goes_on(device, name):
    t, raw, needle = HOSTILE[name]
    s = raw_socket(device.port)
    try:
        _hello(s)
        s.sendall(_meta_frame(t, 7, raw))
        s.sendall(encode(MsgType.INFO, 8, pack_payload({})))
        err, ok = read_frames(s, 2)
        e = _reply(err)
        assert err.type == MsgType.ERROR and err.seq != 0 and e["code"] == "bad_request", e
        assert needle in e["message"], e["message"]
        assert ok.type == MsgType.INFO_REPLY and _reply(ok)["re"] == 8
    finally:
        s.close()


def test_huge_meta_is_refused_before_parsing(device):
    s = raw_socket(device.port)
    try:
        _hello(s)
        big = b'{"x":"' + b"a" * (200 << 10) + b'"}'
        s.sendall(_meta_frame(MsgType.INFO, 9, big))
        (err,) = read_frames(s, 1)
        assert err.type == MsgType.ERROR and "limit is 65536" in _reply(err)["message"]
    finally:
        s.close()


def test_fifty_silent_connections_do_not_lock_out_a_healthy_client(device):
    silent = [raw_socket(device.port) for _ in range(50)]
    try:
        time.sleep(0.3)
        c = connect(device.port, timeout=10.0)
        try:
            reps = list(c.stream(((i, GOLD_PX[i % 4]) for i in range(20)), window=4, timeout=10.0))
        finally:
            c.close()
        assert len(reps) == 20 and all(r.error is None for r in reps)
        want = golden_masks(SHIPPED["KV260"]).reshape(len(GOLD_PX), -1).astype(bool)
        assert all(
            np.array_equal(r.mask.reshape(-1), want[r.frame_id % 4]) for r in reps
        )  # bit-exact
    finally:
        for s in silent:
            s.close()


def test_a_noisy_link_is_not_idle(device):
    """--idle-timeout 2: garbage bytes every 0.3 s for 3 s keep the connection; then it works."""
    s = raw_socket(device.port)
    try:
        _hello(s)
        t_end = time.monotonic() + 3.0
        while time.monotonic() < t_end:
            s.sendall(b"\x00noise\x13" * 4)
            time.sleep(0.3)
        s.sendall(encode(MsgType.INFO, 5, pack_payload({})))
        (f,) = read_frames(s, 1)
        assert f.type == MsgType.INFO_REPLY
        time.sleep(2.8)  # now truly silent: dropped
        s.settimeout(2.0)
        assert s.recv(10) == b""
    finally:
        s.close()


def test_non_loopback_tcp_is_refused_without_the_insecure_flag(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "qdev.device",
            "serve",
            "--store",
            str(tmp_path / "s"),
            "--tcp",
            "0.0.0.0:0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert (
        "refusing to serve unauthenticated on a non-loopback address" in r.stderr
        and "Traceback" not in r.stderr
    )


def test_supervisor_restarts_a_dying_loop_and_gives_up_on_one_that_keeps_dying():
    from qdev.device.runtime.supervise import Supervisor

    stop = threading.Event()
    sup = Supervisor(stop, max_restarts=3, window_s=30.0, stale_s=5.0)
    calls = {"flaky": 0}

    def flaky(beat, st):  # noqa: ANN001, ANN202
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise OSError("port vanished")
        while not st.is_set():
            beat()
            st.wait(0.05)

    try:
        sup.add("flaky", flaky)
        deadline = time.monotonic() + 5
        while calls["flaky"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert calls["flaky"] == 2 and sup.healthy() and sup.failed is None

        def dead(beat, st):  # noqa: ANN001, ANN202
            raise RuntimeError("always")

        sup.add("dead", dead)
        for t in sup.threads:
            t.join(timeout=20 if t.name == "qdev-dead" else 0.01)
        assert (
            sup.failed and "dead died 4 times" in sup.failed and stop.is_set() and not sup.healthy()
        )
    finally:
        stop.set()


def test_systemd_ready_and_watchdog_pings(tmp_path):
    sock_path = str(tmp_path / "notify.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(sock_path)
    rx.settimeout(10)
    env = {"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "300000"}
    got = []
    with LocalDevice(tmp_path / "store", trusted=[DEV_PUB], env=env):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and got.count("WATCHDOG=1") < 3:
            got.append(rx.recv(64).decode())
    rx.close()
    assert got[0] == "READY=1" and got.count("WATCHDOG=1") >= 3


def test_reflashing_the_installed_bundle_sends_no_upload(device):
    c = connect(device.port)
    try:
        before = c.stats()["link"]["bytes_in"]
        res = c.flash(SHIPPED["KV260"], [DEV_PUB])
        after = c.stats()["link"]["bytes_in"]
    finally:
        c.close()
    assert res["activated"] and res["uploaded"] is False
    assert after - before < 20_000  # the signed manifest and a few requests, not the ~110 KB bundle


def test_bursts_of_noise_on_a_serial_link_lose_frames_but_never_corrupt_one(tmp_path):
    """1% of the bytes overwritten in 256-byte bursts, both ways, over a pty: every frame comes
    back bit-exact or is counted lost, nothing hangs, and the session recovers when the noise stops.
    Over TLS the serial carrier numbers, acknowledges and resends its small frames, so a burst
    costs a resend; were a connection to break anyway, the host connects again (recover)."""
    from tests.linkfaults import PtyPair

    pty = PtyPair(seed=3)
    want = golden_masks(SHIPPED["KV260"]).reshape(len(GOLD_PX), -1).astype(bool)
    try:
        with LocalDevice(tmp_path / "store", trusted=[DEV_PUB], serial=pty.dev_path, tcp=False):
            c = connect(pty.host_path, timeout=20.0)
            try:
                assert c.flash(SHIPPED["KV260"], [DEV_PUB])["activated"]
                pty.noise = 0.01
                t0 = time.monotonic()
                reps = list(
                    c.stream(((i, GOLD_PX[i % 4]) for i in range(60)), window=4, timeout=1.0)
                )
                noisy_s = time.monotonic() - t0
                resent = c.ch.link.carrier.resent
                pty.noise = 0.0
                time.sleep(1.5)  # let partial frames expire
                c.ch.parser.expire()
                # a TLS connection the noise broke is replaced by the first request after it
                assert c.info()["protocol"] == 2
                after = list(
                    c.stream(((i, GOLD_PX[i % 4]) for i in range(8)), window=2, timeout=10.0)
                )
            finally:
                c.close()
    finally:
        pty.close()
    ok = [r for r in reps if r.error is None]
    lost = [r for r in reps if r.error is not None]
    wrong = [r for r in ok if not np.array_equal(r.mask.reshape(-1), want[r.frame_id % 4])]
    print(
        f"noisy pty: {len(ok)} ok, {len(lost)} lost, {len(wrong)} silently wrong, {pty.corrupted} "
        "bytes hit, "
        f"{noisy_s:.1f} s"
    )
    # the noise really bit, and the serial carrier sent the lost pieces again (TLS never saw a gap)
    assert len(reps) == 60 and wrong == [] and pty.corrupted > 0 and resent > 0
    assert noisy_s < 120  # no hang: lost frames cost their timeout, no more
    assert [r.error for r in after] == [None] * 8  # recovered


def test_error_replies_are_bounded_whatever_the_request_repeats(tmp_path):
    """A refusal that repeats what the request carried (a 17 MiB tar member name made an ERROR
    bigger than the frame, killing the reply path) is cut to ERROR_TEXT_MAX characters: the reply
    is sent, parses on the host side, and the session goes on."""
    import json as _json
    import threading as _th

    from qdev.core.errors import QdevError
    from qdev.core.link import Channel
    from qdev.core.protocol import MsgType
    from qdev.device.runtime import DeviceRuntime, RuntimeConfig
    from qdev.device.runtime import server as srv
    from qdev.core.link import SocketLink

    lst = socket.create_server(("127.0.0.1", 0))
    b = socket.create_connection(lst.getsockname())
    a, _ = lst.accept()
    lst.close()
    rt = DeviceRuntime(
        RuntimeConfig(store=str(tmp_path / "store"), backend="software", power="estimate")
    )
    sess = srv.Session(rt, SocketLink(a, "test-a"))
    sess.hello = True
    host = Channel(SocketLink(b, "test-b"))
    huge = "m" * (17 << 20)

    def boom(session, msg):  # noqa: ANN001, ANN202
        raise QdevError(f"archive member {huge!r} is not in the signed manifest")

    stop = _th.Event()
    t = _th.Thread(target=sess.run, args=(stop,), daemon=True)
    old = srv.HANDLERS[MsgType.INFO]
    srv.HANDLERS[MsgType.INFO] = boom
    try:
        t.start()
        host.send(MsgType.INFO, {})
        reply = host.recv(10.0)
        assert reply.type == MsgType.ERROR
        assert (
            len(reply.meta["message"]) <= srv.ERROR_TEXT_MAX
            and "characters cut" in reply.meta["message"]
        )
        assert len(_json.dumps(reply.meta)) < 64 << 10
        srv.HANDLERS[MsgType.INFO] = old
        host.send(MsgType.INFO, {})  # the session is still there
        assert host.recv(10.0).type == MsgType.INFO_REPLY
    finally:
        srv.HANDLERS[MsgType.INFO] = old
        stop.set()
        a.close()
        b.close()


def test_hello_then_trickle_cannot_hold_the_session_cap(tmp_path):
    """--max-sessions 3: three local peers say HELLO and then trickle a byte now and then (which
    keeps a link from counting as idle). They used to lock every new client out; now a newcomer
    evicts the one whose last whole request is oldest, once it is --evict-after seconds old."""
    store = tmp_path / "store"
    with LocalDevice(
        store, trusted=[DEV_PUB], extra=["--max-sessions", "3", "--evict-after", "1"]
    ) as dev:
        hogs = []
        for _ in range(3):
            s = raw_socket(dev.port)
            _hello(s)
            hogs.append(s)
        stop = threading.Event()

        def trickle() -> None:
            while not stop.is_set():
                for s in hogs:
                    try:
                        s.sendall(b"\\x00")
                    except OSError:
                        pass
                time.sleep(0.2)

        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        try:
            time.sleep(1.5)
            c = connect(dev.port, timeout=10.0)  # admitted: the stalest trickler made room
            assert c.info()["device_version"]
            c.close()
        finally:
            stop.set()
            for s in hogs:
                s.close()


def test_a_vanished_serial_port_does_not_take_tcp_down(monkeypatch):
    """Transports are independent: a transport that keeps dying (an unplugged USB-serial adapter
    made the process exit after 16 s, TCP and TLS with it) is retried while another still serves;
    the process gives up only when every transport keeps dying."""
    import qdev.device.runtime.supervise as sv

    monkeypatch.setattr(sv, "RETRY_S", 0.2)
    stop = threading.Event()
    sup = sv.Supervisor(stop, max_restarts=2, window_s=30.0, stale_s=5.0)
    tcp_turns = {"n": 0}

    def tcp(beat, st):  # noqa: ANN001, ANN202
        while not st.is_set():
            tcp_turns["n"] += 1
            beat()
            st.wait(0.02)

    def serial(beat, st):  # noqa: ANN001, ANN202
        raise OSError("[Errno 2] could not open port /dev/ttyUSB0")

    try:
        sup.add("tcp", tcp, transport=True)
        sup.add("serial", serial, transport=True)
        time.sleep(4.0)  # far past max_restarts for the serial loop (backoff 0.5, 1, 2 ...)
        assert sup.failed is None and not stop.is_set() and "serial" in sup.failing
        assert sup.restarts["serial"] >= 3 and sup.healthy()
        n = tcp_turns["n"]
        time.sleep(0.2)
        assert tcp_turns["n"] > n  # TCP kept serving
    finally:
        stop.set()
    # every transport dying: the process gives up (systemd restarts it)
    stop2 = threading.Event()
    sup2 = sv.Supervisor(stop2, max_restarts=1, window_s=30.0, stale_s=5.0)
    sup2.add("tcp", serial, transport=True)
    sup2.add("serial", serial, transport=True)
    for t in sup2.threads:
        t.join(timeout=20)
    assert sup2.failed and stop2.is_set()


def test_a_large_reply_to_a_slow_reader_is_not_cut_by_the_last_receive_timeout():
    """A send inherited the socket's last receive timeout (0.05-0.5 s): a large reply to a reader
    that pauses was cut with `send failed (timed out)`. A send has its own deadline now."""
    from qdev.core.link import SocketLink

    lst = socket.create_server(("127.0.0.1", 0))
    b = socket.create_connection(lst.getsockname())
    a, _ = lst.accept()
    lst.close()
    writer = SocketLink(a, "writer")
    blob = bytes(8 << 20)
    got = bytearray()

    def slow_reader() -> None:
        time.sleep(0.6)  # longer than the receive timeout the writer just used
        while len(got) < len(blob):
            chunk = b.recv(1 << 16)
            if not chunk:
                break
            got.extend(chunk)
            time.sleep(0.001)

    t = threading.Thread(target=slow_reader, daemon=True)
    t.start()
    try:
        assert writer.read(0.05) == b""  # the socket's timeout is now 0.05 s
        writer.write(blob)  # 8 MiB, far over the socket buffers: must wait for the reader
        t.join(timeout=60)
        assert len(got) == len(blob)
    finally:
        a.close()
        b.close()
