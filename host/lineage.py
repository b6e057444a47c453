"""``qdev lineage SESSION|BUNDLE``: which data, which run and which bundle produced a session's
masks, each link checked by its hash where the files are here.

The chain, walked from the end:

* **session** -> the bundle id the device reported (``manifest.json`` -> ``device.bundle_id``);
* **bundle**: found among the bundle folders under the search roots (default ``bitstreams/``) by
  that id (the first 16 hex digits of its manifest's sha256), then verified (signature against
  the trusted keys, every file's sha256);
* **run**: the bundle's ``run_id`` found among the run folders under the search roots (default
  ``models/`` and ``runs/``); where the bundle records ``lineage.run_stages_sha256`` the records
  of the stages it rests on (``lineage.run_stages``) must hash to it (later stages may come and
  go); older bundles record ``run_manifest_sha256``, the whole manifest file's; and the run's
  ``best.pt`` must be the recorded one;
* **data**: the run's training ``data_hash`` (and the bundle's copy of it), recomputed from the
  dataset where it is here (BUSI found by the one rule, or the run's ``data``).

Each link is ``ok``, ``MISMATCH`` (the hash differs: the file changed since), ``not recorded`` (an
older artefact carries no hash to check) or ``not here`` (the folder is elsewhere).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from qdev.core.bundle import MANIFEST, BundleError, bundle_id, sha256_file, verify_bundle
from qdev.core.errors import DataError, QdevError

__all__ = ["Link", "lineage", "DEFAULT_ROOTS"]

DEFAULT_ROOTS = (Path("bitstreams"), Path("models"), Path("runs"))


@dataclass
class Link:
    what: str  # session | bundle | run | data
    name: str
    status: str  # ok | MISMATCH | not recorded | not here
    detail: str


def _bundles(roots: list[Path]) -> dict[str, Path]:
    out = {}
    for root in roots:
        for m in sorted(root.glob("**/" + MANIFEST)) if root.is_dir() else []:
            if (m.parent / (MANIFEST + ".sig")).is_file():
                out[bundle_id(m.read_bytes())] = m.parent
    return out


def _runs(roots: list[Path]) -> dict[str, Path]:
    out = {}
    for root in roots:
        for m in sorted(root.glob("*/" + MANIFEST)) if root.is_dir() else []:
            if (m.parent / "train").is_dir():
                try:
                    name = json.loads(m.read_text()).get("name")
                except (OSError, ValueError):
                    continue
                out.setdefault(m.parent.name, m.parent)
                if name:
                    out.setdefault(str(name), m.parent)
    return out


def _data_link(train: dict, recorded: str | None) -> Link:
    want = (train.get("inputs") or {}).get("data_hash")
    if recorded and want and recorded != want:
        return Link(
            "data",
            want[:16],
            "MISMATCH",
            f"the bundle records data {recorded[:16]}, the run {want[:16]}",
        )
    if not want:
        return Link("data", "-", "not recorded", "the run records no data hash")
    try:
        from qdev.training.data import open_run_data

        size = int((train.get("config") or {}).get("size", 128))
        arrays = open_run_data(train.get("config") or {}, None, (size, size))
    except (DataError, QdevError, ImportError) as exc:
        return Link(
            "data", want[:16], "not here", f"the dataset is not readable here ({str(exc)[:80]})"
        )
    where = str(arrays.root)
    if arrays.data_hash != want:
        return Link("data", want[:16], "MISMATCH", f"{where} hashes to {arrays.data_hash[:16]}")
    return Link("data", want[:16], "ok", f"{where}: every image and mask file hashed again")


def _stages_sha256(manifest: dict, names: list[str]) -> str:
    """As the bundle recorded it (training/compile/bundle_build.stages_sha256; the host may not
    import the compile path, so the three lines are here too)."""
    part = {n: manifest["stages"].get(n) for n in names}
    return hashlib.sha256(
        json.dumps(part, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _session_link(target: Path, doc: dict) -> tuple[Link, str]:
    """The session's link and the id of the bundle that made its masks."""
    bid = str((doc.get("device") or {}).get("bundle_id") or "")
    frames = sum((doc.get("counts") or {}).values())
    link = Link("session", str(target), "ok", f"masks of {frames} frames from bundle {bid or '?'}")
    return link, bid


