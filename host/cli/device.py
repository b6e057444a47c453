"""Device commands: ports, info, flash, rollback, stream, report, bench, demo (thin wrappers
over host.client / host.stream / host.report)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click

from qdev.core.errors import ConfigError, QdevError
from qdev.host.cli.dcopts import build_config, config_options
from qdev.host.stream_config import StreamConfig

__all__ = ["COMMANDS"]


def _port(ctx: click.Context) -> tuple[str, int]:
    obj = ctx.find_root().obj or {}
    if not obj.get("port"):
        raise ConfigError(
            "no device port: pass -p/--port PORT (a serial port or tcp://HOST:PORT) or set "
            "QDEV_PORT"
        )
    return obj["port"], obj["baud"]


def _client(ctx: click.Context, timeout: float = 10.0):  # noqa: ANN202
    from qdev.host.client import connect

    port, baud = _port(ctx)
    return connect(port, baud, timeout)


def _trusted(trust: tuple[str, ...]) -> list[Path]:
    from qdev.host.local import default_trusted

    keys = [Path(k) for k in trust] or default_trusted()
    if not keys:
        raise ConfigError("no trusted keys: pass --trust KEY.pub or set QDEV_TRUST")
    return keys


def _echo_json(doc: dict) -> None:
    click.echo(json.dumps(doc, indent=1, default=str))


@click.command("ports")
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Try the qdev handshake on each port.",
)
@click.option("--json", "as_json", is_flag=True)
def ports_cmd(check: bool, as_json: bool) -> None:
    """List serial ports; mark those where a qdev device answers."""
    from serial.tools import list_ports

    from qdev.core.link import LinkError
    from qdev.host.client import DeviceError, connect

    rows = []
    for p in sorted(list_ports.comports(), key=lambda p: p.device):
        r = {"port": p.device, "description": p.description, "hwid": p.hwid, "qdev": None}
        if check:
            try:
                with connect(p.device, timeout=1.0) as c:
                    r["qdev"] = {
                        k: c.hello.get(k)
                        for k in ("device_version", "board", "backend", "bundle_id")
                    }
            except (LinkError, DeviceError):
                r["qdev"] = False
        rows.append(r)
    if as_json:
        _echo_json({"ports": rows})
        return
    if not rows:
        click.echo("no serial ports found (a device over TCP: qdev -p tcp://HOST:PORT info)")
    for r in rows:
        mark = f"qdev {r['qdev']['device_version']} ({r['qdev']['backend']})" if r["qdev"] else ""
        click.echo(f"{r['port']:<20} {r['description']:<40} {mark}")


@click.command("info")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def info_cmd(ctx: click.Context, as_json: bool) -> None:
    """Device versions, board, backend, active and previous bundle, power source."""
    with _client(ctx) as c:
        info = c.info()
        try:
            info["power_now"] = c.power()
        except QdevError:
            info["power_now"] = None
    if as_json:
        _echo_json(info)
        return
    from qdev.host.device_info import info_lines

    for line in info_lines(info):
        click.echo(line)


@click.command("flash")
@click.argument("bundle", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--trust", multiple=True, help="Trusted public key (default: $QDEV_TRUST or keys/dev)."
)
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--allow-downgrade",
    is_flag=True,
    help="Install a bundle older (by its signed version) than one the device has run.",
)
@click.pass_context
def flash_cmd(
    ctx: click.Context, bundle: Path, trust: tuple[str, ...], allow_downgrade: bool, as_json: bool
) -> None:
    """Verify a bundle here, upload it (resumable), install it on the device after its self-test."""
    from qdev.host.cli.progress import progress_bar

    keys = _trusted(trust)
    with _client(ctx) as c:
        with progress_bar(f"flash {bundle.name}", disable=as_json) as cb:
            res = c.flash(bundle, keys, progress=cb, allow_downgrade=allow_downgrade)
    if as_json:
        _echo_json(res)
    else:
        st = res.get("self_test", {})
        click.echo(
            f"self-test: {'passed' if st.get('ok') else 'FAILED'} ({st.get('frames', 0)} golden "
            "frames, "
            f"{st.get('codes_differing', '-')} codes differ, backend {st.get('backend', '-')})"
        )
        click.echo(res["message"])
    if not res.get("activated"):
        raise QdevError(f"not activated: {res['message']}")


@click.command("rollback")
@click.pass_context
def rollback_cmd(ctx: click.Context) -> None:
    """Make the previous bundle active again (after its self-test)."""
    with _client(ctx) as c:
        res = c.rollback()
    click.echo(res["message"])
    if not res.get("activated"):
        raise QdevError(f"rollback failed: {res['message']}")


@click.command("pair")
@click.argument("device_cert", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option(
    "--name",
    default=None,
    help="Name of the pin (default: the file's stem and the certificate's fingerprint).",
)
def pair_cmd(device_cert: Path, name: str | None) -> None:
    """Pin a device's certificate (from qdev-device identity) and print this host's certificate,
    to pin on the device with: qdev-device pair HOST.pem --role operator|viewer. One pairing
    covers both tls:// and the serial link (whose session keys it derives)."""
    from qdev.core.tls import host_identity, pin_device

    dst = pin_device(device_cert, name)
    _, host_cert = host_identity()
    click.echo(f"pinned {dst}")
    click.echo(f"this host's certificate: {host_cert}")


