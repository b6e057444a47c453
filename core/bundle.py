"""Deployable bundles: ``manifest.json`` + files + a detached Ed25519 signature over the manifest.

Used on both sides: the workstation creates and signs bundles, the device (and ``qdev bundle
verify``) checks them. Verification refuses anything that does not match exactly: unknown format,
a file listed but missing, a file not listed, a size or sha256 mismatch, a path escaping the
bundle, a missing or invalid signature, or a signer that is not trusted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from qdev.core.errors import QdevError
from qdev.core.maskrule import MaskRule

__all__ = [
    "BUNDLE_FORMAT",
    "READABLE_FORMATS",
    "MANIFEST",
    "SIGNATURE",
    "BundleError",
    "VerifiedBundle",
    "key_id",
    "load_public_key",
    "load_private_key",
    "sha256_file",
    "sign_manifest",
    "verify_bundle",
    "file_entry",
    "pack_bundle",
    "unpack_bundle",
    "verify_manifest",
    "unpacked_bytes",
    "BOARD_NAMES",
    "board_name",
    "resign_bundle",
    "bundle_id",
]

#: The boards qdev builds for (training/compile/boards.py holds their parts and resources).
BOARD_NAMES = ("KV260", "ZCU104", "Ultra96-V2", "Pynq-Z2")


def board_name(name: str) -> str:
    """The canonical spelling of a board name (case-insensitive), or QdevError naming the
    choices."""
    for b in BOARD_NAMES:
        if b.lower() == str(name).lower():
            return b
    raise QdevError(f"unknown board {name!r}; choose one of {', '.join(BOARD_NAMES)}")


BUNDLE_FORMAT = 2  # what is built; 2 added the mask rule (core/maskrule.py) a runtime must apply
READABLE_FORMATS = (
    1,
    2,
)  # a runtime of format 1 refuses a format-2 bundle, so it never ignores a rule
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"


class BundleError(QdevError):
    """A bundle is malformed, tampered with, or not signed by a trusted key."""


@dataclass
class VerifiedBundle:
    path: Path
    manifest: dict
    signer: str


def bundle_id(manifest_bytes: bytes) -> str:
    """A bundle's id: the first 16 hex digits of its manifest's sha256 (what the device reports)."""
    return hashlib.sha256(manifest_bytes).hexdigest()[:16]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: Path) -> dict:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def key_id(public_raw: bytes) -> str:
    """Short id of an Ed25519 public key: first 16 hex digits of sha256(raw key)."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def load_public_key(path: Path):  # noqa: ANN201
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{path}: not an Ed25519 public key")
    return key


def load_private_key(path: Path):  # noqa: ANN201
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise BundleError(f"{path}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path}: not an Ed25519 private key")
    return key


def _raw(pub) -> bytes:  # noqa: ANN001
    from cryptography.hazmat.primitives import serialization

    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign_manifest(manifest_bytes: bytes, private_key) -> bytes:  # noqa: ANN001
    """Detached signature file content: JSON with the key id and the base64 signature."""
    import base64

    sig = private_key.sign(manifest_bytes)
    doc = {
        "alg": "ed25519",
        "key_id": key_id(_raw(private_key.public_key())),
        "signature": base64.b64encode(sig).decode(),
    }
    return (json.dumps(doc, indent=1) + "\n").encode()


def _safe(name: str) -> bool:
    p = PurePosixPath(name)
    return (
        bool(name)
        and not p.is_absolute()
        and ".." not in p.parts
        and "\\" not in name
        and p.name == name
    )


MAX_MANIFEST_BYTES = 48 << 10  # the shipped manifests are ~6 KB
MAX_SIGNATURE_BYTES = 4096


