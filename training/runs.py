"""Run folders (`runs/<name>/`) and their manifest: config, versions, sha256 of inputs/outputs,
per-stage status and duration. A stage refuses inputs whose hash no longer matches."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

from qdev.core.bundle import sha256_file
from qdev.core.errors import QdevError
from qdev.core.fsutil import atomic_write_text, atomic_writer
from qdev.core.threads import available_cpus

__all__ = [
    "RunFolder",
    "sha256_file",
    "atomic_writer",
    "atomic_write_text",
    "package_versions",
    "cpu_description",
]

MANIFEST_FORMAT = 1


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("qdev", "torch", "brevitas", "qonnx", "finn-plus", "onnx", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def cpu_description() -> str:
    """The CPU a stage ran on: model name, widest vector extension, CPUs this process may use.

    The same command and seed trained different networks on different VMs (bench/RESULTS.md);
    the manifest says which machine a stage ran on, so such runs can be told apart."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    simd = next((f for f in ("avx512f", "avx2", "avx", "sse4_2", "asimd") if f in flags), None)
    return f"{model}" + (f", {simd}" if simd else "") + f", {available_cpus()} CPUs"


def _git(*args: str) -> subprocess.CompletedProcess | None:
    """``git ARGS`` in the checkout qdev runs from; None where git cannot be run."""
    try:
        repo = Path(__file__).resolve().parents[1]
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None


def git_revision() -> str | None:
    """HEAD of the checkout qdev runs from; where qdev runs from an installed wheel on a machine
    with no checkout (a rented GPU box), ``$QDEV_GIT_REVISION`` as the caller set it."""
    env = os.environ.get("QDEV_GIT_REVISION")
    if env:
        return env
    out = _git("rev-parse", "HEAD")
    return (out.stdout.strip() or None) if out is not None else None


def git_dirty() -> bool | None:
    """Whether tracked files of the checkout differ from HEAD (a stage run on uncommitted code
    names a revision that does not hold it); None without a checkout or with
    ``$QDEV_GIT_REVISION`` set (the caller vouches for the revision)."""
    if os.environ.get("QDEV_GIT_REVISION"):
        return None
    out = _git("status", "--porcelain", "--untracked-files=no")
    return bool(out.stdout.strip()) if out is not None and out.returncode == 0 else None


class RunFolder:
    """A run folder with a ``manifest.json`` describing each stage."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.manifest_path = self.path / "manifest.json"

    @classmethod
    def existing(cls, path: Path | str) -> RunFolder:
        """The run folder at ``path``; raises QdevError if there is none."""
        run = cls(Path(path))
        if not run.path.is_dir():
            raise QdevError(f"{path}: no such run folder")
        return run

    def load(self) -> dict:
        if not self.manifest_path.is_file():
            return {"format": MANIFEST_FORMAT, "name": self.path.name, "stages": {}}
        try:
            return json.loads(self.manifest_path.read_text())
        except ValueError as exc:
            raise QdevError(f"{self.manifest_path}: unreadable manifest ({exc})") from exc

    def save(self, doc: dict) -> None:
        atomic_write_text(self.manifest_path, json.dumps(doc, indent=1) + "\n")

    def begin(self, stage: str, config: dict, inputs: dict | None = None, **extra) -> float:
        """Mark ``stage`` running, with its config, inputs, versions and machine; ``extra`` (e.g.
        the
        accelerator a training ran on) is stored beside them."""
        doc = self.load()
        doc["stages"][stage] = {
            "status": "running",
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": config,
            "inputs": inputs or {},
            "versions": package_versions(),
            "git_revision": git_revision(),
            "git_dirty": git_dirty(),
            "host": platform.node(),
            "cpu": cpu_description(),
            **extra,
        }
        self.save(doc)
        return time.perf_counter()

    def finish(
        self, stage: str, t0: float, outputs: list[Path], status: str = "done", **extra
    ) -> None:
        doc = self.load()
        st = doc["stages"].setdefault(stage, {})
        st["status"] = status
        st["duration_s"] = round(time.perf_counter() - t0, 3)
        st["outputs"] = {
            str(p.relative_to(self.path)): sha256_file(p) for p in outputs if p.is_file()
        }
        st.update(extra)
        self.save(doc)

    def stage(self, stage: str) -> dict:
        st = self.load()["stages"].get(stage)
        # "stopped": the stage ended early on purpose (a compile without Vivado); its outputs stand
        if not st or st.get("status") not in ("done", "stopped"):
            raise QdevError(f"{self.path}: stage '{stage}' has not finished (run it first)")
        return st

    def verified(self, stage: str, rel: str) -> Path:
        """Path of an output of ``stage``, refused if its hash differs from the manifest."""
        st = self.stage(stage)
        want = st.get("outputs", {}).get(rel)
        path = self.path / rel
        if want is None or not path.is_file():
            raise QdevError(f"{path}: not an output of stage '{stage}' in {self.manifest_path}")
        if sha256_file(path) != want:
            raise QdevError(
                f"{path}: sha256 differs from the manifest (file changed since '{stage}')"
            )
        return path
