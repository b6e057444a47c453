"""``qdev-device`` / ``python -m qdev.device``: the board-side runtime.

    qdev-device serve --store /var/lib/qdev --tcp 127.0.0.1:7968 --serial /dev/ttyPS0 --board KV260
    qdev-device install BUNDLE_DIR --store ...      # local install (e.g. at image build time)
    qdev-device trust KEY.pub --store ...

Errors print ``qdev-device: <message>`` and exit 2. argparse, not Click: the board image stays lean.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import tempfile
import threading
from pathlib import Path

from qdev.core.bundle import BOARD_NAMES, board_name
from qdev.core.errors import ConfigError, QdevError
from qdev.core.link import is_loopback

__all__ = ["main"]


def _board(name: str) -> str:
    try:
        return board_name(name)
    except QdevError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parents() -> tuple[argparse.ArgumentParser, ...]:
    """(store only, dev key, common): the option groups the commands share."""
    store_only = argparse.ArgumentParser(add_help=False)  # what pair / identity / trust need
    store_only.add_argument(
        "--store", default="/var/lib/qdev", help="bundle store folder (default %(default)s)"
    )
    dev_key = argparse.ArgumentParser(add_help=False)
    dev_key.add_argument(
        "--dev-key",
        action="store_true",
        help="allow qdev's shipped development key to be trusted (with --trust "
        "keys/dev/qdev-dev.pub or `trust`; its private half is public: tests and demos only)",
    )
    common = argparse.ArgumentParser(add_help=False, parents=[store_only, dev_key])
    common.add_argument(
        "--board",
        default=None,
        type=_board,
        help=f"this board, one of {', '.join(BOARD_NAMES)} (bundles for others are refused)",
    )
    common.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "pynq", "onnx", "software"],
        help="accelerator backend (default auto: pynq with a bitstream and a board, else onnx "
        "where onnxruntime imports, else software)",
    )
    common.add_argument(
        "--power",
        default="auto",
        choices=["auto", "pmbus", "hwmon", "estimate"],
        help="power source (default auto: PMBus rails, else hwmon sensors, else the estimate)",
    )
    common.add_argument(
        "--trust", action="append", default=[], help="trust this Ed25519 public key (PEM)"
    )
    common.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS/OpenMP threads of the software backend (default 1: see qdev.core.threads)",
    )
    return store_only, dev_key, common


def _add_serve(sub, common: argparse.ArgumentParser) -> None:  # noqa: ANN001
    s = sub.add_parser("serve", parents=[common], help="serve hosts over TCP and/or a serial port")
    s.add_argument(
        "--tcp",
        default=None,
        help="PORT (binds 127.0.0.1) or HOST:PORT to listen on (port 0: any free one; the address "
        "is printed)",
    )
    s.add_argument(
        "--serial", default=None, help="serial port or pyserial URL (/dev/ttyPS0, a pty, socket://)"
    )
    s.add_argument("--baud", type=int, default=921600)
    s.add_argument(
        "--probe",
        default=None,
        help="segment this probe on the device (phantom, video:0, file ...)",
    )
    s.add_argument("--probe-frames", type=int, default=None, help="stop the phantom after N frames")
    s.add_argument("--log-dir", default=None, help="rolling live logs (default STORE/logs)")
    s.add_argument("--log-max-bytes", type=int, default=1 << 20)
    s.add_argument("--log-keep", type=int, default=5)
    s.add_argument("--idle-timeout", type=float, default=60.0)
    s.add_argument(
        "--max-sessions", type=int, default=16, help="TCP/TLS sessions at once (each listener)"
    )
    s.add_argument(
        "--evict-after",
        type=float,
        default=10.0,
        help="when the session cap is full, a session that sent no whole request for this many "
        "seconds (and is not watching) makes room for a newcomer; an operator also evicts "
        "the oldest viewer",
    )
    s.add_argument(
        "--tls",
        default=None,
        help="HOST:PORT: mutually authenticated TLS 1.3 for paired hosts "
        "(any address; see qdev-device pair)",
    )
    s.add_argument(
        "--insecure-network",
        action="store_true",
        help="allow --tcp on a non-loopback address without authentication (not for patient data)",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qdev-device", description="qdev board-side runtime")
    sub = p.add_subparsers(dest="cmd", required=True)
    store_only, dev_key, common = _parents()
    _add_serve(sub, common)
    i = sub.add_parser(
        "install", parents=[common], help="install and activate a bundle folder locally"
    )
    i.add_argument("bundle")
    t = sub.add_parser(
        "trust", parents=[store_only, dev_key], help="add a trusted public key to the store"
    )
    t.add_argument("key")
    sub.add_parser("info", parents=[common], help="print device info as JSON")
    pr = sub.add_parser(
        "pair",
        parents=[store_only],
        help="pin a host's certificate with a role (the --tls listener and the serial link)",
    )
    pr.add_argument("host_cert")
    pr.add_argument("--role", choices=["viewer", "operator"], required=True)
    pr.add_argument(
        "--name",
        default=None,
        help="name of the pin (default: the file's stem and the certificate's fingerprint)",
    )
    sub.add_parser(
        "identity",
        parents=[store_only],
        help="print (making it once) this device's TLS certificate path",
    )
    return p


def _runtime(a):  # noqa: ANN001, ANN202
    from qdev.device.runtime import DeviceRuntime, RuntimeConfig
    from qdev.device.store import BundleStore

    from qdev.core.threads import pin_threads

    pinned = pin_threads(a.threads)  # before any model runs: the self-test already uses BLAS
    if a.dev_key:
        print(
            "qdev-device: WARNING: --dev-key: trusting qdev's development key, whose private half "
            "is "
            "public; anyone can sign bundles for this device. Never use it with patient data.",
            file=sys.stderr,
            flush=True,
        )
    store = BundleStore(a.store, a.board, a.dev_key)
    for k in a.trust:
        store.trust(Path(k))
    return DeviceRuntime(
        RuntimeConfig(
            store=a.store,
            board=a.board,
            backend=a.backend,
            power=a.power,
            threads=pinned["threads"],
            dev_key=a.dev_key,
        ),
        store,
    )


def _hostport(addr: tuple) -> str:
    """HOST:PORT as a host would type it back (IPv6 addresses bracketed)."""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _tcp_address(a) -> tuple[str, int]:  # noqa: ANN001
    """--tcp's address, refused on a non-loopback address without --insecure-network."""
    from qdev.core.link import parse_tcp

    hp = ("127.0.0.1", int(a.tcp)) if a.tcp.isdigit() else parse_tcp(a.tcp)
    if hp is None:
        raise ConfigError(f"--tcp {a.tcp}: expected HOST:PORT")
    if not is_loopback(hp[0]) and not a.insecure_network:
        raise ConfigError(
            f"--tcp {a.tcp}: refusing to serve unauthenticated on a non-loopback address "
            "(anyone who reaches the port could watch the probe and flash bundles); serve on "
            "127.0.0.1 and tunnel to it (ssh -L), or pass --insecure-network to accept that"
        )
    if not is_loopback(hp[0]):
        logging.getLogger("qdev.device").warning(
            "serving UNAUTHENTICATED on %s (--insecure-network)", a.tcp
        )
    return hp