def _check_signature(mbytes: bytes, sbytes: bytes, trusted: list, where: str) -> str:
    """The signature file parses, names a trusted key, and that key signed ``mbytes``.

    Returns the signer's key id.
    """
    import base64

    from cryptography.exceptions import InvalidSignature

    try:
        sig = json.loads(sbytes)
        signature = base64.b64decode(sig["signature"], validate=True)
        kid = str(sig["key_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{where}: malformed signature file") from exc
    keys = [load_public_key(k) if isinstance(k, (str, Path)) else k for k in trusted]
    if not keys:
        raise BundleError(
            "no trusted keys: refusing to accept any bundle (on the device: "
            "qdev-device trust KEY.pub, or serve --trust KEY.pub)"
        )
    by_id = {key_id(_raw(k)): k for k in keys}
    if kid not in by_id:
        raise BundleError(f"{where}: signed by key {kid}, which is not trusted")
    try:
        by_id[kid].verify(signature, mbytes)
    except InvalidSignature:
        raise BundleError(
            f"{where}: signature does not match {MANIFEST} (tampered manifest)"
        ) from None
    return kid


def _check_files(manifest: dict, where: str) -> None:
    """The file list is non-empty, of safe names, each with an integer size and a sha256."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{where}: {MANIFEST} lists no files")
    for name, entry in files.items():
        if not _safe(name) or name in (MANIFEST, SIGNATURE):
            raise BundleError(f"{where}: file name {name!r} escapes the bundle")
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("bytes"), int)
            or entry["bytes"] < 0
            or not isinstance(entry.get("sha256"), str)
        ):
            raise BundleError(
                f"{where}: {MANIFEST} entry of {name} lacks an integer size or a sha256"
            )


def verify_manifest(
    mbytes: bytes, sbytes: bytes, trusted: list, where: str = "bundle"
) -> tuple[dict, str]:
    """Check a manifest and its detached signature (bytes, not files): size, signature by a
    trusted key, format, and a file list of safe names with integer sizes and sha256 strings.
    Returns (manifest, signer key id). Needs nothing on disk: the device runs it before an
    upload writes a byte.

    Raises:
        BundleError: on any mismatch.
    """
    if len(mbytes) > MAX_MANIFEST_BYTES or len(sbytes) > MAX_SIGNATURE_BYTES:
        raise BundleError(
            f"{where}: manifest or signature larger than any bundle's "
            f"({len(mbytes)}, {len(sbytes)} bytes)"
        )
    kid = _check_signature(mbytes, sbytes, trusted, where)  # nothing parsed before this
    try:
        manifest = json.loads(mbytes)
    except ValueError as exc:
        raise BundleError(f"{where}: {MANIFEST} is not JSON") from exc
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != "qdev-bundle"
        or manifest.get("format_version") not in READABLE_FORMATS
    ):
        raise BundleError(
            f"{where}: not a qdev bundle of format {' or '.join(map(str, READABLE_FORMATS))}"
        )
    try:  # a rule this runtime cannot apply exactly is refused here, before anything is installed
        rule = MaskRule.from_manifest(manifest.get("mask_rule"))
    except QdevError as exc:
        raise BundleError(f"{where}: {exc}") from None
    if manifest["format_version"] < 2 and not rule.is_default:
        raise BundleError(f"{where}: format 1 bundles carry only the default mask rule")
    _check_files(manifest, where)
    version = manifest.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise BundleError(f"{where}: version {version!r} is not a non-negative integer")
    return manifest, kid


def unpacked_bytes(manifest: dict) -> int:
    """What a bundle occupies once unpacked, by its signed sizes."""
    return sum(int(e["bytes"]) for e in manifest["files"].values())


def verify_bundle(path: Path, trusted: list) -> VerifiedBundle:  # noqa: ANN001
    """Verify a bundle folder against trusted Ed25519 public keys (key objects or PEM paths).

    Raises:
        BundleError: on any mismatch (see module doc).
    """
    path = Path(path)
    mpath, spath = path / MANIFEST, path / SIGNATURE
    if not mpath.is_file():
        raise BundleError(f"{path}: no {MANIFEST}: not a bundle")
    if not spath.is_file():
        raise BundleError(f"{path}: unsigned bundle (no {SIGNATURE})")
    manifest, kid = verify_manifest(mpath.read_bytes(), spath.read_bytes(), trusted, str(path))
    files = manifest["files"]
    for name, entry in files.items():
        f = path / name
        if not f.is_file():
            raise BundleError(f"{path}: {name} is listed but missing")
        if f.stat().st_size != entry.get("bytes") or sha256_file(f) != entry.get("sha256"):
            raise BundleError(f"{path}: {name} does not match its sha256 in the manifest")
    extra = sorted(
        p.name
        for p in path.iterdir()
        if p.name not in files and p.name not in (MANIFEST, SIGNATURE)
    )
    if extra:
        raise BundleError(f"{path}: files not in the manifest: {', '.join(extra)}")
    return VerifiedBundle(path, manifest, kid)


def pack_bundle(path: Path) -> bytes:
    """A bundle folder as one uncompressed tar for the link: the manifest and its signature
    first (so the device can check them before it unpacks anything), then the listed files in
    the manifest's order; fixed metadata."""
    import io
    import tarfile

    path = Path(path)
    for must in (MANIFEST, SIGNATURE):
        if not (path / must).is_file():
            raise BundleError(
                f"{path}: no {must}: " + ("not a bundle" if must == MANIFEST else "unsigned bundle")
            )
    try:
        names = [MANIFEST, SIGNATURE, *json.loads((path / MANIFEST).read_bytes()).get("files", {})]
    except (ValueError, AttributeError) as exc:
        raise BundleError(f"{path}: {MANIFEST} is not a bundle manifest ({exc})") from exc
    missing = [n for n in names if not (path / n).is_file()]
    if missing:
        raise BundleError(f"{path}: {', '.join(missing)} listed but missing")
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT
    ) as tf:  # plain ustar: tarstrict
        for name in names:
            f = path / name
            info = tarfile.TarInfo(name)
            info.size = f.stat().st_size
            info.mtime = 0
            info.mode = 0o644
            with open(f, "rb") as fh:
                tf.addfile(info, fh)
    return buf.getvalue()


