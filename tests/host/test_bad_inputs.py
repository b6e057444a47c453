"""Bad input to the host tool, as a user makes it: one ``qdev: ...`` line, exit 2, nothing
half-written; damaged session logs still report their good rows and name the bad ones."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
from click.testing import CliRunner

from qdev.host.cli import cli


def _run(*args: str):  # noqa: ANN202
    return CliRunner().invoke(cli, list(args))


def _png_header_only(path, w: int, h: int) -> None:  # noqa: ANN001
    """A PNG whose header claims w x h (a decompression bomb's calling card), no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_image_bomb_is_refused_before_anything_is_written(tmp_path):
    bomb = tmp_path / "bomb.png"
    _png_header_only(bomb, 30000, 30000)
    out = tmp_path / "session"
    r = _run(
        "-p", "tcp://127.0.0.1:9", "stream", "--probe", str(bomb), "--no-view", "--out", str(out)
    )
    assert r.exit_code == 2
    assert r.output.strip() == f"qdev: {bomb}: image is over the 64,000,000-pixel limit"
    # under Pillow's own bomb limit, ours still applies, with the size
    big = tmp_path / "big.png"
    _png_header_only(big, 10000, 8000)
    r = _run(
        "-p", "tcp://127.0.0.1:9", "stream", "--probe", str(big), "--no-view", "--out", str(out)
    )
    assert (
        r.exit_code == 2
        and r.output.strip() == f"qdev: {big}: 10000x8000 image is over the 64,000,000-pixel limit"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "args",
    [
        ("flash", "/no/such/bundle"),
        ("report", "/no/such/session"),
        ("bundle", "verify", "/no/such/bundle"),
    ],
)
def test_missing_paths_give_one_line(args):
    r = _run("-p", "tcp://127.0.0.1:9", *args)
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qdev: ") and "/no/such/" in lines[0]
    assert "does not exist" in lines[0] or "not a bundle" in lines[0]


def test_stream_of_a_missing_probe_file(tmp_path):
    r = _run(
        "-p",
        "tcp://127.0.0.1:9",
        "stream",
        "--probe",
        str(tmp_path / "nope.png"),
        "--no-view",
        "--out",
        str(tmp_path / "s"),
    )
    assert (
        r.exit_code == 2
        and r.output.startswith("qdev: ")
        and len(r.output.strip().splitlines()) == 1
    )
    assert not (tmp_path / "s").exists()


def test_truncated_and_garbled_session_log_reports_the_good_rows(tmp_path):
    from qdev.host.session import SessionWriter

    folder = tmp_path / "s"
    w = SessionWriter(folder, {"source": "test"})
    for i in range(10):
        w.row(
            {
                "frame_id": i,
                "status": "ok",
                "t_sent": 100.0 + i,
                "t_received": 100.05 + i,
                "rtt_ms": 50.0,
                "device_ms": 30.0,
                "power_w": 9.5,
                "energy_mj": 285.0,
                "energy_kind": "estimated",
                "mask_area": 10,
            }
        )
    w.close(summary={})
    (folder / "frames.parquet").unlink()  # as after a crash: the Parquet log is written at the end
    csv = folder / "frames.csv"
    lines = csv.read_text().splitlines()
    lines[4] = "garbage,\x00\x01,zz"  # a garbled line
    lines[6] = lines[6].replace(",ok,", ",okay,")  # an unknown status
    text = "\n".join(lines) + "\n"
    csv.write_text(text[: len(text) - 25])  # cut mid-row by a crash
    r = _run("report", str(folder), "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    s = doc["sessions"][0]
    assert s["frames"]["ok"] == 7
    bad = [x for x in s["warnings"] if x.startswith("frames.csv line")]
    assert [b.split(":")[0] for b in bad] == [
        "frames.csv line 5",
        "frames.csv line 7",
        "frames.csv line 11",
    ]
    assert (folder / "report" / "report.html").is_file()


@pytest.mark.parametrize(
    "args, needle",
    [
        (
            ("train", "--normal-weight", "0"),
            "--normal-weight 0.0: must be in (0, 100] (1: the paper's loss)",
        ),
        (
            ("train", "--normal-weight", "-3"),
            "--normal-weight -3.0: must be in (0, 100] (1: the paper's loss)",
        ),
        (
            ("train", "--out-range", "-1"),
            "--out-range -1.0: must be in [0, 64] (0: from statistics)",
        ),
        (("postprocess", "/no/such/run"), "/no/such/run: no such run folder"),
    ],
)
def test_training_options_and_runs_are_checked_first(args, needle, tmp_path):
    out = tmp_path / "run"
    extra = ("--out", str(out)) if args[0] == "train" else ()
    r = _run(*args, *extra)
    assert r.exit_code == 2 and r.output.strip() == f"qdev: {needle}"
    assert not out.exists()