def _listeners(a, rt, hub) -> tuple[list, list]:  # noqa: ANN001
    """The TCP, TLS and serial listeners asked for: (servers to close, (name, loop) pairs)."""
    from qdev.core.link import parse_tcp
    from qdev.device.runtime.server import TcpServer, serve_serial

    loops, servers = [], []
    for flag, addr, tls in (("--tcp", a.tcp, False), ("--tls", a.tls, True)):
        if not addr:
            continue
        hp = parse_tcp(addr) if tls else _tcp_address(a)
        if hp is None:
            raise ConfigError(f"--tls {addr}: expected HOST:PORT")
        try:
            srv = TcpServer(
                rt,
                hp[0],
                hp[1],
                hub,
                a.idle_timeout,
                a.max_sessions,
                tls_store=a.store if tls else None,
                evict_after=a.evict_after,
            )
        except OSError as exc:
            raise ConfigError(f"{flag} {addr}: cannot listen ({exc})") from exc
        servers.append(srv)
        loops.append((flag[2:], lambda beat, _stop, srv=srv: srv.serve_forever(beat)))
        scheme, note = ("tls", " (paired hosts only)") if tls else ("tcp", "")
        print(f"listening on {scheme}://{_hostport(srv.address)}{note}", flush=True)
    if a.serial:
        idle = max(a.idle_timeout, 3600.0)
        loops.append(
            ("serial", lambda beat, st: serve_serial(rt, a.serial, a.baud, st, hub, idle, beat))
        )
        print(f"listening on serial {a.serial}", flush=True)
    return servers, loops