def _read_exact(fh, m, limit: int) -> bytes:  # noqa: ANN001
    if m.size > limit:
        raise BundleError(f"bundle archive member {m.name!r} is not a small plain file")
    data = fh.read(m.size)
    if len(data) != m.size:
        raise BundleError(f"bundle archive member {m.name!r} is truncated")
    return data


def unpack_bundle(tar_path: Path, dest: Path, trusted: list, board: str | None = None) -> dict:  # noqa: ANN001, C901
    """Extract a bundle archive into the empty folder ``dest``, trusting nothing in it before its
    signed manifest is verified:

    1. the first two members must be ``manifest.json`` and its signature; they are read into
       memory and verified (signature by a trusted key, format, ``board``) before any file is
       written;
    2. every further member must be a plain file listed in the signed manifest, once, with the
       signed size; it is hashed while it streams to disk and must match the signed sha256;
    3. every listed file must be there. The bytes written are bounded by the signed sizes.

    The archive is read by :mod:`qdev.core.tarstrict` (fixed-width ustar headers of regular files
    only), never by ``tarfile``: no PAX header of unverified bytes is ever parsed.

    Returns the verified manifest.

    Raises:
        BundleError: the first failing check, with the member's name.
    """
    from qdev.core.tarstrict import TarError, members

    try:
        with open(tar_path, "rb") as raw:
            it = members(raw)
            head = []
            for want, limit in ((MANIFEST, MAX_MANIFEST_BYTES), (SIGNATURE, MAX_SIGNATURE_BYTES)):
                m = next(it, None)
                if m is None or m.name != want:
                    raise BundleError(
                        f"bundle archive does not start with {MANIFEST} and {SIGNATURE} "
                        "(unsigned, or packed by something other than qdev)"
                    )
                head.append(_read_exact(raw, m, limit))
            mbytes, sbytes = head
            manifest, _ = verify_manifest(mbytes, sbytes, trusted, "bundle archive")
            if board and manifest.get("board") != board:
                raise BundleError(
                    f"bundle is built for {manifest.get('board')}, this device is {board}"
                )
            files = manifest["files"]
            (dest / MANIFEST).write_bytes(mbytes)
            (dest / SIGNATURE).write_bytes(sbytes)
            seen: set[str] = set()
            for m in it:
                _extract_member(raw, m, files.get(m.name), seen, dest)
            missing = sorted(set(files) - seen)
            if missing:
                raise BundleError(f"bundle archive lacks {', '.join(missing)}")
    except TarError as exc:
        raise BundleError(f"not a bundle archive qdev accepts ({exc})") from exc
    return manifest


def _extract_member(raw, m, entry: dict | None, seen: set[str], dest: Path) -> None:  # noqa: ANN001
    """Stream one archive member to ``dest`` if the signed manifest lists it (once, at its size),
    hashing it on the way; a mismatching hash raises after the write (the caller's folder is
    temporary and dropped on any error)."""
    import os

    if entry is None or m.name in seen:
        raise BundleError(
            f"bundle archive member {m.name!r} is not in the signed manifest"
            + (" (twice)" if m.name in seen else "")
        )
    if m.size != entry["bytes"]:
        raise BundleError(
            f"bundle archive member {m.name!r}: {m.size} bytes, the manifest signs {entry['bytes']}"
        )
    seen.add(m.name)
    h, left = hashlib.sha256(), m.size
    with open(dest / m.name, "xb") as fh:
        while left:
            chunk = raw.read(min(left, 1 << 20))
            if not chunk:
                raise BundleError(f"bundle archive member {m.name!r} is truncated")
            left -= len(chunk)
            h.update(chunk)
            fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    if h.hexdigest() != entry["sha256"]:
        raise BundleError(f"bundle archive member {m.name!r} does not match its signed sha256")


def resign_bundle(src: Path, key_path: Path, trusted: list, out: Path) -> VerifiedBundle:
    """A copy of the bundle ``src`` at ``out`` signed with ``key_path``: ``src`` must verify against
    ``trusted`` first (every file's sha256 and its signature), its manifest is kept byte for byte
    (the bundle id a device sees does not change), only ``manifest.json.sig`` is new. The copy is
    built aside and moved into place whole; an existing ``out`` is refused."""
    import shutil

    from qdev.core.fsutil import FolderBuild

    vb = verify_bundle(src, trusted)
    key = load_private_key(key_path)
    out = Path(out)
    if out.exists():
        raise BundleError(f"{out}: exists; choose another --out")
    with FolderBuild(out.parent) as b:
        for name in [MANIFEST, *vb.manifest["files"]]:
            shutil.copy2(Path(src) / name, b.path / name)
        (b.path / SIGNATURE).write_bytes(sign_manifest((Path(src) / MANIFEST).read_bytes(), key))
        b.commit(out)
    return verify_bundle(out, [key.public_key()])
