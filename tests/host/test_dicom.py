"""`qdev export dicom`: DICOM SEG + TID 1500 SR of a session, checked by peers nobody here wrote:
dicom3tools' dciodvfy (every object), dcmtk (storescp as a C-STORE receiver, dcmdump), and Orthanc
with its DICOMweb plugin (STOW-RS in, QIDO-RS and WADO-RS out, compared bit for bit)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from qdev.host.cli import cli
from tests.netutil import free_port
from qdev.host.session import read_masks, read_session
from qdev.host.stream import StreamConfig, stream_to_session
from tests.host.dicom_helpers import write_us_cine

PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def _session(device, probe: str, out: Path, frames: int | None = None) -> Path:  # noqa: ANN001
    from qdev.core.probe.sources import open_probe
    from qdev.host.client import connect

    with connect(device.port) as c:
        stream_to_session(c, open_probe(probe), StreamConfig(out=out, max_frames=frames))
    return out


def _resize_nearest(m: np.ndarray, h: int, w: int) -> np.ndarray:
    ys = (np.arange(h) * m.shape[0] // h).clip(0, m.shape[0] - 1)
    xs = (np.arange(w) * m.shape[1] // w).clip(0, m.shape[1] - 1)
    return m[ys][:, xs]


def _dciodvfy_errors(path: Path) -> list[str]:
    r = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("Error")]


@pytest.fixture(scope="module")
def cine_session(flashed_device, tmp_path_factory):
    d = tmp_path_factory.mktemp("cine")
    src = write_us_cine(d / "cine.dcm", frames=6)
    return src, _session(flashed_device, str(d / "cine.dcm"), d / "session")


@pytest.fixture(scope="module")
def png_session(flashed_device, tmp_path_factory):
    d = tmp_path_factory.mktemp("png")
    (d / "frames").mkdir()
    for i in range(4):
        ds = write_us_cine(d / f"tmp{i}.dcm", frames=1, rows=90, cols=110, seed=i)
        Image.fromarray(np.frombuffer(ds.PixelData, np.uint8).reshape(90, 110)).save(
            d / "frames" / f"f{i}.png"
        )
    return _session(flashed_device, str(d / "frames"), d / "session")


def test_seg_and_sr_reference_the_dicom_source_and_pass_dciodvfy(cine_session, tmp_path):
    import pydicom

    src, session = cine_session
    out = tmp_path / "dicom"
    r = CliRunner().invoke(cli, ["export", "dicom", str(session), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["references"] == "source DICOM" and doc["segs"] == 6 and doc["images"] == 0
    manifest, _ = read_session(session)
    masks = read_masks(session, manifest)
    segs = sorted((out / "seg").glob("*.dcm"))
    assert len(segs) == 6
    for k, p in enumerate(segs):
        seg = pydicom.dcmread(p)
        assert seg.StudyInstanceUID == src.StudyInstanceUID and seg.PatientID == "P1"
        ref = (
            seg.PerFrameFunctionalGroupsSequence[0]
            .DerivationImageSequence[0]
            .SourceImageSequence[0]
        )
        assert (
            ref.ReferencedSOPInstanceUID == src.SOPInstanceUID
            and ref.ReferencedSOPClassUID == src.SOPClassUID
        )
        assert int(ref.ReferencedFrameNumber) == k + 1
        inst = seg.ReferencedSeriesSequence[0]
        assert inst.SeriesInstanceUID == src.SeriesInstanceUID
        assert "research use" in seg.SeriesDescription
        sd = seg.SegmentSequence[0]
        assert sd.SegmentedPropertyTypeCodeSequence[0].CodeValue == "52988006"
        assert sd.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
        assert sd.SegmentAlgorithmType == "AUTOMATIC"
        want = _resize_nearest(masks[k], int(src.Rows), int(src.Columns))
        assert np.array_equal(seg.pixel_array.astype(bool), want)
    sr = pydicom.dcmread(out / "SR.dcm")
    assert sr.StudyInstanceUID == src.StudyInstanceUID
    areas = _sr_areas(sr)
    # spacing from the cine's ultrasound region: 0.025 cm rows x 0.02 cm columns -> 0.05 mm^2 a
    # pixel
    want_areas = [float(_resize_nearest(masks[k], 120, 160).sum()) * 0.25 * 0.2 for k in range(6)]
    assert [a for a, _ in areas] == pytest.approx(want_areas) and {u for _, u in areas} == {"mm2"}
    if shutil.which("dciodvfy") is None:
        pytest.skip("dicom3tools' dciodvfy not installed (apt install dicom3tools)")
    for p in [*segs, out / "SR.dcm"]:
        assert _dciodvfy_errors(p) == [], p


def _sr_areas(sr) -> list[tuple[float, str]]:  # noqa: ANN001
    out = []

    def walk(items) -> None:  # noqa: ANN001
        for it in items:
            if (
                getattr(it, "ValueType", "") == "NUM"
                and it.ConceptNameCodeSequence[0].CodeMeaning == "Area"
            ):
                mv = it.MeasuredValueSequence[0]
                out.append((float(mv.NumericValue), mv.MeasurementUnitsCodeSequence[0].CodeValue))
            walk(getattr(it, "ContentSequence", []))

    walk(sr.ContentSequence)
    return out


def test_file_source_gets_secondary_capture_and_a_dcmtk_receiver_takes_all(png_session, tmp_path):
    if shutil.which("storescp") is None:
        pytest.skip("dcmtk not installed (apt install dcmtk)")
    port = free_port()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    scp = subprocess.Popen(
        ["storescp", "-od", str(inbox), "-aet", "STORESCP", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(0.5)
        r = CliRunner().invoke(
            cli,
            [
                "export",
                "dicom",
                str(png_session),
                "--out",
                str(tmp_path / "d"),
                "--pacs",
                f"dimse://STORESCP@127.0.0.1:{port}",
                "--json",
            ],
        )
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        assert doc["references"] == "secondary capture" and doc["images"] == 4 and doc["segs"] == 4
        assert doc["stored"][0]["sent"] == 9 and doc["stored"][0]["failed"] == []
    finally:
        scp.terminate()
        scp.wait(10)
    got = sorted(inbox.iterdir())
    assert len(got) == 9
    dump = subprocess.run(
        ["dcmdump", str(next(p for p in got if p.name.startswith("SG")))],
        capture_output=True,
        text=True,
    )
    assert "Segmentation" in dump.stdout and "lesion" in dump.stdout
    if shutil.which("dciodvfy"):
        for p in (tmp_path / "d").rglob("*.dcm"):
            assert _dciodvfy_errors(p) == [], p


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """(PEM of certificate + key for Orthanc, PEM of the certificate alone for the client)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cpem = cert.public_bytes(serialization.Encoding.PEM)
    kpem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    (folder / "server.pem").write_bytes(
        kpem + cpem
    )  # civetweb (Orthanc's server): key, then certificate
    (folder / "ca.pem").write_bytes(cpem)
    return folder / "server.pem", folder / "ca.pem"


