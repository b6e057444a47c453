"""Mutually authenticated TLS 1.3 for the TCP link (stdlib ``ssl``), paired like SSH's
known_hosts: each side has a self-signed identity (ECDSA P-256 key + certificate, made with
``cryptography``), and each side pins the other's certificate. Nothing else is trusted: an
unpaired peer, or one presenting another certificate, fails the handshake and gets nothing.

* device: ``STORE/tls/device.{key,pem}``; paired hosts in ``STORE/tls/paired/<role>/<name>.pem``
  with ``role`` = ``viewer`` (INFO, STATS, POWER, WATCH, INFER, STREAM) or ``operator`` (also
  FLASH, ACTIVATE, ROLLBACK);
* host: ``$QDEV_HOME/tls/host.{key,pem}`` (default ``~/.qdev``); pinned devices in
  ``$QDEV_HOME/tls/devices/<name>.pem``.

Pairing copies certificates, never keys: ``qdev-device pair HOST.pem --role R`` on the device
(or at image build time), ``qdev pair DEVICE.pem`` on the host. Certificates are public; what
makes pairing safe is that the operator carries them over a channel they trust (the serial
console, a USB stick), as with an SSH host key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import ssl
from pathlib import Path

from qdev.core.errors import ConfigError

__all__ = [
    "ROLES",
    "make_identity",
    "server_context",
    "client_context",
    "peer_role",
    "peer_role_der",
    "fingerprint",
    "check_pinned",
    "check_pinned_der",
    "pin_name",
    "pair_host",
    "pin_device",
    "host_home",
    "host_identity",
    "device_identity",
    "pinned_devices",
    "paired_host",
]

ROLES = ("viewer", "operator")


def host_home() -> Path:
    return Path(os.environ.get("QDEV_HOME") or Path.home() / ".qdev")


def make_identity(folder: Path, stem: str, common_name: str) -> tuple[Path, Path]:
    """``folder/stem.key`` (0600) and ``folder/stem.pem``; made once, kept after."""
    key_p, cert_p = Path(folder) / f"{stem}.key", Path(folder) / f"{stem}.pem"
    if key_p.is_file() and cert_p.is_file():
        return key_p, cert_p
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    # a subject of its own: OpenSSL finds a trust anchor by subject, so two pinned identities that
    # shared one (every device was CN=qdev-device) made the second fail the handshake
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    name = x509.Name(
        [
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"{common_name} {hashlib.sha256(spki).hexdigest()[:16]}"
            )
        ]
    )
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        # its own trust anchor: OpenSSL accepts a pinned self-signed certificate as a CA
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_p.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_p, cert_p


def host_identity() -> tuple[Path, Path]:
    """This host's (key, certificate), made on first use."""
    return make_identity(host_home() / "tls", "host", f"qdev-host@{os.uname().nodename}")


def device_identity(store: Path) -> tuple[Path, Path]:
    """The device's (key, certificate) in its store, made on first use."""
    return make_identity(Path(store) / "tls", "device", "qdev-device")


def pinned_devices(device_name: str | None = None) -> list[Path]:
    """The device certificates this host has pinned (all, or the one named)."""
    pins = sorted((host_home() / "tls" / "devices").glob("*.pem"))
    return [p for p in pins if p.stem == device_name] if device_name else pins


def paired_host(store: Path, fp: str) -> tuple[str, Path] | None:
    """(role, certificate) of the paired host whose certificate has SHA-256 ``fp``, read now."""
    for role in ROLES:
        for p in sorted((Path(store) / "tls" / "paired" / role).glob("*.pem")):
            try:
                if fingerprint(_der(p)) == fp:
                    return role, p
            except (OSError, ValueError):
                continue  # a damaged pin matches nothing
    return None


def fingerprint(cert_der: bytes) -> str:
    return hashlib.sha256(cert_der).hexdigest()


