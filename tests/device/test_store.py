"""Bundle store: verified atomic installs, refusals, self-test gate, rollback."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest

from qdev.core.bundle import BundleError, pack_bundle
from qdev.device.runtime import DeviceRuntime, RuntimeConfig
from qdev.device.store import MAX_BUNDLE_BYTES, BundleStore, StoreError
from tests.device.helpers import (
    DEV_PUB,
    SHIPPED,
    broken_selftest_bundle,
    copy_bundle,
    make_key,
    resign,
)

pytestmark = pytest.mark.device_env


def _head(bundle: Path) -> tuple[bytes, bytes]:
    return (bundle / "manifest.json").read_bytes(), (bundle / "manifest.json.sig").read_bytes()


def _archive(bundle: Path, tmp: Path, name: str = "b.tar") -> Path:
    p = tmp / name
    p.write_bytes(pack_bundle(bundle))
    return p


@pytest.fixture()
def rt(tmp_path) -> DeviceRuntime:
    store = BundleStore(tmp_path / "store", allow_dev_key=True)
    store.trust(DEV_PUB)
    return DeviceRuntime(
        RuntimeConfig(
            store=str(tmp_path / "store"), backend="software", power="estimate", dev_key=True
        )
    )


def _by_version(*boards: str) -> list[tuple[str, Path]]:
    """Shipped bundles, oldest signature first (a device refuses to go down in version)."""
    ver = {b: json.loads((SHIPPED[b] / "manifest.json").read_text())["version"] for b in boards}
    return [(b, SHIPPED[b]) for b in sorted(boards, key=ver.get)]


def test_install_activates_after_self_test_and_keeps_previous(rt, tmp_path):
    (old, a), (_, b) = _by_version("KV260", "ZCU104")
    r1 = rt.store.install(_archive(a, tmp_path, "a.tar"), rt.self_test)
    assert r1.activated and r1.self_test["ok"] and r1.self_test["codes_differing"] == 0
    r2 = rt.store.install(_archive(b, tmp_path, "b.tar"), rt.self_test)
    assert r2.activated and r2.previous == r1.bundle_id
    assert rt.store.state() == {"active": r2.bundle_id, "previous": r1.bundle_id}
    back = rt.store.rollback(rt.self_test)
    assert back.activated and rt.store.state() == {"active": r1.bundle_id, "previous": r2.bundle_id}
    assert rt.store.active().manifest["board"] == old


def test_failed_self_test_keeps_the_old_bundle_active(rt, tmp_path):
    key, pub = make_key(tmp_path)
    rt.store.trust(pub)
    good = rt.store.install(_archive(SHIPPED["KV260"], tmp_path, "a.tar"), rt.self_test)
    bad = broken_selftest_bundle(tmp_path / "bad", key)
    res = rt.store.install(_archive(bad, tmp_path, "bad.tar"), rt.self_test)
    assert not res.activated and res.self_test["codes_differing"] >= 1
    assert "stays active" in res.message
    assert rt.store.state()["active"] == good.bundle_id
    assert not rt.store.bundle_dir(res.bundle_id).exists()  # the failed bundle is not kept


@pytest.mark.parametrize("damage", ["tamper_file", "tamper_manifest", "unsigned", "untrusted"])
def test_bad_bundles_are_refused_and_change_nothing(rt, tmp_path, damage):
    good = rt.store.install(_archive(SHIPPED["KV260"], tmp_path, "a.tar"), rt.self_test)
    b = copy_bundle(tmp_path / "b")
    if damage == "tamper_file":
        with open(b / "intmodel.npz", "r+b") as fh:
            fh.seek(100)
            byte = fh.read(1)
            fh.seek(100)
            fh.write(bytes([byte[0] ^ 0x01]))
    elif damage == "tamper_manifest":
        m = json.loads((b / "manifest.json").read_text())
        m["board"] = "Pynq-Z2"
        (b / "manifest.json").write_text(json.dumps(m))
    elif damage == "unsigned":
        (b / "manifest.json.sig").unlink()
    elif damage == "untrusted":
        key, _ = make_key(tmp_path)
        resign(b, key)
    before = sorted(p.name for p in (rt.store.root / "bundles").iterdir())
    with pytest.raises(BundleError):
        rt.store.install(_archive(b, tmp_path, "b.tar"), rt.self_test)
    assert rt.store.state()["active"] == good.bundle_id
    assert sorted(p.name for p in (rt.store.root / "bundles").iterdir()) == before


def test_wrong_board_and_escaping_paths_are_refused(tmp_path):
    store = BundleStore(tmp_path / "s", board="KV260", allow_dev_key=True)
    store.trust(DEV_PUB)
    rt = DeviceRuntime(
        RuntimeConfig(
            store=str(tmp_path / "s"),
            board="KV260",
            backend="software",
            power="estimate",
            dev_key=True,
        )
    )
    with pytest.raises(BundleError, match="built for ZCU104"):
        rt.store.install(_archive(SHIPPED["ZCU104"], tmp_path), rt.self_test)
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        src = tmp_path / "x"
        src.write_text("x")
        tf.add(src, arcname="../../escape.txt")
    with pytest.raises(
        BundleError, match="does not start with manifest.json|extension headers are refused"
    ):
        rt.store.install(evil, rt.self_test)
    assert not (tmp_path / "escape.txt").exists() and rt.store.state()["active"] is None


def test_upload_limits_crc_offsets_and_resume(rt, tmp_path):
    import hashlib
    import zlib

    data = pack_bundle(SHIPPED["KV260"])
    sha = hashlib.sha256(data).hexdigest()
    head = _head(SHIPPED["KV260"])
    with pytest.raises(StoreError, match="limit"):
        rt.store.begin_upload(sha, MAX_BUNDLE_BYTES + 1, *head)
    assert rt.store.begin_upload(sha, len(data), *head) == {"offset": 0}
    off = rt.store.write_chunk(sha, 0, data[:1000], zlib.crc32(data[:1000]))
    with pytest.raises(StoreError, match="CRC"):
        rt.store.write_chunk(sha, off, data[1000:2000], zlib.crc32(data[1000:2000]) ^ 1)
    with pytest.raises(StoreError, match="offset"):
        rt.store.write_chunk(sha, 5000, data[5000:6000], zlib.crc32(data[5000:6000]))
    # a new session resumes from what the device holds
    assert rt.store.begin_upload(sha, len(data), *head) == {"offset": 1000}
    off = 1000
    while off < len(data):
        piece = data[off : off + 65536]
        off = rt.store.write_chunk(sha, off, piece, zlib.crc32(piece))
    res = rt.store.finish_upload(sha, len(data), rt.self_test)
    assert res.activated
    assert not list((rt.store.root / "incoming").iterdir())


def test_full_disk_is_refused_before_anything_is_written(rt, tmp_path, monkeypatch):
    import shutil as sh
    from collections import namedtuple

    du = namedtuple("usage", "total used free")
    monkeypatch.setattr(sh, "disk_usage", lambda p: du(10 << 20, 10 << 20, 1 << 20))
    with pytest.raises(StoreError, match=r"device store full: need \d+\.\d MB, 1\.0 MB free"):
        rt.store.begin_upload("0" * 64, 4 << 20, *_head(SHIPPED["KV260"]))
    assert not list((rt.store.root / "incoming").iterdir())


def test_leftovers_of_a_killed_install_are_cleaned_on_open(rt, tmp_path):
    good = rt.store.install(_archive(SHIPPED["KV260"], tmp_path), rt.self_test)
    (rt.store.root / "bundles" / ".staging-dead").mkdir()
    (rt.store.root / "bundles" / "0123456789abcdef").mkdir()  # renamed, never activated
    (rt.store.root / ".state.json.x.tmp").write_text("{")  # atomic_writer's temp name
    s2 = BundleStore(rt.store.root, allow_dev_key=True)
    assert sorted(p.name for p in (s2.root / "bundles").iterdir()) == [good.bundle_id]
    assert s2.state()["active"] == good.bundle_id and s2.active() is not None
    assert not list(s2.root.glob("*.tmp"))


def test_folder_build_is_all_or_nothing(tmp_path):
    from qdev.core.fsutil import FolderBuild

    final = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with FolderBuild(tmp_path) as b:
            (b.path / "half").write_text("x")
            raise RuntimeError("killed half way")
    assert list(tmp_path.iterdir()) == []  # nothing half-built is left behind
    with FolderBuild(tmp_path) as b:
        (b.path / "a").write_text("new")
        assert b.commit(final) is True
    with FolderBuild(tmp_path) as b:  # already there, not replaced: the old one stays
        (b.path / "a").write_text("newer")
        assert b.commit(final, replace=False) is False
    assert (final / "a").read_text() == "new"
    with FolderBuild(tmp_path) as b:
        (b.path / "b").write_text("replacement")
        assert b.commit(final, replace=True, durable=True) is True
    assert sorted(p.name for p in final.iterdir()) == ["b"] and [
        p.name for p in tmp_path.iterdir()
    ] == ["out"]


def _evil_archive(tmp: Path, kind: str) -> Path:
    """The shipped bundle's signed head, followed by a member the signed manifest does not allow."""
    import io

    b = SHIPPED["KV260"]
    names = [
        "manifest.json",
        "manifest.json.sig",
        *json.loads((b / "manifest.json").read_text())["files"],
    ]
    out = tmp / f"evil-{kind}.tar"
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tf:
        for n in names[:2]:
            tf.add(b / n, arcname=n)
        if kind == "unlisted":
            data = b"echo pwned"
            info = tarfile.TarInfo("payload.sh")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        elif kind == "symlink":
            info = tarfile.TarInfo(names[2])
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tf.addfile(info)
        elif kind == "device":
            info = tarfile.TarInfo(names[2])
            info.type = tarfile.CHRTYPE
            tf.addfile(info)
        elif kind == "oversize":  # a listed name with more bytes than signed
            data = b"\0" * (
                json.loads((b / "manifest.json").read_text())["files"][names[2]]["bytes"] + 1
            )
            info = tarfile.TarInfo(names[2])
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        elif kind == "twice":
            for n in (names[2], names[2]):
                tf.add(b / n, arcname=n)
        elif kind == "swapped":  # right name and size, other bytes
            data = bytearray((b / names[2]).read_bytes())
            data[-1] ^= 1
            info = tarfile.TarInfo(names[2])
            info.size = len(data)
            tf.addfile(info, io.BytesIO(bytes(data)))
        elif kind == "missing":
            pass
    return out