@pytest.fixture(params=["http", "https"])
def orthanc(tmp_path, request):
    if shutil.which("Orthanc") is None or not PLUGIN.is_file():
        pytest.skip(
            "Orthanc with its DICOMweb plugin not installed (apt install orthanc orthanc-dicomweb)"
        )
    http, dimse = free_port(), free_port()
    tls = request.param == "https"
    cfg = {
        "Name": "qdev-test",
        "StorageDirectory": str(tmp_path / "db"),
        "IndexDirectory": str(tmp_path / "db"),
        "HttpPort": http,
        "DicomPort": dimse,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {"qdev": "s3cret-pw"},
        "Plugins": [str(PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "DicomCheckCalledAet": False,
    }
    (tmp_path / "orthanc.json").write_text(json.dumps(cfg))
    p = subprocess.Popen(
        ["Orthanc", str(tmp_path / "orthanc.json")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import requests

    for _ in range(100):
        try:
            if requests.get(
                f"http://127.0.0.1:{http}/system", auth=("qdev", "s3cret-pw"), timeout=1
            ).ok:
                break
        except requests.RequestException:
            time.sleep(0.1)
    else:
        p.kill()
        pytest.fail("Orthanc did not start")
    cred = tmp_path / "cred"
    cred.write_text("qdev:s3cret-pw\n")
    cred.chmod(0o600)
    port, ca, proxy = http, None, None
    if (
        tls
    ):  # Debian's Orthanc 1.10.1 serves https through civetweb, which segfaults after the handshake
        # with OpenSSL 3 here (civetweb#1316); TLS is terminated in front of it by OpenSSL (stdlib
        # ssl)
        server, ca = _self_signed(tmp_path)
        proxy = _TlsProxy(server, http)
        port = proxy.port
    yield {
        "url": f"{request.param}://127.0.0.1:{port}/dicom-web",
        "dimse": f"dimse://ORTHANC@127.0.0.1:{dimse}",
        "cred": cred,
        "http": http,
        "ca": ca,
    }
    if proxy is not None:
        proxy.close()
    p.terminate()
    p.wait(10)


class _TlsProxy:
    """TLS on 127.0.0.1:PORT (OpenSSL through stdlib ssl), forwarding plain bytes to Orthanc."""

    def __init__(self, pem: Path, target: int) -> None:
        import ssl
        import threading

        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pem)
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.port, self.target = self.ls.getsockname()[1], target
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import ssl
        import threading

        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            try:
                t = self.ctx.wrap_socket(c, server_side=True)
            except (ssl.SSLError, OSError):
                c.close()  # a client that refused our certificate
                continue
            u = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((t, u), (u, t)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b) -> None:  # noqa: ANN001
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.ls.close()


def test_orthanc_round_trip_is_bit_exact(cine_session, orthanc, tmp_path, monkeypatch):
    # requests lets this variable override a session's CA (psf/requests#3829): --ca must still hold
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    from dicomweb_client.api import DICOMwebClient

    src, session = cine_session
    out = tmp_path / "d"
    ca = ["--ca", str(orthanc["ca"])] if orthanc["ca"] else []
    if orthanc["ca"]:  # https: an unknown certificate is refused, one line, nothing half-stored
        r = CliRunner().invoke(
            cli,
            [
                "export",
                "dicom",
                str(session),
                "--out",
                str(tmp_path / "d0"),
                "--pacs",
                orthanc["url"],
                "--credentials",
                str(orthanc["cred"]),
            ],
        )
        assert r.exit_code == 2 and "TLS verification failed" in r.output
    r = CliRunner().invoke(
        cli,
        [
            "export",
            "dicom",
            str(session),
            "--out",
            str(out),
            "--pacs",
            orthanc["url"],
            "--credentials",
            str(orthanc["cred"]),
            *ca,
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["stored"][0]["sent"] == 7
    from qdev.host.pacs import pacs_session

    s = pacs_session(orthanc["ca"], ("qdev", "s3cret-pw"))
    client = DICOMwebClient(url=orthanc["url"], session=s)
    series = client.search_for_series(study_instance_uid=src.StudyInstanceUID)  # QIDO-RS
    by_modality = {x["00080060"]["Value"][0]: x["0020000E"]["Value"][0] for x in series}
    assert set(by_modality) == {"SEG", "SR"}
    segs = client.retrieve_series(src.StudyInstanceUID, by_modality["SEG"])  # WADO-RS
    manifest, _ = read_session(session)
    masks = read_masks(session, manifest)
    assert len(segs) == 6
    for seg in segs:
        k = (
            int(
                seg.PerFrameFunctionalGroupsSequence[0]
                .DerivationImageSequence[0]
                .SourceImageSequence[0]
                .ReferencedFrameNumber
            )
            - 1
        )
        assert np.array_equal(seg.pixel_array.astype(bool), _resize_nearest(masks[k], 120, 160))
    # wrong credentials: one line, exit 2, nothing stored twice
    bad = tmp_path / "bad"
    bad.write_text("qdev:wrong\n")
    bad.chmod(0o600)
    r = CliRunner().invoke(
        cli,
        [
            "export",
            "dicom",
            str(session),
            "--out",
            str(tmp_path / "d2"),
            "--pacs",
            orthanc["url"],
            "--credentials",
            str(bad),
            *ca,
        ],
    )
    assert (
        r.exit_code == 2 and "refused (401)" in r.output and len(r.output.strip().splitlines()) == 1
    )


def test_credentials_never_from_a_readable_file_or_clear_text_to_another_host(
    tmp_path, monkeypatch
):
    from qdev.core.errors import ConfigError
    from qdev.host.pacs import load_credentials, parse_target, store

    cred = tmp_path / "c"
    cred.write_text("u:p\n")
    cred.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_credentials(cred)
    cred.chmod(0o600)
    assert load_credentials(cred) == ("u", "p")
    monkeypatch.setenv("QDEV_PACS_USER", "env")
    monkeypatch.setenv("QDEV_PACS_PASSWORD", "pw")
    assert load_credentials(None) == ("env", "pw")
    with pytest.raises(ConfigError, match="use https"):
        store([cred], "http://pacs.example.org/dicom-web", cred)
    for bad in ("ftp://x", "dimse://host:104", "dimse://AE@host"):
        with pytest.raises(ConfigError):
            parse_target(bad)


def test_sessions_whose_pixels_are_gone_say_so(flashed_device, tmp_path):
    session = _session(flashed_device, "phantom", tmp_path / "s", frames=3)
    r = CliRunner().invoke(cli, ["export", "dicom", str(session), "--out", str(tmp_path / "d")])
    assert r.exit_code == 2 and "kept no pixels" in r.output
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


def test_a_dicom_dataset_reads_cine_frames_and_seg_masks_back(cine_session, tmp_path):
    """A dataset of DICOM images with DICOM SEG masks (here: the SEGs qdev exported from a session
    on that cine): every frame a record, its mask the SEG frame that references it, equal to the
    session's mask; a frame no SEG references is an error naming it."""
    from qdev.core.errors import DataError
    from qdev.training.data import DataOptions, open_dataset

    src, session = cine_session
    out = tmp_path / "export"
    assert (
        CliRunner().invoke(cli, ["export", "dicom", str(session), "--out", str(out)]).exit_code == 0
    )
    ds_root = tmp_path / "site"
    (ds_root / "images").mkdir(parents=True)
    shutil.copytree(out / "seg", ds_root / "masks")
    shutil.copy(
        Path(read_session(session)[0]["source"]["dicom"]["path"]),
        ds_root / "images" / "PAT_001.dcm",
    )
    a = open_dataset(ds_root, (120, 160), options=DataOptions(None, "^([A-Z]+)_"))
    assert a.kind == "pairs" and len(a) == 6 and a.patients == ["PAT"] * 6
    masks = read_masks(session, read_session(session)[0])
    for k in range(6):
        i = a.ids.index(next(x for x in a.ids if x.endswith(f"PAT_001#{k + 1}")))
        assert np.array_equal(a.masks[i], _resize_nearest(masks[k], 120, 160))
        assert a.ids[i].startswith("normal/") == (not masks[k].any())
    (ds_root / "masks" / "SEG00003.dcm").unlink()
    with pytest.raises(DataError, match="frame 3: no mask"):
        open_dataset(ds_root, (120, 160))


def test_a_datalist_of_dicom_frames_with_seg_masks(cine_session, tmp_path):
    from qdev.core.errors import DataError
    from qdev.training.data import open_dataset

    src, session = cine_session
    out = tmp_path / "export"
    assert (
        CliRunner().invoke(cli, ["export", "dicom", str(session), "--out", str(out)]).exit_code == 0
    )
    cine = Path(read_session(session)[0]["source"]["dicom"]["path"])
    rows = [
        {
            "image": str(cine),
            "frame": str(k + 1),
            "label": str(out / "seg" / f"SEG{k + 1:05d}.dcm"),
            "patient": "P1",
        }
        for k in range(6)
    ]
    lst = tmp_path / "list.json"
    lst.write_text(json.dumps(rows))
    a = open_dataset(lst, (120, 160))
    masks = read_masks(session, read_session(session)[0])
    assert len(a) == 6 and a.kind == "datalist"
    for k in range(6):
        assert np.array_equal(a.masks[k], _resize_nearest(masks[k], 120, 160))
    rows[0].pop("frame")
    lst.write_text(json.dumps(rows))
    with pytest.raises(DataError, match="needs a 'frame' column"):
        open_dataset(lst, (120, 160))