def _der(pem_path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(Path(pem_path).read_text())


def pair_host(store: Path, cert: Path, role: str, name: str | None = None) -> Path:
    """Pin a host certificate on the device with ``role``."""
    if role not in ROLES:
        raise ConfigError(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    try:
        _der(cert)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{cert}: not a PEM certificate ({exc})") from exc
    name = _pin_name(cert, name)
    fp = fingerprint(_der(cert))
    for r in ROLES:  # one role per host: the same certificate (by fingerprint) or the same name
        for p in (Path(store) / "tls" / "paired" / r).glob("*.pem"):
            try:
                same = p.stem == name or fingerprint(_der(p)) == fp
            except (OSError, ValueError):
                same = p.stem == name
            if same:
                p.unlink(missing_ok=True)
    dst = Path(store) / "tls" / "paired" / role / f"{name}.pem"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(Path(cert).read_text())
    return dst


def _pin_name(cert: Path, name: str | None) -> str:
    """The pin's file name: the one given, else the file's stem and the certificate's fingerprint
    (every device's certificate file is device.pem, every host's host.pem: a stem alone made the
    second pin replace the first)."""
    if name:
        return re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{Path(cert).stem}-{fingerprint(_der(cert))[:12]}")


def pin_device(cert: Path, name: str | None = None) -> Path:
    """Pin a device certificate on this host (``$QDEV_HOME/tls/devices/<name>.pem``)."""
    try:
        _der(cert)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{cert}: not a PEM certificate ({exc})") from exc
    dst = host_home() / "tls" / "devices" / f"{_pin_name(cert, name)}.pem"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(Path(cert).read_text())
    return dst


def _paired(store: Path) -> dict[str, str]:
    """fingerprint -> role of every paired host."""
    out = {}
    for role in ROLES:
        for p in sorted((Path(store) / "tls" / "paired" / role).glob("*.pem")):
            out[fingerprint(_der(p))] = role
    return out


def server_context(store: Path) -> ssl.SSLContext:
    """TLS 1.3 only; the client must present a paired certificate."""
    key, cert = device_identity(store)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    pems = [
        p.read_text()
        for r in ROLES
        for p in sorted((Path(store) / "tls" / "paired" / r).glob("*.pem"))
    ]
    if pems:
        ctx.load_verify_locations(cadata="".join(pems))
    return ctx


def peer_role(store: Path, sock: ssl.SSLSocket) -> str | None:
    return peer_role_der(store, sock.getpeercert(binary_form=True))


def peer_role_der(store: Path, der: bytes | None) -> str | None:
    """The role the peer's certificate (DER) is paired with, by its fingerprint (None: unpaired)."""
    return _paired(store).get(fingerprint(der)) if der else None


def check_pinned(sock: ssl.SSLSocket, device_name: str | None = None) -> str:
    """The connected device's certificate fingerprint, which must be one this host pinned (the
    handshake checked the chain; this checks the exact certificate, whatever its subject)."""
    return check_pinned_der(sock.getpeercert(binary_form=True), device_name)


def check_pinned_der(der: bytes | None, device_name: str | None = None) -> str:
    """:func:`check_pinned` for a certificate in DER (a TLS connection over memory BIOs)."""
    fp = fingerprint(der) if der else ""
    pins = {fingerprint(_der(p)) for p in pinned_devices(device_name)}
    if fp not in pins:
        raise ConfigError("the device presented a certificate this host has not pinned")
    return fp


def pin_name(fp: str) -> str | None:
    """The name this host pinned the device with the certificate fingerprint ``fp`` under."""
    for p in pinned_devices():
        if fingerprint(_der(p)) == fp:
            return p.stem
    return None


def client_context(device_name: str | None = None) -> ssl.SSLContext:
    """TLS 1.3 only, this host's identity, trusting only pinned device certificates (all of them,
    or the one named)."""
    home = host_home() / "tls"
    key, cert = host_identity()
    pins = pinned_devices(device_name)
    if not pins:
        raise ConfigError(
            f"no paired device{' ' + device_name if device_name else ''}: "
            f"qdev pair DEVICE.pem first (pins in {home / 'devices'})"
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # identity is the pinned certificate, not a DNS name
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata="".join(p.read_text() for p in pins))
    ctx.load_cert_chain(cert, key)
    return ctx