@pytest.mark.parametrize(
    "kind, needle",
    [
        ("unlisted", "not in the signed manifest"),
        ("symlink", "not a plain file"),
        ("device", "not a plain file"),
        ("oversize", "the manifest signs"),
        ("twice", "(twice)"),
        ("swapped", "does not match its signed sha256"),
        ("missing", "lacks"),
    ],
)
def test_archive_members_are_checked_against_the_signed_manifest(rt, tmp_path, kind, needle):
    with pytest.raises(BundleError, match=re.escape(needle)):
        rt.store.install(_evil_archive(tmp_path, kind), rt.self_test)
    assert rt.store.state()["active"] is None
    assert [
        p.name for p in (rt.store.root / "bundles").iterdir()
    ] == []  # the staging folder is gone


def test_a_sparse_member_is_refused_before_it_is_expanded(rt, tmp_path):
    """A GNU sparse member claiming 200 MiB: refused from its header, nothing of it written."""
    b = SHIPPED["KV260"]
    out = tmp_path / "sparse.tar"
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tf:
        for n in ("manifest.json", "manifest.json.sig"):
            tf.add(b / n, arcname=n)
    name = next(iter(json.loads((b / "manifest.json").read_text())["files"]))
    hdr = bytearray(tarfile.TarInfo(name).tobuf(format=tarfile.GNU_FORMAT))
    hdr[156] = ord("S")  # GNUTYPE_SPARSE
    hdr[483:495] = b"%011o\0" % (200 << 20)  # realsize
    hdr[148:156] = b" " * 8
    hdr[148:156] = b"%06o\0 " % sum(hdr[:512])
    data = out.read_bytes()
    end = len(data) - 1024  # before the two zero blocks of the end
    while end > 0 and data[end - 512 : end] == b"\0" * 512:
        end -= 512
    out.write_bytes(data[:end] + bytes(hdr[:512]) + b"\0" * 2048)
    free0 = sum(f.stat().st_size for f in rt.store.root.rglob("*") if f.is_file())
    with pytest.raises(BundleError):
        rt.store.install(out, rt.self_test)
    assert sum(f.stat().st_size for f in rt.store.root.rglob("*") if f.is_file()) == free0