def _bundle_link(bundle: Path, trusted: list) -> tuple[Link, dict | None]:
    """The bundle's link, and its manifest where its signature and files verify."""
    try:
        vb = verify_bundle(bundle, trusted)
    except BundleError as exc:
        return Link("bundle", str(bundle), "MISMATCH", str(exc)[:160]), None
    name = f"{bundle} ({bundle_id((bundle / MANIFEST).read_bytes())})"
    what = f"signature by key {vb.signer} and every file's sha256 verified"
    return Link("bundle", name, "ok", what), vb.manifest


def _run_link(run: Path, run_doc: dict, m: dict) -> Link:
    """The run's link: its recorded stages (or whole manifest) and best.pt as the bundle says."""
    lin = m.get("lineage") or {}
    want = lin.get("run_stages_sha256") or lin.get("run_manifest_sha256")
    if lin.get("run_stages_sha256"):  # the stages it rests on (later stages may come and go)
        got = _stages_sha256(run_doc, list(lin.get("run_stages") or []))
        what = f"the records of {', '.join(lin.get('run_stages') or [])}"
    else:  # bundles of the previous session recorded the whole manifest file
        got, what = sha256_file(run / MANIFEST), "the run's manifest"
    if want is None:
        return Link(
            "run",
            f"{run} ({m.get('run_id')})",
            "not recorded",
            "this bundle predates lineage records: its run is found by name only",
        )
    if got != want:
        return Link("run", str(run), "MISMATCH", f"{what} changed since the bundle was built")
    best = lin.get("best_pt_sha256")
    ok = best is None or sha256_file(run / "train" / "best.pt") == best
    detail = f"{what}: sha256 as recorded" + (
        "; best.pt as recorded" if ok else "; best.pt differs"
    )
    return Link("run", str(run), "ok" if ok else "MISMATCH", detail)


def lineage(
    target: Path, roots: list[Path] | None = None, trusted: list | None = None
) -> list[Link]:
    """The chain of ``target`` (a session folder or a bundle folder), from its data to it.

    Raises:
        DataError: ``target`` is neither a session nor a bundle.
    """
    roots = list(roots or DEFAULT_ROOTS)
    target = Path(target)
    links: list[Link] = []
    try:
        doc = json.loads((target / MANIFEST).read_text())
    except (OSError, ValueError):
        raise DataError(
            f"{target}: neither a session nor a bundle (no readable {MANIFEST})"
        ) from None
    if doc.get("format") == "qdev-session":
        link, bid = _session_link(target, doc)
        links.append(link)
        bundle = _bundles(roots).get(bid)
        if bundle is None:
            where = ", ".join(map(str, roots))
            detail = f"no bundle with id {bid} under {where}"
            links.append(Link("bundle", bid or "-", "not here", detail))
            return list(reversed(links))
    elif (target / (MANIFEST + ".sig")).is_file():
        bundle = target
    else:
        raise DataError(f"{target}: neither a session nor a bundle")
    link, m = _bundle_link(bundle, trusted or [])
    links.append(link)
    if m is None:
        return list(reversed(links))
    run = _runs(roots).get(str(m.get("run_id")))
    if run is None:
        what = "no run folder of that name under the roots"
        links.append(Link("run", str(m.get("run_id")), "not here", what))
        return list(reversed(links))
    run_doc = json.loads((run / MANIFEST).read_text())
    links.append(_run_link(run, run_doc, m))
    train = run_doc["stages"].get("train") or {}
    links.append(_data_link(train, (m.get("lineage") or {}).get("data_hash")))
    return list(reversed(links))
