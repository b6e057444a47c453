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

from qdev.device.errors import QdevError

__all__ = [
    "BUNDLE_FORMAT", "MANIFEST", "SIGNATURE", "BundleError", "VerifiedBundle", "key_id",
    "load_public_key", "load_private_key", "sha256_file", "sign_manifest", "verify_bundle", "file_entry",
    "pack_bundle", "unpack_bundle",
]

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"


class BundleError(QdevError):
    """A bundle is malformed, tampered with, or not signed by a trusted key."""


@dataclass
class VerifiedBundle:
    path: Path
    manifest: dict
    signer: str


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
    doc = {"alg": "ed25519", "key_id": key_id(_raw(private_key.public_key())),
           "signature": base64.b64encode(sig).decode()}
    return (json.dumps(doc, indent=1) + "\n").encode()


def _safe(name: str) -> bool:
    p = PurePosixPath(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and "\\" not in name and p.name == name


def verify_bundle(path: Path, trusted: list) -> VerifiedBundle:  # noqa: ANN001, C901
    """Verify a bundle folder against trusted Ed25519 public keys (key objects or PEM paths).

    Raises:
        BundleError: on any mismatch (see module doc).
    """
    import base64

    from cryptography.exceptions import InvalidSignature

    path = Path(path)
    mpath, spath = path / MANIFEST, path / SIGNATURE
    if not mpath.is_file():
        raise BundleError(f"{path}: no {MANIFEST}: not a bundle")
    if not spath.is_file():
        raise BundleError(f"{path}: unsigned bundle (no {SIGNATURE})")
    mbytes = mpath.read_bytes()
    try:
        sig = json.loads(spath.read_bytes())
        signature = base64.b64decode(sig["signature"], validate=True)
        kid = str(sig["key_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{spath}: malformed signature file") from exc
    keys = [load_public_key(k) if isinstance(k, (str, Path)) else k for k in trusted]
    if not keys:
        raise BundleError("no trusted keys: refusing to accept any bundle")
    by_id = {key_id(_raw(k)): k for k in keys}
    if kid not in by_id:
        raise BundleError(f"{path}: signed by key {kid}, which is not trusted")
    try:
        by_id[kid].verify(signature, mbytes)
    except InvalidSignature:
        raise BundleError(f"{path}: signature does not match {MANIFEST} (tampered manifest)") from None
    try:
        manifest = json.loads(mbytes)
    except ValueError as exc:
        raise BundleError(f"{mpath}: not JSON") from exc
    if manifest.get("format") != "qdev-bundle" or manifest.get("format_version") != BUNDLE_FORMAT:
        raise BundleError(f"{mpath}: not a qdev bundle of format {BUNDLE_FORMAT}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{mpath}: lists no files")
    for name, entry in files.items():
        if not _safe(name):
            raise BundleError(f"{mpath}: file name {name!r} escapes the bundle")
        f = path / name
        if not f.is_file():
            raise BundleError(f"{path}: {name} is listed but missing")
        if f.stat().st_size != entry.get("bytes") or sha256_file(f) != entry.get("sha256"):
            raise BundleError(f"{path}: {name} does not match its sha256 in the manifest")
    extra = sorted(p.name for p in path.iterdir() if p.name not in files and p.name not in (MANIFEST, SIGNATURE))
    if extra:
        raise BundleError(f"{path}: files not in the manifest: {', '.join(extra)}")
    return VerifiedBundle(path, manifest, kid)


def pack_bundle(path: Path) -> bytes:
    """A bundle folder as one uncompressed tar (flat, sorted, fixed metadata) for the link."""
    import io
    import tarfile

    path = Path(path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for f in sorted(p for p in path.iterdir() if p.is_file()):
            info = tarfile.TarInfo(f.name)
            info.size = f.stat().st_size
            info.mtime = 0
            info.mode = 0o644
            with open(f, "rb") as fh:
                tf.addfile(info, fh)
    return buf.getvalue()


def unpack_bundle(tar_path: Path, dest: Path, max_bytes: int) -> None:
    """Extract a bundle tar into the empty folder ``dest``: regular files with safe flat names only,
    total size bounded, every file fsynced.

    Raises:
        BundleError: not a tar, a member that is not a plain file or whose name escapes, too big.
    """
    import os
    import tarfile

    total = 0
    try:
        with tarfile.open(tar_path, mode="r:") as tf:
            for m in tf:
                if not m.isreg() or not _safe(m.name):
                    raise BundleError(f"bundle archive member {m.name!r} is not a plain file inside the bundle")
                total += m.size
                if total > max_bytes:
                    raise BundleError(f"bundle archive unpacks to more than {max_bytes} bytes")
                src = tf.extractfile(m)
                out = dest / m.name
                with open(out, "xb") as fh:
                    while chunk := src.read(1 << 20):
                        fh.write(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
    except (tarfile.TarError, EOFError) as exc:
        raise BundleError(f"not a bundle archive ({exc})") from exc
    except FileExistsError as exc:
        raise BundleError(f"bundle archive holds {exc.filename} twice") from exc