@click.command("activate")
@click.argument("bundle_id")
@click.pass_context
def activate_cmd(ctx: click.Context, bundle_id: str) -> None:
    """Make an installed bundle active (after its self-test), e.g. after a damaged store was
    healed."""
    with _client(ctx) as c:
        res = c.activate(bundle_id)
    click.echo(res["message"])
    if not res.get("activated"):
        raise QdevError(f"activate failed: {res['message']}")


def _watch(
    ctx: click.Context,
    spec: str,
    frames: int | None,
    view: str,
    save: Path | None,
    quality: int = 40,
    igtl_spec: str | None = None,
    out: Path | None = None,
    report: bool = True,
    display_max: int = 320,
) -> None:
    from qdev.host.watch import WatchConfig, watch_to_session

    if not 0 <= display_max <= 4096:
        raise ConfigError(f"--display-size {display_max}: must be 0-4096 pixels")
    with _client(ctx) as c:
        folder, summ = watch_to_session(
            c,
            WatchConfig(spec, frames, view, save, quality, igtl_spec, out, display_max),
            click.echo,
        )
    end = summ.ended_by_device
    if end is not None:
        click.echo(
            f"the device's source ended: {end.get('frames')} frames segmented on the device "
            f"({end.get('dropped', 0)} dropped there), {summ.received} received here "
            f"in {summ.seconds:.1f} s, "
            f"{summ.skipped} skipped"
        )
    else:
        click.echo(
            f"{summ.received} frames received in {summ.seconds:.1f} s, {summ.skipped} skipped by "
            "this viewer"
        )
    if report:
        from qdev.host.report import summarise

        _print_summary(summarise(folder))
    click.echo(f"session: {folder}")


@click.command("stream")
@click.option(
    "--probe",
    required=True,
    help="phantom[:SEED] | video:N | /dev/videoN | cine file | DICOM | image folder/glob | "
    "igtl://HOST:PORT[/DEVICE] | device:SOURCE",
)
@config_options(StreamConfig)
@click.option("--no-view", is_flag=True, help="Same as --view none.")
@click.option(
    "--display-quality",
    type=click.IntRange(10, 95),
    default=40,
    show_default=True,
    help="device: mode: JPEG quality of the display frames the device sends (segmentation "
    "always runs on the raw pixels).",
)
@click.option(
    "--report/--no-report", default=True, show_default=True, help="Print the summary at the end."
)
@click.option(
    "--display-size",
    default=320,
    show_default=True,
    metavar="PX",
    help="device: mode: the probe's own frame is sent for display with its longer side at most PX "
    "(aspect kept; 0: the model's input). The HUD says when it is reduced.",
)
@click.pass_context
def stream_cmd(
    ctx: click.Context,
    probe: str,
    no_view: bool,
    display_quality: int,
    report: bool,
    display_size: int,
    **values: object,
) -> None:
    """Live segmentation of probe frames on the device, logged per frame."""
    cfg = build_config(StreamConfig, values, port=_port(ctx)[0])
    if no_view:
        cfg = replace(cfg, view="none")
    cfg.check()  # before connecting: a bad option costs nothing
    if probe.startswith("device:"):
        _watch(
            ctx,
            probe[len("device:") :],
            cfg.max_frames,
            cfg.view,
            cfg.save,
            display_quality,
            cfg.igtl,
            cfg.out,
            report,
            display_size,
        )
        return
    from qdev.core.probe.sources import open_probe

    stream_session(ctx, open_probe(probe), cfg, report)


