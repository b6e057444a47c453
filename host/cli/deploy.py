"""`qdev export`, `qdev compile`, `qdev keys generate`, `qdev bundle create|verify`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from qdev.host.cli.dcopts import build_config, config_options
from qdev.training.compile.config import CompileConfig

__all__ = ["export_cmd", "compile_cmd", "keys", "bundle"]


class _ExportGroup(click.Group):
    """``qdev export RUN`` (the model, as before) and ``qdev export dicom SESSION``: a first
    argument that is no subcommand is the run of ``qdev export run``."""

    def resolve_command(self, ctx: click.Context, args: list[str]):  # noqa: ANN201
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)


@click.group("export", cls=_ExportGroup, invoke_without_command=False)
def export_cmd() -> None:
    """Export a run's model to QONNX (qdev export RUN) or a session's results as DICOM
    (qdev export dicom SESSION)."""


@export_cmd.command("run")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--data", default=None, help="BUSI location for the golden batch (else the run's).")
@click.option("--golden", default=4, show_default=True, help="Golden batch size.")
@click.option(
    "--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True
)
@click.option("--json", "as_json", is_flag=True)
def export_run_cmd(
    run: Path, data: str | None, golden: int, checkpoint: str, as_json: bool
) -> None:
    """Export a run's best checkpoint to QONNX and verify it against PyTorch."""
    from qdev.training.export import export_run

    rep = export_run(run, data, golden, checkpoint)
    if as_json:
        click.echo(json.dumps(rep, indent=1))
        return
    click.echo(
        f"{run}/export/model.qonnx.onnx: integer outputs equal to PyTorch on {rep['n_golden']} "
        "golden "
        f"images ({rep['codes_differing']} codes differ, max float "
        f"diff {rep['max_abs_float_diff']:.2e})"
    )


@export_cmd.command("dicom")
@click.argument("session", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder for the DICOM files.",
)
@click.option(
    "--pacs",
    "targets",
    multiple=True,
    metavar="URL",
    help="Also store them: http(s)://HOST/.../dicom-web (STOW-RS) or dimse://CALLED_AE@HOST:PORT "
    "(C-STORE).",
)
@click.option(
    "--credentials",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="File with user:password for the PACS (else $QDEV_PACS_USER / $QDEV_PACS_PASSWORD).",
)
@click.option(
    "--ca",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="CA certificate bundle to verify an https PACS.",
)
@click.option(
    "--patient-id",
    default="QDEV-ANON",
    show_default=True,
    help="Patient ID of the new study (non-DICOM sources; a DICOM source keeps its own).",
)
@click.option("--json", "as_json", is_flag=True)
def export_dicom_cmd(
    session: Path,
    out: Path,
    targets: tuple[str, ...],
    credentials: Path | None,
    ca: Path | None,
    patient_id: str,
    as_json: bool,
) -> None:
    """A session's masks as DICOM SEG and its lesion areas as a TID 1500 SR (referencing the
    source DICOM, or new secondary-capture images of file sources); optionally stored in a PACS."""
    from qdev.host.dicom_export import export_session_dicom
    from qdev.host.pacs import parse_target, store

    for t in targets:
        parse_target(t)  # a bad URL costs nothing
    res = export_session_dicom(session, out, patient_id=patient_id)
    stored = [store(res.files, t, credentials, ca) for t in targets]
    doc = {
        "out": str(res.out),
        "frames": res.frames,
        "references": res.referenced,
        "segs": len(res.segs),
        "images": len(res.images),
        "sr": str(res.sr),
        "study_uid": res.study_uid,
        "seg_series_uid": res.seg_series_uid,
        "sr_uid": res.sr_uid,
        "stored": [{"target": s.target, "sent": s.sent, "failed": s.failed} for s in stored],
    }
    if as_json:
        click.echo(json.dumps(doc, indent=1))
        return
    click.echo(
        f"wrote {out}: {len(res.segs)} SEG, 1 SR"
        + (f", {len(res.images)} secondary-capture images" if res.images else "")
        + f" for {res.frames} frames, referencing the {res.referenced}; study {res.study_uid}"
    )
    for s in stored:
        click.echo(
            f"stored at {s.target}: {s.sent} sent"
            + (f", {len(s.failed)} FAILED" if s.failed else "")
        )
    if any(s.failed for s in stored):
        raise click.exceptions.Exit(1)


@click.command("compile")
@click.argument("run", type=click.Path(path_type=Path))
@config_options(CompileConfig)
@click.option("--json", "as_json", is_flag=True, help="Print the compile summary as JSON.")
def compile_cmd(run: Path, as_json: bool, **values: object) -> None:
    """Compile a run's QONNX model with FINN for a board: estimates, integer model, bitstream
    (Vivado)."""
    import contextlib
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from qdev.host.compile_summary import print_compile_summary
    from qdev.training.compile.builder import compile_run

    cfg = build_config(CompileConfig, values)
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    con = Console(stderr=True)
    with Progress(*columns, console=con, disable=as_json, transient=True) as prog:
        task = prog.add_task("compile", total=None)

        def cb(step: str, i: int, n: int) -> None:
            shown = f"[{i + 1}/{n}] {step}" if step != "done" else "done"
            prog.update(task, description=shown, completed=i, total=n)

        with contextlib.redirect_stdout(sys.stderr):  # FINN logs to stdout; stdout is for results
            res = compile_run(run, cfg, cb)
    if as_json:
        click.echo(json.dumps(res, indent=1))
        return
    print_compile_summary(res)


