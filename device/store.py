"""The device's bundle store: resumable uploads, verified atomic installs, active/previous,
rollback.

Layout (one folder, ``--store``)::

    trusted/*.pub            Ed25519 public keys a bundle must be signed by
    incoming/<sha256>.part   an upload in progress (resumable from its size)
    bundles/<id>/            installed bundles (id: first 16 hex of sha256(manifest.json))
    bundles/.staging-*       an install in progress (removed on the next start)
    incoming/<sha256>.head   the upload's signed manifest and signature, verified at FLASH_BEGIN
    state.json               {"active": id | null, "previous": id | null, "max_version": n}

Crash safety: a bundle becomes visible only by renaming a fully written, fsynced and verified
staging folder, and becomes *active* only by atomically replacing ``state.json`` (write aside,
fsync, rename, fsync the folder) after its self-test passed. A kill at any point leaves either
the old state or the new one; ``open`` removes leftovers (staging folders, temporary state files,
uploads untouched for ``STALE_UPLOAD_S``).

Self-healing: a ``state.json`` that does not parse (a damaged disk; atomic writes never leave one)
is moved aside to ``state.json.corrupt-<time>`` and the store opens with no bundle active, keeping
every installed bundle so that one can be activated again; :attr:`BundleStore.recovered` says
what happened. What to do about a damaged *bundle* is the runtime's choice (safe boot, in
:mod:`qdev.device.runtime.service`): it picks the previous one in memory, leaving ``state.json`` as
it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qdev.core.bundle import (
    bundle_id,
    MANIFEST,
    BundleError,
    VerifiedBundle,
    load_public_key,
    unpack_bundle,
    unpacked_bytes,
    verify_bundle,
    verify_manifest,
)
from qdev.core.errors import QdevError
from qdev.core.fsutil import FolderBuild, atomic_write_text
from qdev.core.maskrule import MaskRule
from qdev.core.messages import MAX_BUNDLE_BYTES, MAX_CHUNK  # the protocol's limits, declared once

__all__ = [
    "BundleStore",
    "StoreError",
    "InstallResult",
    "MAX_BUNDLE_BYTES",
    "MAX_CHUNK",
    "bundle_id",
    "dev_key_ids",
]

FREE_MARGIN = 16 << 20
STALE_UPLOAD_S = 3600.0  # an upload untouched this long is not resumed: removed at start


class StoreError(QdevError):
    """A store operation was refused (limits, disk space, unknown bundle, bad chunk)."""


@dataclass
class InstallResult:
    bundle_id: str
    activated: bool
    self_test: dict
    previous: str | None
    message: str


SelfTest = Callable[[Path, dict], dict]  # -> {"ok": bool, ...details}


def dev_key_ids() -> set[str]:
    """Key ids of the development keys qdev ships (public, their private halves committed on
    purpose): a device trusts them only when started with ``--dev-key``."""
    from qdev import assets
    from qdev.core.bundle import _raw, key_id

    return {key_id(_raw(load_public_key(p))) for p in assets.dev_public_keys()}


def _verified(v: dict) -> dict:
    """What the bundle's build checked, as its signed manifest says (older bundles: python only)."""
    modes = v.get("modes_run") or (["python"] if v.get("finn_python") else [])
    return {"modes": modes, "not_run": v.get("not_run"), "layers": v.get("layers")}


_BUNDLE_ID = re.compile(r"[0-9a-f]{1,64}")


@dataclass(frozen=True)
class StoreState:
    """``state.json``, typed: which bundle is active, which was before it, and the highest bundle
    version ever active (rollback protection). :meth:`parse` takes any JSON value and accepts
    only this shape: ``{"active": id|null, "previous": id|null, "max_version": int >= 0}``
    (``max_version`` may be absent), ids lowercase hex."""

    active: str | None = None
    previous: str | None = None
    max_version: int = 0

    @staticmethod
    def parse(obj: object) -> StoreState:
        if not isinstance(obj, dict):
            raise ValueError(f"expected an object, got {type(obj).__name__}")
        unknown = set(obj) - {"active", "previous", "max_version"}
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        ids = {}
        for k in ("active", "previous"):
            v = obj.get(k)
            if v is not None and not (isinstance(v, str) and _BUNDLE_ID.fullmatch(v)):
                raise ValueError(f"{k}: {v!r} is not a bundle id")
            ids[k] = v
        mv = obj.get("max_version", 0)
        if not isinstance(mv, int) or isinstance(mv, bool) or mv < 0:
            raise ValueError(f"max_version: {mv!r} is not a non-negative integer")
        return StoreState(ids["active"], ids["previous"], mv)