def stream_session(ctx: click.Context, source, cfg, report: bool, client=None) -> Path:  # noqa: ANN001
    """The CLI side of :func:`qdev.host.stream.stream_to_session`: connect (unless given a client),
    stream, print the summary."""
    from rich.console import Console

    from qdev.host.stream import stream_to_session

    c = client or _client(ctx, cfg.timeout)
    try:
        folder, _ = stream_to_session(c, source, cfg, status=Console(stderr=True).status)
    finally:
        if client is None:
            c.close()
    if report:
        from qdev.host.report import summarise

        _print_summary(summarise(folder))
    click.echo(f"session: {folder}")
    return folder


def energy_label(backend: str | None, kind: str | None, board: str | None) -> str:
    """What an energy figure describes, in words: a CPU backend's figure is this computer's time
    times the board's power, which describes no real system."""
    from qdev.host.report import CPU_BACKENDS

    if backend in CPU_BACKENDS:
        return (
            f"this computer's CPU time ({backend} backend) x "
            f"the {board or 'board'}'s {kind or 'estimated'} power: "
            "describes no real system"
        )
    return f"{kind or 'unknown'} on the device ({backend or 'unknown'} backend)"


def _print_summary(s: dict) -> None:
    f = s["frames"]
    click.echo(
        f"{f['ok']} frames ok, {f['lost'] + f['timeout']} lost, {f['error']} "
        f"errors, {s['dropped']} "
        "dropped; "
        f"{s['fps']:.2f} frames/s"
    )
    for key, label in (("rtt_ms", "round trip"), ("device_ms", "device")):
        v = s[key]
        if v.get("n"):
            click.echo(
                f"{label:<11} p50 {v['p50']:.1f} ms  p90 {v['p90']:.1f}  p99 {v['p99']:.1f}  "
                f"max {v['max']:.1f}"
            )
    e = s["energy_mj_per_frame"]
    if e.get("n"):
        dev = s.get("device") or {}
        board = dev.get("board") or ((s.get("tables") or {}).get("board") or {}).get("board")
        what = energy_label(dev.get("backend"), e["kind"], board)
        click.echo(
            f"energy     {e['mean']:.1f} mJ/frame, {s['power_w']['mean']:.2f} W average "
            f"(idle {s['power_w']['idle_w']} W): {what}"
        )
    fp = (s.get("energy") or {}).get("fpga_estimate")
    if fp:
        click.echo(
            f"FPGA       {fp['mj_per_frame']:.1f} mJ/frame: the bundle's "
            f"FINN-estimated {fp['frames_per_s']:.1f} "
            f"frames/s at the board's estimated {fp['board_w']:.2f} W (estimated)"
        )
    if s.get("dice_vs_truth"):
        click.echo(
            f"Dice vs ground truth (phantom masks or the images' _mask files): mean "
            f"{s['dice_vs_truth']['mean']:.3f} over {s['dice_vs_truth']['n']} frames"
        )
    for w in s["warnings"]:
        click.echo(f"warning: {w}")


