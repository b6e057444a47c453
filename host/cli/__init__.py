"""The `qdev` command line: a thin Click layer over the typed host/training API.

Every user error is a :class:`~device.errors.QdevError`; :class:`QdevGroup` maps it, in this one
place, to ``qdev: <message>`` on stderr and exit status 2.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import click

from qdev import __version__
from qdev.core.errors import QdevError

__all__ = ["main", "cli", "QdevGroup"]


class _UserError(click.ClickException):
    exit_code = 2

    def show(self, file=None) -> None:  # noqa: ANN001 - click's signature
        click.echo(f"qdev: {self.message}", err=True)


#: packages of the `workstation` extra (training, export, the FINN compile): a command that needs
#: one on a host-only install says which extra to install instead of a traceback
WORKSTATION_PACKAGES = ("torch", "brevitas", "qonnx", "finn", "onnx", "onnxscript")


class QdevGroup(click.Group):
    """Click group that turns any QdevError raised by a command into `qdev: ...`, exit 2."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201
        try:
            return super().invoke(ctx)
        except QdevError as exc:
            raise _UserError(str(exc)) from exc
        except ModuleNotFoundError as exc:
            top = (exc.name or "").split(".")[0]
            if top not in WORKSTATION_PACKAGES:
                raise
            cmd = ctx.invoked_subcommand or "this command"
            raise _UserError(
                f"'qdev {cmd}' needs the workstation extras ({top} is not installed): "
                "pip install 'qdev[workstation]' (the FINN compile: scripts/setup)"
            ) from exc
        except (
            click.BadParameter
        ) as exc:  # a missing path, a bad number: one line, not the usage text
            raise _UserError(exc.format_message()) from exc


@click.group(cls=QdevGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="qdev")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option(
    "-p",
    "--port",
    envvar="QDEV_PORT",
    default=None,
    help="Device port: serial device / pyserial URL, or tcp://HOST:PORT (env QDEV_PORT).",
)
@click.option(
    "-b", "--baud", envvar="QDEV_BAUD", default=921600, show_default=True, help="Serial baud rate."
)
@click.pass_context
def cli(ctx: click.Context, verbose: int, port: str | None, baud: int) -> None:
    """qdev: QuantU-Net from BUSI training to a low-power FPGA, deployed and measured."""
    ctx.obj = {"port": port, "baud": baud}
    from rich.logging import RichHandler

    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(message)s", handlers=[RichHandler(show_path=False)], force=True
    )


def _register() -> None:
    from qdev.host.cli.data import data
    from qdev.host.cli.train import evaluate_cmd, postprocess_cmd, train_cmd

    cli.add_command(data)
    cli.add_command(train_cmd)
    cli.add_command(evaluate_cmd)
    cli.add_command(postprocess_cmd)
    from qdev.host.cli.adapt import adapt_cmd

    cli.add_command(adapt_cmd)
    from qdev.host.cli.deploy import bundle, compile_cmd, export_cmd, keys

    for cmd in (export_cmd, compile_cmd, keys, bundle):
        cli.add_command(cmd)
    from qdev.host.cli.demo import demo_cmd
    from qdev.host.cli.device import COMMANDS

    for cmd in (*COMMANDS, demo_cmd):
        cli.add_command(cmd)


_register()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (``qdev``); returns the exit status so tests can call it."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="qdev")
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