@click.group()
def keys() -> None:
    """Ed25519 signing keys for bundles."""


@keys.command("generate")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--name", default="qdev", show_default=True)
def keys_generate(out: Path, name: str) -> None:
    """Write NAME.key (private, 0600) and NAME.pub into OUT."""
    from qdev.core.bundle import key_id, load_public_key
    from qdev.training.compile.bundle_build import generate_keypair

    k, p = generate_keypair(out, name)
    from cryptography.hazmat.primitives import serialization

    raw = load_public_key(p).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    click.echo(f"wrote {k} and {p} (key id {key_id(raw)})")


@click.group()
def bundle() -> None:
    """Signed deployment bundles (bitstreams/<board>/<model>/)."""


@bundle.command("create")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--board", required=True)
@click.option(
    "--key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Private signing key.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Default: inside the run, RUN/bundle/<board> (then qdev bundle publish copies it out).",
)
@click.option("--model-name", default=None)
@click.option(
    "--allow-unoffered",
    is_flag=True,
    help="Bundle an adapted run (qdev adapt) that did not beat its base on the site's validation "
    "patients.",
)
def bundle_create(
    run: Path,
    board: str,
    key: Path,
    out: Path | None,
    model_name: str | None,
    allow_unoffered: bool,
) -> None:
    """Bundle a compiled run for a board and sign its manifest (an adapted run's bundle records
    its base, the site's data hash, the split and the decision)."""
    from qdev.training.compile.boards import get_board
    from qdev.training.compile.bundle_build import build_bundle

    b = get_board(board).name
    out = out or run / "bundle" / b
    path = build_bundle(run, b, key, out, model_name, allow_unoffered)
    click.echo(f"wrote {path}")


@bundle.command("publish")
@click.argument("run", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--board", required=True)
@click.option(
    "--to",
    "dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Default bitstreams/<board>/<model>.",
)
def bundle_publish(run: Path, board: str, dest: Path | None) -> None:
    """Copy a run's bundle (qdev bundle create) out of the run, each file checked against the hash
    the bundle stage recorded."""
    from qdev.training.compile.boards import get_board
    from qdev.training.compile.bundle_build import publish_bundle
    from qdev.training.runs import RunFolder

    b = get_board(board).name
    if dest is None:
        model = (RunFolder(run).stage(f"bundle/{b}").get("config") or {}).get("model") or run.name
        dest = Path("bitstreams") / b / model
    click.echo(f"published {publish_bundle(run, b, dest)}")


@bundle.command("sign")
@click.argument("path", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Your private signing key (qdev keys generate).",
)
@click.option(
    "--trusted",
    "trusted",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Key the bundle must verify against first (repeatable). Default: the development key.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder for the re-signed copy (must not exist).",
)
def bundle_sign(path: Path, key: Path, trusted: tuple[str, ...], out: Path) -> None:
    """Re-sign a verified bundle (e.g. a shipped one) with your own key, for devices that trust
    it."""
    from qdev import assets
    from qdev.core.bundle import resign_bundle

    vb = resign_bundle(path, key, list(trusted) or [str(k) for k in assets.dev_public_keys()], out)
    click.echo(
        f"{out}: signed by {vb.signer}; {vb.manifest['board']} / {vb.manifest['model']}, manifest "
        "unchanged "
        f"(verified first against {', '.join(trusted) or 'the development key'})"
    )


@bundle.command("verify")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--trusted",
    "trusted",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Trusted public key (repeatable). Default: the development key.",
)
@click.option("--json", "as_json", is_flag=True)
def bundle_verify(path: Path, trusted: tuple[str, ...], as_json: bool) -> None:
    """Check a bundle's signature and every file's sha256; refuses any mismatch."""
    from qdev import assets
    from qdev.core.bundle import verify_bundle
    from qdev.core.maskrule import MaskRule

    keys_ = list(trusted) or [str(k) for k in assets.dev_public_keys()]
    vb = verify_bundle(path, keys_)
    m = vb.manifest
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": True,
                    "signer": vb.signer,
                    "board": m["board"],
                    "model": m["model"],
                    "estimate_only": m["estimate_only"],
                    "files": sorted(m["files"]),
                    "mask_rule": MaskRule.from_manifest(m.get("mask_rule")).to_dict(),
                },
                indent=1,
            )
        )
        return
    click.echo(
        f"{path}: OK, signed by {vb.signer}; {m['board']} / {m['model']}; {len(m['files'])} files "
        "verified"
        + ("; estimate-only (no bitstream)" if m["estimate_only"] else "")
        + f"; masks: {MaskRule.from_manifest(m.get('mask_rule')).describe()}"
    )
