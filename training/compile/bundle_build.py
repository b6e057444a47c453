"""Build a signed deployment bundle from a compiled run (``bitstreams/<board>/<model>/``)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from qdev import __version__
from qdev.core.bundle import (
    BUNDLE_FORMAT,
    MANIFEST,
    SIGNATURE,
    file_entry,
    load_private_key,
    sign_manifest,
)
from qdev.core.errors import QdevError
from qdev.core.fsutil import FolderBuild
from qdev.core.golden import CODES, PIXELS, load_golden
from qdev.training.compile.config import VERIFY_STEPS
from qdev.training.mask_rule import run_mask_rule
from qdev.training.runs import RunFolder
from qdev.training.stages import StageRecord

__all__ = ["build_bundle", "generate_keypair", "DEV_KEY_DIR"]

#: The development key pair committed for tests and the demo. NOT for deployment.
DEV_KEY_DIR = (
    Path(__file__).resolve().parents[2] / "keys" / "dev"
)  # the checkout's (private key: never in a wheel)


def generate_keypair(out_dir: Path, name: str = "qdev") -> tuple[Path, Path]:
    """Write ``<name>.key`` (PKCS#8 PEM, mode 0600) and ``<name>.pub`` (PEM); never overwrites."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key, pub = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    for p in (key, pub):
        if p.exists():
            raise QdevError(f"{p} exists: refusing to overwrite a key")
    sk = Ed25519PrivateKey.generate()
    pem = sk.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as fh:
        fh.write(pem)
    pub.write_bytes(
        sk.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, pub


def adaptation_record(run: RunFolder, allow_unoffered: bool = False) -> dict | None:
    """What a bundle of an adapted run (``qdev adapt``) records: its base, the site's data hash, the
    split and the decision; None for other runs.

    Raises:
        QdevError: the adaptation was not offered (it did not beat its base on the site's
            validation patients) and ``allow_unoffered`` is not set.
    """
    st = run.load()["stages"].get("adapt")
    if not st:
        return None
    if st.get("status") != "done":
        raise QdevError(f"{run.path}: qdev adapt did not finish")
    decision = json.loads(run.verified("adapt", "adapt/decision.json").read_text())
    if not decision.get("offered") and not allow_unoffered:
        raise QdevError(
            f"{run.path}: this adaptation was not offered ({decision.get('rule')}); "
            "pass --allow-unoffered to bundle it anyway"
        )
    cfg = st.get("config") or {}
    return {
        "base": cfg.get("base"),
        "base_best_pt_sha256": (st.get("inputs") or {}).get("base_best.pt"),
        "site": (cfg.get("options") or {}).get("site") or Path(str(cfg.get("data"))).name,
        "site_data_hash": decision.get("site_data_hash"),
        "site_split_sha256": (st.get("outputs") or {}).get("adapt/site_split.json"),
        "offered": decision.get("offered"),
        "criterion": decision.get("criterion"),
        "gain": decision.get("gain"),
        "p_gain": decision.get("p_gain"),
        "level": decision.get("level"),
    }


def _compiled_files(outputs: dict, board: str) -> dict[str, str]:
    """Bundle file name -> the compile's output it is copied from. The golden pair keeps its
    names (a compile made before the one golden layout named the codes
    ``golden_codes_nhwc.npy``)."""
    d = f"compile/{board}/intmodel"
    codes = f"{d}/{CODES}" if f"{d}/{CODES}" in outputs else f"{d}/golden_codes_nhwc.npy"
    return {"intmodel.npz": f"{d}/intmodel.npz", PIXELS: f"{d}/{PIXELS}", CODES: codes}


def _lineage(train: dict, rests_on: list[str], stages_sha: str) -> dict:
    """The run manifest and the data this network was trained on (``qdev lineage``): the stages
    the bundle rests on, by a hash of their records (later stages of the run, its own bundle
    stage or an evaluation, change the manifest file but not these)."""
    return {
        "run_stages": rests_on,
        "run_stages_sha256": stages_sha,
        "data_hash": (train.get("inputs") or {}).get("data_hash"),
        "split": (train.get("outputs") or {}).get("train/split.json"),
        "best_pt_sha256": (train.get("outputs") or {}).get("train/best.pt"),
    }


_ESTIMATES = (
    "resources",
    "resources_with_fifos",
    "estimated_fps",
    "estimated_latency_ms",
    "bottleneck",
    "folding",
)


def _verification(export: dict, summary: dict) -> dict:
    """What the export and the compile verified: FINN's python execution after each step, each
    hardware-language mode run (without its per-type detail), the integer model."""
    v = summary["verification"]
    steps = v["steps"]
    modes = {
        mode: {k: x for k, x in (steps.get(step) or {}).items() if k != "by_type"} or None
        for mode, step in VERIFY_STEPS.items()
    }
    return {
        "export": export.get("integer_outputs_equal"),
        "finn_python": {k: x for k, x in steps.items() if x.get("exec_mode", "python") == "python"},
        **modes,
        "intmodel_equals_finn": (summary.get("intmodel") or {}).get("equals_finn_python_exec"),
        "modes_run": v.get("modes_run"),
        "not_run": v.get("not_run"),
        "layers": v.get("layers"),
    }


def _manifest(
    run: RunFolder,
    train: dict,
    summary: dict,
    export: dict,
    model: str,
    lineage: dict,
    mask_rule: tuple,
) -> dict:
    """The bundle manifest apart from its file list: what the bundle is, where it comes from,
    what was estimated and verified, and the mask rule the device applies."""
    rule, rule_source = mask_rule
    bit = summary.get("bitstream") or {}
    scale = export["output_scale"]
    return {
        "format": "qdev-bundle",
        "format_version": BUNDLE_FORMAT,
        "model": model,
        "run_id": run.path.name,
        "train_config": train.get("config"),
        "lineage": lineage,
        "board": summary["board"],
        "part": summary["part"],
        "clock_ns": summary["clock_ns"],
        "estimate_only": not bit.get("built", False),
        "bitstream": "built"
        if bit.get("built")
        else f"not built: {bit.get('reason', 'no Vivado')}",
        "io": summary["intmodel"]["io"],
        "output_scale": scale,
        "mask_rule": rule.to_dict(),
        "mask_rule_source": {
            "describe": rule.describe(),
            "logit_threshold": rule.logit_threshold(scale),
            **rule_source,
        },
        "bits": export.get("bits"),
        "estimates": {k: summary.get(k) for k in _ESTIMATES},
        "fifos": summary.get("fifos"),
        "verification": _verification(export, summary),
        "self_test": {"input": PIXELS, "expected": CODES},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # rises with every build: a device refuses a lower one than it has run (rollback
        # protection, as MCUboot's security counter) unless told --allow-downgrade
        "version": int(time.time()),
        "qdev_version": __version__,
    }


def _compile_summary(run: RunFolder, rec: StageRecord, board: str) -> dict:
    """The compile's summary for ``board``, refused unless the compile ran and its integer model
    was verified."""
    stage = run.load()["stages"].get(f"compile/{board}")
    if not stage or stage.get("status") not in ("done", "stopped"):
        raise QdevError(
            f"{run.path}: compile for {board} has not run (qdev compile {run.path} --board {board})"
        )
    summary = json.loads(rec.input(f"compile/{board}/summary.json").read_text())
    if not (summary.get("intmodel") or {}).get("equals_finn_python_exec"):
        raise QdevError(
            f"{run.path}: the integer model for {board} was not verified; rerun the compile"
        )
    return summary


def _write_signed(tmp: Path, files: dict[str, Path], manifest: dict, sk) -> None:  # noqa: ANN001
    """Copy ``files`` into ``tmp``, list them in the manifest, write it and its signature."""
    for name, src in files.items():
        shutil.copyfile(src, tmp / name)
    manifest["files"] = {name: file_entry(tmp / name) for name in files}
    mbytes = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    (tmp / MANIFEST).write_bytes(mbytes)
    (tmp / SIGNATURE).write_bytes(sign_manifest(mbytes, sk))
    for p in tmp.iterdir():
        p.chmod(0o644)
    tmp.chmod(0o755)


def build_bundle(
    run_dir: Path,
    board: str,
    key: Path,
    out: Path,
    model_name: str | None = None,
    allow_unoffered: bool = False,
) -> Path:
    """Copy the compiled artifacts of ``run_dir``/compile/<board> into a bundle folder, write the
    manifest and sign it. The folder is built aside and renamed into place."""
    run = RunFolder(Path(run_dir))
    adapted = adaptation_record(run, allow_unoffered)
    out = Path(out)
    model = model_name or run.path.name
    settings = {"board": board, "model": model, "out": str(out)}
    rec = StageRecord(run, "bundle", {**settings, "allow_unoffered": allow_unoffered}, board=board)
    summary = _compile_summary(run, rec, board)
    sk = load_private_key(key)
    export = json.loads(run.verified("export", "export/verify.json").read_text())
    stage_name = f"compile/{board}"
    # the run's manifest read once: what the bundle rests on, hashed before this bundle's own
    # stage is written into it (the compile's status was checked above)
    doc = run.load()
    sources = _compiled_files(doc["stages"][stage_name]["outputs"], board)
    rests_on = [n for n in ("train", "export", "postprocess", stage_name) if n in doc["stages"]]
    train = run.stage("train")
    lineage = _lineage(train, rests_on, stages_sha256(doc, rests_on))
    mask_rule = run_mask_rule(run)
    rec.begin()
    # each checked against the hash the compile recorded (a changed file is refused), the golden
    # pair also for its layout (core/golden.py): the bundle holds it under the same names
    files = {name: rec.input(rel) for name, rel in sources.items()}
    load_golden(files[PIXELS], files[CODES])
    if (summary.get("bitstream") or {}).get("built"):  # checked against the compile's hashes too
        files["accel.bit"] = rec.input(f"compile/{board}/bitfile/finn-accel.bit")
        files["accel.hwh"] = rec.input(f"compile/{board}/bitfile/finn-accel.hwh")
    manifest = _manifest(run, train, summary, export, model, lineage, mask_rule)
    if adapted:
        manifest["adapted"] = adapted
    out.parent.mkdir(parents=True, exist_ok=True)
    with FolderBuild(out.parent, ".bundle-") as build:
        _write_signed(build.path, files, manifest, sk)
        build.commit(out, replace=True)
    inside = out.resolve().is_relative_to(run.path.resolve())
    # the bundle is a stage of its run: its files' hashes when it lies inside the run (the
    # default), its id (the manifest's sha256) wherever it lies; qdev bundle publish copies it out
    rec.finish(
        outputs=sorted(out.iterdir()) if inside else [],
        bundle_id=bundle_id_of(out),
        bundle_dir=str(out.resolve()),
    )
    return out


def stages_sha256(manifest: dict, names: list[str]) -> str:
    """sha256 of the named stages' records in a run manifest (canonical JSON): what ``qdev
    lineage`` recomputes to tell whether they changed since a bundle was built."""
    import hashlib

    part = {n: manifest["stages"].get(n) for n in names}
    return hashlib.sha256(
        json.dumps(part, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def bundle_id_of(folder: Path) -> str:
    from qdev.core.bundle import bundle_id

    return bundle_id((Path(folder) / MANIFEST).read_bytes())


def publish_bundle(run_dir: Path, board: str, dest: Path) -> Path:
    """Copy the bundle recorded by ``run_dir``'s ``bundle/<board>`` stage to ``dest`` (e.g.
    ``bitstreams/<board>/<model>``), every file checked against the hash the stage recorded
    first; the copy is built aside and renamed into place.

    Raises:
        QdevError: no bundle stage, the bundle lies outside the run, or a file changed since.
    """
    run = RunFolder(Path(run_dir))
    st = run.stage(f"bundle/{board}")
    outs = st.get("outputs") or {}
    if not outs:
        raise QdevError(
            f"{run_dir}: the {board} bundle was written outside the run ({st.get('bundle_dir')}); "
            "publish copies bundles made inside it (qdev bundle create without --out)"
        )
    files = [run.verified(f"bundle/{board}", rel) for rel in sorted(outs)]
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FolderBuild(dest.parent, ".publish-") as build:
        for f in files:
            shutil.copyfile(f, build.path / f.name)
            (build.path / f.name).chmod(0o644)
        build.path.chmod(0o755)
        build.commit(dest, replace=True)
    return dest
