"""Authenticated, encrypted frames for links without TLS (the serial console), protocol version 2.

Keys come from the pairing that TLS already uses (:mod:`qdev.core.tls`), so one ``qdev pair`` /
``qdev-device pair`` covers both transports and no secret is ever copied:

* **Pairing secret**: static ECDH (P-256) between this side's identity key and the peer's pinned
  certificate. Only the two paired parties can compute it.
* **Session keys** (HKDF-SHA256, 32 bytes each, one per direction):
  ``k_dh = HKDF(secret, salt=n_h, info="qdev v2 device->host")`` and
  ``k_hd = HKDF(secret, salt=n_h || n_d, info="qdev v2 host->device")``, with the host's nonce
  ``n_h`` (in HELLO) and the device's ``n_d`` (inside the sealed HELLO_ACK). A recorded session
  replayed to the device fails because ``n_d`` is new; one replayed to a host fails because
  ``n_h`` is new.
* **Per frame**: AES-256-GCM; nonce = 4-byte direction label || u64 sequence number; associated
  data = the frame header's magic, version, type and sequence number. The receiver accepts only
  sequence numbers above the last one it accepted (the replay counter); a sender refuses to wrap.

What this does not protect (docs/PROTOCOL.md says the same): a peer on the wire can still drop,
delay or garble frames (denial of service); a stolen identity key impersonates its owner until it
is unpinned; there is no forward secrecy (the secret is static: whoever later steals a key and kept
a recording can decrypt it); frame sizes and timing stay visible.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from qdev.core.errors import QdevError

__all__ = ["AuthError", "Sealer", "Opener", "NONCE_BYTES", "shared_secret", "device_keys", "host_keys",
           "host_opener", "new_nonce", "cert_fingerprint"]

NONCE_BYTES = 16
_H2D, _D2H = b"h->d", b"d->h"
_TAG = 16


class AuthError(QdevError):
    """A sealed frame that does not authenticate, or one replayed."""


def new_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


def cert_fingerprint(pem_path: Path) -> str:
    import ssl

    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(Path(pem_path).read_text())).hexdigest()


def shared_secret(own_key_pem: Path, peer_cert_pem: Path) -> bytes:
    """Static ECDH between our identity key and the peer's pinned certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(Path(own_key_pem).read_bytes(), password=None)
    peer = x509.load_pem_x509_certificate(Path(peer_cert_pem).read_bytes()).public_key()
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(peer, ec.EllipticCurvePublicKey):
        raise QdevError("link authentication needs EC (P-256) identities on both sides")
    return key.exchange(ec.ECDH(), peer)


def _hkdf(secret: bytes, salt: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(secret)


def _k_dh(secret: bytes, n_h: bytes) -> bytes:
    return _hkdf(secret, n_h, b"qdev v2 device->host")


def _k_hd(secret: bytes, n_h: bytes, n_d: bytes) -> bytes:
    return _hkdf(secret, n_h + n_d, b"qdev v2 host->device")


@dataclass
class _Direction:
    """One direction's key, nonce label and sequence counter."""

    key: bytes
    label: bytes
    last_seq: int = -1

    def __post_init__(self) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(self.key)

    def _nonce(self, seq: int) -> bytes:
        return self.label + struct.pack("<Q", seq)


class Sealer(_Direction):
    """Encrypts and authenticates the frames one side sends."""

    def seal(self, seq: int, ad: bytes, plaintext: bytes) -> bytes:
        if seq <= self.last_seq:  # a wrapped or reused sequence number would reuse a GCM nonce
            raise AuthError("link sequence number exhausted: start a new session (HELLO)")
        self.last_seq = seq
        return self._aead.encrypt(self._nonce(seq), plaintext, ad)


class Opener(_Direction):
    """Checks and decrypts the frames one side receives; refuses replays."""

    def open(self, seq: int, ad: bytes, sealed: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        if len(sealed) < _TAG:
            raise AuthError("sealed frame shorter than its tag")
        try:
            out = self._aead.decrypt(self._nonce(seq), sealed, ad)
        except InvalidTag:
            raise AuthError("frame does not authenticate") from None
        if seq <= self.last_seq:  # checked after the tag: a forged seq cannot move the counter
            raise AuthError(f"replayed frame (seq {seq}, last accepted {self.last_seq})")
        self.last_seq = seq
        return out


def device_keys(secret: bytes, n_h: bytes, n_d: bytes) -> tuple[Sealer, Opener]:
    """The device's (sender, receiver) for a session."""
    return Sealer(_k_dh(secret, n_h), _D2H), Opener(_k_hd(secret, n_h, n_d), _H2D)


def host_opener(secret: bytes, n_h: bytes) -> Opener:
    """What the host opens HELLO_ACK with (before it knows ``n_d``)."""
    return Opener(_k_dh(secret, n_h), _D2H)


def host_keys(secret: bytes, n_h: bytes, n_d: bytes, opener: Opener) -> tuple[Sealer, Opener]:
    """The host's (sender, receiver) once HELLO_ACK has told it ``n_d``."""
    return Sealer(_k_hd(secret, n_h, n_d), _H2D), opener
