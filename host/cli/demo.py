"""``qdev demo``: the embedded default, on a fresh machine with nothing else.

Starts a device runtime in its own process (the best CPU backend: onnx where onnxruntime
imports, else the numpy software backend; an empty store trusting the
development key), flashes the shipped default bundle over TCP loopback, streams the phantom (or
the BUSI test split's images when a BUSI copy is found), and prints the report.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

__all__ = ["demo_cmd"]


def _busi_test_source(data: Path | None, required: bool):  # noqa: ANN202
    """The BUSI test split as a file source, by the one rule every command uses: ``--data``, else
    ``$QDEV_BUSI``, else ../shared/data/busi. A location that was given (--data, QDEV_BUSI) or a
    required one (--probe busi) must be right: a clear error, never a silent fallback. Returns
    None only when nothing was given and nothing was found."""
    import os

    from qdev.core.errors import DataError
    from qdev.core.probe.sources import ImageFolderSource
    from qdev.training.data.locate import find_default_busi, resolve_busi_root
    from qdev.training.data.split import read_split

    given = data if data is not None else os.environ.get("QDEV_BUSI")
    if given and Path(given).expanduser().is_file():
        raise DataError(
            f"{given}: a BUSI pack holds no source images; the demo streams the PNG folder "
            "(--data PATH/Dataset_BUSI_with_GT)"
        )
    if given or required:
        root = resolve_busi_root(data)
    else:
        root = find_default_busi()
        if root is None:
            return None
    from qdev import assets

    split = read_split(assets.split_file("busi-grouped-seed0.json"))
    files = [root / f"{i}.png" for i in split.ids["test"]]
    files = [f for f in files if f.is_file()]
    if not files:
        raise DataError(
            f"{root}: none of the BUSI test split's images is there (is it a BUSI copy?)"
        )
    return ImageFolderSource(files, f"BUSI test split ({len(files)} images, {root})")


@click.command("demo")
@click.option(
    "--probe",
    type=click.Choice(["auto", "phantom", "busi"]),
    default="auto",
    show_default=True,
    help="auto: BUSI test images when a BUSI copy is found, else the phantom.",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="BUSI copy to stream the test split of (default: $QDEV_BUSI, else ../shared/data/busi).",
)
@click.option("--frames", default=120, show_default=True, help="Frames to stream.")
@click.option("--board", default="KV260", show_default=True, help="Which shipped bundle to flash.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Session folder (default sessions/demo-<time>).",
)
@click.option(
    "--view",
    default="none",
    show_default=True,
    metavar="window|web[:PORT]|none",
    help="Live overlay: a desktop window, a browser view on 127.0.0.1:PORT, or none.",
)
@click.option(
    "--igtl", default=None, metavar="[HOST:]PORT", help="Also serve the session over OpenIGTLink."
)
@click.pass_context
def demo_cmd(
    ctx: click.Context,
    probe: str,
    data: Path | None,
    frames: int,
    board: str,
    out: Path | None,
    view: str,
    igtl: str | None,
) -> None:
    """Local device + default model: flash, stream live, report. No board, no training needed."""
    import time

    from qdev.core.errors import QdevError
    from qdev.core.probe.sources import open_probe
    from qdev.host.cli.device import stream_session
    from qdev.host.stream import StreamConfig
    from qdev.host.client import connect
    from qdev.host.cli.progress import progress_bar
    from qdev.host.local import LocalDevice, default_bundle, default_trusted
    from qdev.host.report import write_report

    bundle = default_bundle(board)
    if not (bundle / "manifest.json").is_file():
        raise QdevError(f"no shipped bundle for {board} at {bundle}")
    source = _busi_test_source(data, probe == "busi") if probe in ("auto", "busi") else None
    if source is None:
        if probe == "auto":
            click.echo(
                "no BUSI copy found (no --data, no QDEV_BUSI, no ../shared/data/busi): "
                "streaming the synthetic phantom instead"
            )
        source = open_probe("phantom")
    out = out or Path("sessions") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    with tempfile.TemporaryDirectory(prefix="qdev-demo-") as tmp:
        click.echo(f"starting a local device runtime (store {tmp}/store) ...")
        with LocalDevice(Path(tmp) / "store", backend="auto") as dev:
            with connect(dev.port) as c:
                click.echo(f"connected: {dev.port}, qdev-device {c.hello['device_version']}")
                with progress_bar(f"flash {board}/{bundle.name}") as cb:
                    res = c.flash(bundle, default_trusted(), progress=cb)
                st = res["self_test"]
                click.echo(
                    f"flashed {res['bundle_id']}: self-test {'passed' if st['ok'] else 'FAILED'} "
                    f"({st.get('frames')} golden frames, {st.get('codes_differing')} codes differ) "
                    f"on the {st.get('backend')} backend"
                )
                if not res["activated"]:
                    raise QdevError(res["message"])
                click.echo(f"streaming {source.name} ...")
                stream_session(
                    ctx,
                    source,
                    StreamConfig(None, 4, frames, 30.0, view, None, out, igtl=igtl),
                    True,
                    client=c,
                )
    rep = write_report(out)
    click.echo(f"report: {out / 'report' / 'report.html'} ({len(rep['plots'])} plots)")