class BundleStore:
    def __init__(
        self, root: Path | str, board: str | None = None, allow_dev_key: bool = False
    ) -> None:
        self.root = Path(root)
        self.board = board
        self.allow_dev_key = allow_dev_key
        self.recovered: list[str] = []  # what opening the store had to repair, for INFO
        try:
            for sub in ("trusted", "incoming", "bundles"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # read-only, full, or a file where a folder must be: one line
            raise StoreError(
                f"cannot open the store {self.root}: {exc.strerror or exc} ({exc.filename})"
            ) from exc
        self._recover_state()
        self._cleanup()

    # ------------------------------------------------------------------ state
    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    def state(self) -> dict:
        st = self._typed_state()
        return {"active": st.active, "previous": st.previous}

    def _typed_state(self) -> StoreState:
        try:
            raw = self.state_path.read_text()
        except FileNotFoundError:
            return StoreState()
        try:
            return StoreState.parse(json.loads(raw))
        except ValueError as exc:  # not JSON, or JSON of the wrong shape: never guessed at
            raise StoreError(f"{self.state_path}: corrupted ({exc})") from exc

    def max_version(self) -> int:
        """The highest bundle version ever active here (rollback protection; 0 before any)."""
        try:
            return self._typed_state().max_version
        except (OSError, StoreError):
            return 0

    def _write_state(
        self, active: str | None, previous: str | None, max_version: int | None = None
    ) -> None:
        mv = max(self.max_version(), max_version or 0)
        atomic_write_text(
            self.state_path,
            json.dumps({"active": active, "previous": previous, "max_version": mv}),
            sync_dir=True,
        )

    def _recover_state(self) -> None:
        try:
            self.state()
        except StoreError as exc:
            aside = self.state_path.with_name(f"state.json.corrupt-{int(time.time())}")
            os.replace(self.state_path, aside)
            self._write_state(None, None)
            self.recovered.append(
                f"{exc}; moved to {aside.name}, no bundle active "
                f"(installed: {', '.join(self.installed()) or 'none'})"
            )

    def installed(self) -> list[str]:
        """Ids of the bundle folders present (verified or not)."""
        return sorted(
            p.name
            for p in (self.root / "bundles").iterdir()
            if p.is_dir() and not p.name.startswith(".")
        )

    def _cleanup(self) -> None:
        for p in (self.root / "bundles").glob(".staging-*"):
            shutil.rmtree(p, ignore_errors=True)
        for p in self.root.glob(".state.json.*.tmp"):
            p.unlink(missing_ok=True)
        now = time.time()
        for p in (self.root / "incoming").glob("*.part"):
            if now - p.stat().st_mtime > STALE_UPLOAD_S:
                p.unlink(missing_ok=True)
                self.recovered.append(f"removed a stale upload ({p.name})")
        if self.recovered and self.state()["active"] is None:
            return  # state was rebuilt: keep every bundle, one of them may be activated again
        st = self.state()
        keep = {st["active"], st["previous"]}
        for p in (self.root / "bundles").iterdir():
            if p.is_dir() and p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)

    def trusted_keys(self) -> list:
        """The store's trusted keys; the shipped development key only with ``allow_dev_key``
        (a store that trusted it once, under --dev-key, does not go on trusting it without)."""
        from qdev.core.bundle import _raw, key_id

        keys = [load_public_key(p) for p in sorted((self.root / "trusted").glob("*.pub"))]
        if self.allow_dev_key:
            return keys
        dev = dev_key_ids()
        return [k for k in keys if key_id(_raw(k)) not in dev]

    def trust(self, pub_path: Path) -> Path:
        from qdev.core.bundle import _raw, key_id

        key = load_public_key(pub_path)  # refuse anything that is not an Ed25519 key
        if not self.allow_dev_key and key_id(_raw(key)) in dev_key_ids():
            raise StoreError(
                f"{pub_path} is qdev's development key, whose private half is public: "
                "a device trusts it only when started with --dev-key (never with patient data)"
            )
        dst = self.root / "trusted" / Path(pub_path).name
        try:
            shutil.copyfile(pub_path, dst)
        except OSError as exc:  # a read-only or full store: one line, not a traceback
            raise StoreError(
                f"cannot add {Path(pub_path).name} to {dst.parent}: {exc.strerror or exc}"
            ) from exc
        return dst

    def bundle_dir(self, bid: str) -> Path:
        if not bid or not all(c in "0123456789abcdef" for c in bid):
            raise StoreError(f"not a bundle id: {bid!r}")
        return self.root / "bundles" / bid

    def verified(self, bid: str) -> VerifiedBundle:
        return verify_bundle(self.bundle_dir(bid), self.trusted_keys())

    def _intact(self, bid: str) -> bool:
        """An installed copy of ``bid`` that verifies."""
        if not self.bundle_dir(bid).is_dir():
            return True  # nothing there to keep or replace
        try:
            self.verified(bid)
            return True
        except BundleError:
            return False

    def active(self) -> VerifiedBundle | None:
        """The active bundle, verified; None when nothing is installed."""
        bid = self.state()["active"]
        return self.verified(bid) if bid else None

    def describe(self) -> dict:
        st = self.state()
        out = {"store": str(self.root), **st, "installed": self.installed()}
        for which in ("active", "previous"):
            if st[which]:
                try:
                    m = self.verified(st[which]).manifest
                    est, bits = m.get("estimates") or {}, m.get("bits") or {}
                    out[f"{which}_bundle"] = {
                        "id": st[which],
                        "model": m.get("model"),
                        "board": m.get("board"),
                        "run_id": m.get("run_id"),
                        "estimate_only": m.get("estimate_only"),
                        "version": m.get("version"),
                        "part": m.get("part"),
                        "clock_ns": m.get("clock_ns"),
                        "estimated_fps": est.get("estimated_fps"),
                        "estimated_latency_ms": est.get("estimated_latency_ms"),
                        "avg_bits": bits.get("avg_bits"),
                        "model_bits": bits.get("model_bits"),
                        "mask_rule": MaskRule.from_manifest(m.get("mask_rule")).describe(),
                        "verified": _verified(m.get("verification") or {}),
                    }
                except BundleError as exc:
                    out[f"{which}_bundle"] = {"id": st[which], "error": str(exc)}
        return out

    # ----------------------------------------------------------------- upload
    def _declared_size(self, sha: str) -> int:
        """The archive size FLASH_BEGIN declared for this upload (its .head), 0 if unreadable."""
        try:
            size = json.loads(self._part(sha).with_suffix(".head").read_text()).get("size")
        except (OSError, ValueError, AttributeError):
            return 0
        return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 0

    def _discard(self, sha: str) -> None:
        """Remove an upload's partial archive and its head."""
        part = self._part(sha)
        part.unlink(missing_ok=True)
        part.with_suffix(".head").unlink(missing_ok=True)

    def _part(self, sha: str) -> Path:
        if len(sha) != 64 or not all(c in "0123456789abcdef" for c in sha):
            raise StoreError(f"not a sha256: {sha!r}")
        return self.root / "incoming" / f"{sha}.part"

    def check_update(
        self, manifest_bytes: bytes, sig_bytes: bytes, allow_downgrade: bool = False
    ) -> tuple[dict, str]:
        """Everything that can be decided from the signed manifest alone, before an upload writes
        a byte: signature by a trusted key, format, board, version. Returns (manifest, bundle id).

        Raises:
            BundleError / StoreError: refused, with the reason.
        """
        manifest, _ = verify_manifest(manifest_bytes, sig_bytes, self.trusted_keys(), "update")
        if self.board and manifest.get("board") != self.board:
            raise BundleError(
                f"bundle is built for {manifest.get('board')}, this device is {self.board}"
            )
        self._check_version(manifest, allow_downgrade)
        return manifest, bundle_id(manifest_bytes)

    def _check_version(self, manifest: dict, allow_downgrade: bool) -> None:
        v, floor = int(manifest.get("version", 0)), self.max_version()
        if v < floor and not allow_downgrade:
            raise StoreError(
                f"bundle version {v} is older than version {floor}, which this device has run "
                "(rollback protection): pass --allow-downgrade to install it anyway"
            )

    def begin_upload(
        self,
        sha: str,
        size: int,
        manifest_bytes: bytes,
        sig_bytes: bytes,
        allow_downgrade: bool = False,
    ) -> dict:
        """Start or resume an upload of the archive ``sha`` whose signed manifest and signature
        come first, and are verified before anything is written. Returns ``{"offset": n}`` to
        continue from, or ``{"installed": id}`` when that bundle is installed and intact already
        (nothing to upload: activate it)."""
        manifest, bid = self.check_update(manifest_bytes, sig_bytes, allow_downgrade)
        if not 0 < size <= MAX_BUNDLE_BYTES:
            raise StoreError(f"bundle of {size} bytes refused (limit {MAX_BUNDLE_BYTES})")
        if self.bundle_dir(bid).is_dir() and self._intact(bid):
            return {"installed": bid}
        part = self._part(sha)
        have = part.stat().st_size if part.is_file() else 0
        if have > size:
            part.unlink()
            have = 0
        free = shutil.disk_usage(self.root).free
        unpacked = unpacked_bytes(manifest) + len(manifest_bytes) + len(sig_bytes)
        need = (
            (size - have) + unpacked + FREE_MARGIN
        )  # the rest of the upload, the unpacked bundle, margin
        if free < need:
            raise StoreError(
                f"device store full: need {need / 1e6:.1f} MB, {free / 1e6:.1f} MB free"
            )
        for other in (self.root / "incoming").iterdir():  # one upload at a time
            if other.name not in (part.name, f"{sha}.head"):
                other.unlink(missing_ok=True)
        atomic_write_text(
            part.with_suffix(".head"),
            json.dumps(
                {
                    "manifest": manifest_bytes.decode(),
                    "signature": sig_bytes.decode(),
                    "allow_downgrade": allow_downgrade,
                    "size": size,
                }
            ),
        )
        part.touch()
        return {"offset": have}

    def write_chunk(self, sha: str, offset: int, data: bytes, crc: int) -> int:
        """Append a chunk at ``offset`` (must equal the bytes held); returns the new offset."""
        if len(data) > MAX_CHUNK:
            raise StoreError(f"chunk of {len(data)} bytes over the limit of {MAX_CHUNK}")
        if zlib.crc32(data) != crc:
            raise StoreError("chunk CRC mismatch")
        part = self._part(sha)
        if not part.is_file():
            raise StoreError("no upload in progress for this bundle (send FLASH_BEGIN)")
        have = part.stat().st_size
        if offset != have:
            raise StoreError(f"chunk at offset {offset}, but {have} bytes are held")
        declared = self._declared_size(sha)
        if have + len(data) > min(declared, MAX_BUNDLE_BYTES):
            self._discard(sha)  # past what FLASH_BEGIN declared: nothing of it stays on disk
            raise StoreError(
                f"upload past its declared size of {declared} bytes: discarded, flash again"
            )
        with open(part, "ab") as fh:
            fh.write(data)
        return have + len(data)

    def finish_upload(self, sha: str, size: int, self_test: SelfTest) -> InstallResult:
        part = self._part(sha)
        if not part.is_file() or part.stat().st_size != size:
            raise StoreError(
                f"upload incomplete: {part.stat().st_size if part.is_file() else 0} of {size} bytes"
            )
        h = hashlib.sha256()
        with open(part, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
            os.fsync(fh.fileno())
        if h.hexdigest() != sha:
            self._discard(sha)
            raise StoreError("uploaded bundle does not match its sha256: discarded, upload again")
        head = part.with_suffix(".head")
        try:
            allow = (
                bool(json.loads(head.read_text()).get("allow_downgrade"))
                if head.is_file()
                else False
            )
            return self.install(part, self_test, allow_downgrade=allow)
        finally:
            part.unlink(missing_ok=True)
            head.unlink(missing_ok=True)

    # ---------------------------------------------------------------- install
    def install(
        self, archive: Path, self_test: SelfTest, allow_downgrade: bool = False
    ) -> InstallResult:
        """Verify and install a bundle archive (its signed manifest first, then each member
        against it: :func:`qdev.core.bundle.unpack_bundle`); activate it only if its
        self-test passes."""
        with FolderBuild(self.root / "bundles", ".staging-") as build:
            manifest = unpack_bundle(archive, build.path, self.trusted_keys(), self.board)
            self._check_version(manifest, allow_downgrade)
            verify_bundle(build.path, self.trusted_keys())  # the folder as installed, once more
            bid = bundle_id((build.path / MANIFEST).read_bytes())
            # installed already: kept, unless that copy is damaged (then the verified new one wins)
            build.commit(self.bundle_dir(bid), replace=not self._intact(bid), durable=True)
        return self._activate(bid, self_test)

    def _activate(self, bid: str, self_test: SelfTest) -> InstallResult:
        st = self.state()
        vb = self.verified(bid)
        version = int(vb.manifest.get("version", 0))
        if st["active"] == bid:
            return InstallResult(
                bid,
                True,
                {"ok": True, "skipped": "already active"},
                st["previous"],
                "already active",
            )
        result = self_test(vb.path, vb.manifest)
        if not result.get("ok"):
            if st["active"] != bid and st["previous"] != bid:
                shutil.rmtree(vb.path, ignore_errors=True)
            return InstallResult(
                bid,
                False,
                result,
                st["active"],
                f"self-test failed: {result.get('error', 'mask mismatch')}; "
                f"{st['active'] or 'no bundle'} stays active",
            )
        old = st["active"]
        self._write_state(bid, old, version)
        if st["previous"] and st["previous"] not in (bid, old):
            shutil.rmtree(self.bundle_dir(st["previous"]), ignore_errors=True)
        return InstallResult(bid, True, result, old, f"{bid} active")

    def activate(
        self, bid: str, self_test: SelfTest, allow_downgrade: bool = False
    ) -> InstallResult:
        if not self.bundle_dir(bid).is_dir():
            raise StoreError(f"bundle {bid} is not installed")
        if bid != self.state()["previous"]:  # ROLLBACK's target is the one older bundle allowed
            self._check_version(self.verified(bid).manifest, allow_downgrade)
        return self._activate(bid, self_test)

    def rollback(self, self_test: SelfTest) -> InstallResult:
        st = self.state()
        if not st["previous"]:
            raise StoreError("no previous bundle to roll back to")
        return self._activate(st["previous"], self_test)