def test_an_unsigned_upload_is_refused_before_a_byte_is_stored(rt, tmp_path):
    m, sig = _head(SHIPPED["KV260"])
    with pytest.raises(BundleError, match="signature does not match"):
        rt.store.begin_upload("a" * 64, 10 << 20, m.replace(b"KV260", b"ZCU104"), sig)
    with pytest.raises(BundleError, match="malformed signature"):
        rt.store.begin_upload("a" * 64, 10 << 20, m, b"{}")
    assert list((rt.store.root / "incoming").iterdir()) == []


def test_reflash_of_an_installed_bundle_uploads_nothing(rt, tmp_path):
    import hashlib

    rt.store.install(_archive(SHIPPED["KV260"], tmp_path), rt.self_test)
    data = pack_bundle(SHIPPED["KV260"])
    res = rt.store.begin_upload(
        hashlib.sha256(data).hexdigest(), len(data), *_head(SHIPPED["KV260"])
    )
    assert res == {"installed": rt.store.state()["active"]}
    assert list((rt.store.root / "incoming").iterdir()) == []


def test_rollback_protection_refuses_older_versions_unless_allowed(rt, tmp_path):
    key, pub = make_key(tmp_path)
    rt.store.trust(pub)
    v1 = resign(copy_bundle(tmp_path / "v1"), key, run_id="v1", version=100)
    v2 = resign(copy_bundle(tmp_path / "v2"), key, run_id="v2", version=200)
    v0 = resign(copy_bundle(tmp_path / "v0"), key, run_id="v0", version=50)
    r1 = rt.store.install(_archive(v1, tmp_path, "1.tar"), rt.self_test)
    r2 = rt.store.install(_archive(v2, tmp_path, "2.tar"), rt.self_test)
    assert r1.activated and r2.activated and rt.store.max_version() == 200
    with pytest.raises(StoreError, match="older than version 200.*--allow-downgrade"):
        rt.store.install(_archive(v0, tmp_path, "0.tar"), rt.self_test)
    with pytest.raises(StoreError, match="older than version 200"):
        rt.store.check_update(*_head(v0))  # decided at FLASH_BEGIN, before the upload
    # ROLLBACK goes to the recorded previous bundle (v1): allowed, the one sanctioned step back
    assert rt.store.rollback(rt.self_test).activated and rt.store.state()["active"] == r1.bundle_id
    r0 = rt.store.install(_archive(v0, tmp_path, "0.tar"), rt.self_test, allow_downgrade=True)
    assert r0.activated and rt.store.max_version() == 200  # the floor never sinks