def _serve(a) -> int:  # noqa: ANN001
    from qdev.core.probe.sources import open_probe
    from qdev.device.runtime.live import LiveLoop
    from qdev.device.runtime.server import LiveHub
    from qdev.device.runtime.supervise import Supervisor

    if not a.tcp and not a.serial and not a.tls:
        raise ConfigError("serve needs --tcp HOST:PORT and/or --serial PORT")
    rt = _runtime(a)
    stop = threading.Event()
    hub = LiveHub() if a.probe else None
    sup = Supervisor(stop)
    # the probe first: a source this board cannot read (no OpenCV, no pydicom, no such file) is
    # refused before anything says it is listening
    probe_src = open_probe(a.probe, a.probe_frames) if a.probe else None
    servers, loops = _listeners(a, rt, hub)
    live = None
    if a.probe:
        logs = Path(a.log_dir or Path(a.store) / "logs")
        live = LiveLoop(rt, probe_src, hub, logs, a.log_max_bytes, a.log_keep)
        live.start()
        print(f"on-device probe {a.probe}: logs in {live.log.folder}", flush=True)
    for name, loop in loops:
        sup.add(name, loop, transport=True)

    def _stop(*_):  # noqa: ANN002, ANN202
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(
        f"ready: bundle {rt.bundle_id or '(none)'}, backend {rt.accel.name if rt.accel else '-'}"
        + (f"; DEGRADED: {'; '.join(rt.degraded)}" if rt.degraded else ""),
        flush=True,
    )
    sup.watchdog()  # READY=1 (and watchdog pings) for systemd's Type=notify
    stop.wait()
    for s in servers:
        s.close()
    if live:
        live.close()
    if sup.failed:
        print(f"qdev-device: {sup.failed}", file=sys.stderr, flush=True)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    a = _parser().parse_args(argv)
    try:
        if a.cmd == "serve":
            return _serve(a)
        if a.cmd == "pair":  # TLS pairing and identity need no runtime (nor a bundle)
            from qdev.core.tls import pair_host

            print(pair_host(Path(a.store), Path(a.host_cert), a.role, a.name))
            return 0
        if a.cmd == "identity":
            from qdev.core.tls import make_identity

            print(make_identity(Path(a.store) / "tls", "device", "qdev-device")[1])
            return 0
        if a.cmd == "trust":  # a key file into the store: no runtime, no self-test
            from qdev.device.store import BundleStore

            print(BundleStore(a.store, None, a.dev_key).trust(Path(a.key)))
            return 0
        rt = _runtime(a)
        if a.cmd == "install":
            from qdev.core.bundle import pack_bundle

            with tempfile.NamedTemporaryFile(dir=a.store, suffix=".tar", delete=False) as fh:
                fh.write(pack_bundle(Path(a.bundle)))
            try:
                res = rt.store.install(Path(fh.name), rt.self_test)
            finally:
                Path(fh.name).unlink(missing_ok=True)
            print(
                json.dumps(
                    {
                        "bundle_id": res.bundle_id,
                        "activated": res.activated,
                        "message": res.message,
                        "self_test": res.self_test,
                    }
                )
            )
            return 0 if res.activated else 1
        if a.cmd == "info":
            print(json.dumps(rt.info(), indent=1))
            return 0
    except QdevError as exc:
        print(f"qdev-device: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
