"""Send DICOM objects to a PACS: DICOMweb STOW-RS (``http(s)://HOST/.../dicom-web``, with
``dicomweb-client``) or DIMSE C-STORE (``dimse://CALLED_AE@HOST:PORT``, with ``pynetdicom``).

Credentials never come from the command line (where ``ps`` and shell history show them): a
file holding ``user:password`` on its first line (refused when other users may read it), or
``$QDEV_PACS_USER`` and ``$QDEV_PACS_PASSWORD``. An ``https`` URL is verified against the system's
CA store or ``--ca FILE``; an ``http`` URL with credentials is refused unless it is loopback
(basic auth in clear text over a network).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from qdev.core.errors import ConfigError, DataError, QdevError
from qdev.core.link import is_loopback

__all__ = ["PacsTarget", "parse_target", "load_credentials", "pacs_session", "store", "StoreResult"]


@dataclass(frozen=True)
class PacsTarget:
    kind: str  # stow | dimse
    url: str = ""
    host: str = ""
    port: int = 0
    called_ae: str = ""


@dataclass
class StoreResult:
    target: str
    sent: int
    failed: list[str]


def parse_target(text: str) -> PacsTarget:
    """``http(s)://...`` (STOW-RS) or ``dimse://AET@HOST:PORT`` (C-STORE)."""
    u = urlsplit(text)
    if u.scheme in ("http", "https") and u.hostname:
        return PacsTarget("stow", url=text.rstrip("/"))
    if u.scheme == "dimse" and u.hostname and u.username:
        try:
            port = u.port
        except ValueError:
            port = None
        if port is None or not (1 <= len(u.username) <= 16):
            raise ConfigError(
                f"--pacs {text}: expected dimse://CALLED_AE@HOST:PORT (AE title up to 16 "
                "characters)"
            )
        return PacsTarget("dimse", host=u.hostname, port=port, called_ae=u.username)
    raise ConfigError(
        f"--pacs {text}: expected http(s)://HOST/.../dicom-web or dimse://CALLED_AE@HOST:PORT"
    )


def load_credentials(path: Path | None) -> tuple[str, str] | None:
    """(user, password) from ``path`` or the environment, or None.

    Raises:
        ConfigError: an unreadable, malformed or group/world-readable file.
    """
    if path is not None:
        p = Path(path)
        try:
            mode = p.stat().st_mode
            text = p.read_text().splitlines()[0] if p.stat().st_size else ""
        except (OSError, UnicodeDecodeError, IndexError) as exc:
            raise ConfigError(f"--credentials {p}: unreadable ({exc.__class__.__name__})") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"--credentials {p}: other users may read it; chmod 600 {p}")
        user, sep, pw = text.partition(":")
        if not sep or not user:
            raise ConfigError(f"--credentials {p}: the first line must be user:password")
        return user, pw
    user, pw = os.environ.get("QDEV_PACS_USER"), os.environ.get("QDEV_PACS_PASSWORD")
    if user and pw is not None:
        return user, pw
    return None


def _session_class():  # noqa: ANN202
    import requests

    class Session(requests.Session):
        """A session whose ``--ca`` holds: requests lets $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE
        override ``Session.verify`` (psf/requests#3829), which silently dropped the CA a user named
        wherever those variables are set (as on this machine)."""

        def __init__(self, ca: str | None) -> None:
            super().__init__()
            self._ca = ca
            self.verify = ca if ca else True

        def merge_environment_settings(self, url, proxies, stream, verify, cert):  # noqa: ANN001, ANN201
            out = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if self._ca:
                out["verify"] = self._ca
            return out

    return Session


def pacs_session(ca: Path | str | None = None, creds: tuple[str, str] | None = None):  # noqa: ANN201
    """A requests session for a PACS: basic auth where given, verified against ``ca`` where given
    (whatever the environment says), else the system CAs."""
    session = _session_class()(str(ca) if ca else None)
    if creds:
        session.auth = creds
    return session


def _stow(
    paths: list[Path], t: PacsTarget, creds: tuple[str, str] | None, ca: Path | None
) -> StoreResult:
    import pydicom
    import requests
    from dicomweb_client.api import DICOMwebClient

    u = urlsplit(t.url)
    if creds and u.scheme == "http" and not is_loopback(u.hostname or ""):
        raise ConfigError(
            f"--pacs {t.url}: credentials over plain http to another machine; use https"
        )
    session = pacs_session(ca, creds)
    client = DICOMwebClient(url=t.url, session=session)
    failed: list[str] = []
    sent = 0
    batch: list = []

    def flush() -> None:
        nonlocal sent
        if not batch:
            return
        try:
            client.store_instances(datasets=batch)
            sent += len(batch)
        except requests.exceptions.SSLError as exc:
            raise QdevError(
                f"--pacs {t.url}: TLS verification failed ({exc}); pass --ca FILE"[:400]
            ) from None
        except requests.exceptions.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else "?"
            if code in (401, 403):
                raise QdevError(
                    f"--pacs {t.url}: refused ({code}): check the credentials"
                ) from None
            failed.extend(str(d.SOPInstanceUID) for d in batch)
        except requests.exceptions.RequestException as exc:
            raise QdevError(f"--pacs {t.url}: {exc.__class__.__name__}: {exc}"[:300]) from None
        batch.clear()

    for p in paths:
        batch.append(pydicom.dcmread(p))
        if len(batch) >= 50:
            flush()
    flush()
    return StoreResult(t.url, sent, failed)


def _cstore(paths: list[Path], t: PacsTarget, calling_ae: str = "QDEV") -> StoreResult:
    import pydicom
    from pynetdicom import AE

    datasets = [pydicom.dcmread(p) for p in paths]
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for cls in sorted({str(d.SOPClassUID) for d in datasets}):
        ae.add_requested_context(
            cls,
            [
                str(datasets[0].file_meta.TransferSyntaxUID),
                "1.2.840.10008.1.2.1",
                "1.2.840.10008.1.2",
            ],
        )
    assoc = ae.associate(t.host, t.port, ae_title=t.called_ae)
    if not assoc.is_established:
        raise QdevError(
            f"--pacs dimse://{t.called_ae}@{t.host}:{t.port}: association refused or no answer"
        )
    failed, sent = [], 0
    try:
        for d in datasets:
            status = assoc.send_c_store(d)
            if status and int(getattr(status, "Status", 0xFFFF)) == 0x0000:
                sent += 1
            else:
                failed.append(str(d.SOPInstanceUID))
    finally:
        assoc.release()
    return StoreResult(f"dimse://{t.called_ae}@{t.host}:{t.port}", sent, failed)


def store(
    paths: list[Path], target: str, credentials: Path | None = None, ca: Path | None = None
) -> StoreResult:
    """Store ``paths`` at ``target`` (see the module doc).

    Raises:
        ConfigError: a malformed target, bad credentials file, clear-text credentials.
        QdevError: the PACS refused or could not be reached.
    """
    t = parse_target(target)
    if not paths:
        raise DataError("nothing to store")
    if t.kind == "stow":
        return _stow(paths, t, load_credentials(credentials), ca)
    return _cstore(paths, t)