@click.command("report")
@click.argument("session", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--compare", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Default SESSION/report.",
)
@click.option(
    "--dicom",
    "dicom_out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    metavar="DIR",
    help="Also write the session's DICOM SEG + SR here (as qdev export dicom).",
)
@click.option("--json", "as_json", is_flag=True)
def report_cmd(
    session: Path, compare: Path | None, out: Path | None, dicom_out: Path | None, as_json: bool
) -> None:
    """Frames, FPS, drops, latency percentiles, power and energy per frame; PNG plots + HTML."""
    from qdev.host.report import write_report

    doc = write_report(session, compare, out)
    if dicom_out is not None:
        from qdev.host.dicom_export import export_session_dicom

        res = export_session_dicom(session, dicom_out)
        doc["dicom"] = {
            "out": str(res.out),
            "segs": len(res.segs),
            "sr": str(res.sr),
            "study_uid": res.study_uid,
        }
    if as_json:
        _echo_json(doc)
        return
    for s in doc["sessions"]:
        click.echo(f"== {s['session']}")
        _print_summary(s)
    click.echo(f"report: {(out or session / 'report') / 'report.html'}")
    if doc.get("dicom"):
        click.echo(
            f"dicom: {doc['dicom']['out']} ({doc['dicom']['segs']} SEG + SR, "
            f"study {doc['dicom']['study_uid']})"
        )


@click.command("bench")
@click.option("--frames", default=200, show_default=True)
@click.option("--window", default=4, show_default=True)
@click.option(
    "--bundle",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=None,
    help="Bundle for the host-CPU reference (default: the shipped KV260 bundle).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="BLAS/OpenMP threads of the host-CPU reference.",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bench_cmd(
    ctx: click.Context, frames: int, window: int, bundle: Path | None, threads: int, as_json: bool
) -> None:
    """Throughput/latency against the device, and the same model on this CPU as a reference."""
    from qdev.host.bench import bench_device, bench_host_cpu
    from qdev.host.local import default_bundle

    with _client(ctx) as c:
        dev = bench_device(c, frames, window)
    host = bench_host_cpu(bundle or default_bundle(), min(frames, 50), threads)
    doc = {"device": dev, "host_cpu": host}
    if as_json:
        _echo_json(doc)
        return
    rtt = dev["rtt_ms"]
    tail = (
        f"round trip p50 {rtt['p50']:.1f} ms, p99 {rtt['p99']:.1f} ms"
        if rtt["n"]
        else "no frame came back"
    )
    click.echo(
        f"device ({dev['backend']}, {dev.get('threads') or '?'} BLAS thread(s)): {dev['fps']:.2f} "
        "frames/s "
        f"end to end, device-only {dev['device_fps']:.2f}; {tail}"
    )
    click.echo(
        f"host CPU (software executor, same bundle, {host['threads']} BLAS "
        f"thread(s)): {host['fps']:.2f} frames/s"
    )


@click.command("lineage")
@click.argument("target", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--root",
    "roots",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to look for bundles and runs (default: bitstreams/, models/, runs/).",
)
@click.option(
    "--trust", multiple=True, help="Trusted public key (default: $QDEV_TRUST or keys/dev)."
)
@click.option("--json", "as_json", is_flag=True)
def lineage_cmd(
    target: Path, roots: tuple[Path, ...], trust: tuple[str, ...], as_json: bool
) -> None:
    """Which data, run and bundle produced a session (or a bundle), each hash checked where the
    files are."""
    from dataclasses import asdict

    from qdev.host.lineage import lineage

    links = lineage(target, list(roots) or None, _trusted(trust))
    if as_json:
        _echo_json([asdict(x) for x in links])
        return
    for x in links:
        click.echo(f"{x.what:<8} {x.status:<12} {x.name}\n{'':<21}{x.detail}")
    if any(x.status == "MISMATCH" for x in links):
        raise click.exceptions.Exit(1)


COMMANDS = [
    ports_cmd,
    info_cmd,
    flash_cmd,
    rollback_cmd,
    activate_cmd,
    pair_cmd,
    stream_cmd,
    report_cmd,
    bench_cmd,
    lineage_cmd,
]
