"""Reports people look at: the gallery of overlays, the Dice histogram, real tables, the honest
energy split, the Parquet log beside the CSV, and the page as a browser renders it."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from qdev.host.cli import cli
from qdev.host.client import connect
from qdev.host.local import LocalDevice, default_bundle, default_trusted
from qdev.host.session import read_session
from tests.chromium import CHROMIUM, Browser


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    root = tmp_path_factory.mktemp("rep")
    with LocalDevice(root / "store") as dev:
        c = connect(dev.port)
        assert c.flash(default_bundle("KV260"), default_trusted())["activated"]
        c.close()
        r = CliRunner().invoke(
            cli,
            [
                "-p",
                dev.port,
                "stream",
                "--probe",
                "phantom:1",
                "--frames",
                "30",
                "--no-view",
                "--out",
                str(root / "s"),
                "--no-report",
            ],
        )
        assert r.exit_code == 0, r.output
    return root / "s"


def _csv(folder):
    return list(csv.DictReader(io.StringIO((folder / "frames.csv").read_text())))


def test_report_gallery_tables_histogram_and_energy_split(session, tmp_path):
    r = CliRunner().invoke(cli, ["report", str(session), "--out", str(tmp_path / "rep"), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)["sessions"][0]
    rows = [x for x in _csv(session) if x["status"] == "ok"]
    gal = {g["kind"]: g for g in s["gallery"]}
    assert set(gal) == {"first", "median mask", "largest mask", "best Dice", "worst Dice"}
    assert gal["first"]["frame_id"] == int(rows[0]["frame_id"])
    assert gal["largest mask"]["mask_area"] == max(int(x["mask_area"]) for x in rows)
    dices = [float(x["dice_vs_truth"]) for x in rows]
    assert round(gal["best Dice"]["dice"], 4) == max(dices) and round(
        gal["worst Dice"]["dice"], 4
    ) == min(dices)
    from PIL import Image

    for g in gal.values():
        im = Image.open(session / "gallery" / g["file"])
        assert im.size == (256, 256)  # the phantom's own size, not the model's 128
    # tables: the board from the flashed bundle (not the runtime's unset --board), the bundle, the
    # model
    t = s["tables"]
    assert t["board"]["board"] == "KV260" and t["bundle"]["id"] == s["device"]["bundle_id"]
    assert t["bundle"]["FINN-estimated rate (frames/s)"] > 0 and t["model"]["average bits"] > 0
    # energy: the software backend's figure says what it is; the FPGA figure is the estimate apart
    e, man = s["energy"], json.loads((session / "manifest.json").read_text())
    assert e["device"]["backend"] == "software" and any("CPU" in n for n in e["notes"])
    fps = man["device"]["store"]["active_bundle"]["estimated_fps"]
    assert e["fpga_estimate"]["mj_per_frame"] == pytest.approx(1e3 * man["power"]["active_w"] / fps)
    assert e["fpga_estimate"]["kind"] == "estimated"
    assert (tmp_path / "rep" / "dice_histogram.png").is_file()
    page = (tmp_path / "rep" / "report.html").read_text()
    assert (
        page.count("<figure><img src='data:image/png") >= 5 + 5
    )  # gallery and plots, self-contained
    assert "{'" not in page  # no Python dict reprs


def test_report_page_in_a_browser_shows_the_overlays(session, tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium not installed (apt-get install chromium; .ci/run installs it)")
    r = CliRunner().invoke(cli, ["report", str(session), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    with Browser(tmp_path / "chr", size=(1400, 900)) as br:
        br.open((tmp_path / "rep" / "report.html").as_uri())
        br.wait_for(
            "document.readyState === 'complete' && [...document.images].every((i) => i.complete)"
        )
        png = br.screenshot(tmp_path / "page.png")
    from PIL import Image

    a = np.asarray(Image.open(png).convert("RGB")).astype(int)
    green = (a[..., 1] > 200) & (a[..., 0] < 80) & (a[..., 2] < 80)
    magenta = (a[..., 0] > 200) & (a[..., 1] < 80) & (a[..., 2] > 200)
    assert (
        green.sum() > 100 and magenta.sum() > 50
    )  # mask contours and the truth's, in the first screen


def test_parquet_log_beside_the_csv_with_its_schema_and_fallbacks(session, tmp_path):
    import pyarrow.parquet as pq

    from qdev.host.session import parquet_schema

    t = pq.read_table(session / "frames.parquet")
    assert t.schema.equals(parquet_schema(), check_metadata=False) and t.num_rows == len(
        _csv(session)
    )
    man, rows = read_session(session)
    assert man["read_from"] == "frames.parquet"
    _, csv_rows = read_session(_copy(session, tmp_path / "csv-only", drop_parquet=True))
    assert len(rows) == len(csv_rows)
    for a, b in zip(rows, csv_rows):
        assert a["frame_id"] == b["frame_id"] and a["status"] == b["status"]
        assert a["mask_area"] == b["mask_area"] and a["rtt_ms"] == pytest.approx(b["rtt_ms"])
    # a damaged Parquet file: the CSV is read, and the report says so
    bad = _copy(session, tmp_path / "bad")
    (bad / "frames.parquet").write_bytes(b"PAR1 garbage")
    man, rows2 = read_session(bad)
    assert man["read_from"] == "frames.csv" and len(rows2) == len(rows)
    assert any("parquet" in w for w in man["read_warnings"])
    # an old session: no "logs" in its manifest, CSV only
    old = _copy(session, tmp_path / "old", drop_parquet=True)
    m = json.loads((old / "manifest.json").read_text())
    m.pop("logs")
    (old / "manifest.json").write_text(json.dumps(m))
    r = CliRunner().invoke(cli, ["report", str(old), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["sessions"][0]["frames"]["ok"] == 30


def _copy(src, dst, drop_parquet=False):
    shutil.copytree(src, dst)
    if drop_parquet:
        (dst / "frames.parquet").unlink()
    return dst


def test_device_supplied_text_is_escaped_in_the_report(session, tmp_path):
    """Strings the device reports (its backend's name) reach the page as text, never as markup."""
    import shutil

    s2 = tmp_path / "s"
    shutil.copytree(session, s2)
    man = json.loads((s2 / "manifest.json").read_text())
    man["device"]["backend"] = "<script>alert(1)</script>"
    (s2 / "manifest.json").write_text(json.dumps(man))
    r = CliRunner().invoke(cli, ["report", str(s2), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Research use, not for diagnosis" in page