def test_uploads_past_the_declared_size_and_bad_hashes_leave_nothing(rt, tmp_path):
    """A chunk past FLASH_BEGIN's declared size is refused at once and the upload discarded (it
    used to be accepted up to the 256 MiB cap and left on disk); a sha256 mismatch leaves no
    .part and no .head either."""
    import hashlib
    import zlib

    data = pack_bundle(SHIPPED["KV260"])
    sha = hashlib.sha256(data).hexdigest()
    head = _head(SHIPPED["KV260"])
    incoming = rt.store.root / "incoming"
    rt.store.begin_upload(sha, len(data), *head)
    off = rt.store.write_chunk(sha, 0, data, zlib.crc32(data))
    extra = b"x" * 4096
    with pytest.raises(StoreError, match="past its declared size"):
        rt.store.write_chunk(sha, off, extra, zlib.crc32(extra))
    assert not list(incoming.iterdir())
    # a declared size smaller than what is sent: refused at the chunk that crosses it
    rt.store.begin_upload(sha, 1000, *head)
    with pytest.raises(StoreError, match="declared size of 1000"):
        rt.store.write_chunk(sha, 0, data[:4096], zlib.crc32(data[:4096]))
    assert not list(incoming.iterdir())
    # every byte right but the wrong bytes: the hash check discards both files
    wrong = bytearray(data)
    wrong[-1] ^= 1
    rt.store.begin_upload(sha, len(data), *head)
    rt.store.write_chunk(sha, 0, bytes(wrong), zlib.crc32(bytes(wrong)))
    with pytest.raises(StoreError, match="does not match its sha256"):
        rt.store.finish_upload(sha, len(data), rt.self_test)
    assert not list(incoming.iterdir())


def test_a_crafted_pax_header_is_refused_without_parsing_it(rt, tmp_path):
    """CVE-2024-6232: CPython 3.11.7's tarfile spends quadratic time on a crafted PAX header (a
    131,072-digit one froze the device for 23 s). The store's reader never hands unverified
    bytes to tarfile: such a header is refused by its type, in bounded time, and nothing is
        written."""
    import time as _time

    from qdev.core.tarstrict import BLOCK

    payload = b"1" * 131072
    hdr = bytearray(BLOCK)
    hdr[0:14] = b"././@PaxHeader"
    hdr[100:107] = b"0000644"
    hdr[124:135] = b"%011o" % (len(payload) + 20)
    hdr[156:157] = b"x"
    hdr[257:263] = b"ustar\0"
    hdr[148:156] = b" " * 8
    hdr[148:155] = b"%06o\0" % sum(hdr)
    evil = tmp_path / "pax.tar"
    evil.write_bytes(bytes(hdr) + b"%d path=" % len(payload) + payload + bytes(BLOCK * 300))
    t0 = _time.perf_counter()
    with pytest.raises(BundleError, match="extension headers are refused"):
        rt.store.install(evil, rt.self_test)
    assert _time.perf_counter() - t0 < 2.0
    assert rt.store.state()["active"] is None and not list(
        (rt.store.root / "bundles").glob("[0-9a-f]*")
    )


def test_the_strict_reader_refuses_damaged_headers(tmp_path):
    from qdev.core.tarstrict import BLOCK, TarError, members

    good = pack_bundle(SHIPPED["KV260"])
    import io

    names = [m.name for m in members(io.BytesIO(good))]
    assert names[:2] == ["manifest.json", "manifest.json.sig"] and "intmodel.npz" in names
    bad = bytearray(good)
    bad[130] ^= 0x01  # a size digit: the checksum no longer matches
    with pytest.raises(TarError, match="checksum"):
        list(members(io.BytesIO(bytes(bad))))
    with pytest.raises(TarError, match="truncated"):
        list(members(io.BytesIO(good[: BLOCK + 100])))
