"""The run's stages, declared: what each reads (producing stage + run-relative path) and writes.

``STAGES`` is the one table of what a run folder holds; :class:`StageRecord` reads it to drive
:class:`~qdev.training.runs.RunFolder`: ``begin()`` checks every declared input against the hash
its producing stage recorded (refusing a changed or missing file before any work) and records
those hashes under the same run-relative keys in every stage; ``input(path)`` hands a declared,
verified input to the stage's code (asking for an undeclared one is a programming error);
``finish()`` records the declared outputs that exist, with their hashes, and the duration.

Names and paths may hold ``{board}``, ``{checkpoint}``, ``{split}``, ``{at}`` and ``{stem}``,
filled in by the stage's parameters. An input marked optional is recorded where its producing
stage wrote it (a mask rule a run may not have; the golden files of a run exported before the one
golden layout, ``core/golden.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from qdev.core.errors import QdevError
from qdev.training.runs import RunFolder

__all__ = ["In", "StageSpec", "STAGES", "StageRecord"]


@dataclass(frozen=True)
class In:
    """One input: ``path`` (run-relative), as written by ``stage``."""

    stage: str
    path: str
    optional: bool = False


@dataclass(frozen=True)
class StageSpec:
    name: str
    inputs: tuple[In, ...]
    outputs: tuple[str, ...]  # run-relative glob patterns

    def resolve(self, **params: str) -> StageSpec:
        """This spec with its placeholders filled in (a missing parameter is a KeyError)."""
        return StageSpec(
            self.name.format(**params),
            tuple(
                In(i.stage.format(**params), i.path.format(**params), i.optional)
                for i in self.inputs
            ),
            tuple(o.format(**params) for o in self.outputs),
        )


_EXPORT_GOLDEN = ("export/golden_pixels.npy", "export/golden_codes.npy", "export/golden_in.npy")
_COMPILED = "compile/{board}/intmodel"
#: FINN's bitstream and hardware handoff, where Vivado ran (finn-plus 1.6.1,
#: build_dataflow_steps.copy_and_rename_bitfiles: bitfile/finn-accel.bit and .hwh)
_BITFILES = ("compile/{board}/bitfile/finn-accel.bit", "compile/{board}/bitfile/finn-accel.hwh")

STAGES: dict[str, StageSpec] = {
    "train": StageSpec(
        "train",
        (),
        ("train/best.pt", "train/last.pt", "train/log.jsonl", "train/split.json", "train/fig*.png"),
    ),
    "export": StageSpec(
        "export",
        (In("train", "train/{checkpoint}.pt"),),
        (
            "export/model.qonnx.onnx",
            "export/golden_pixels.npy",
            "export/golden_codes.npy",
            "export/verify.json",
        ),
    ),
    "postprocess": StageSpec(
        "postprocess",
        (In("train", "train/best.pt"), In("train", "train/split.json")),
        ("postprocess/rule.json",),
    ),
    "evaluate": StageSpec(
        "evaluate/{split}{at}",
        (
            In("train", "train/{checkpoint}.pt"),
            In("train", "train/split.json"),
            In("postprocess", "postprocess/rule.json", optional=True),
        ),
        ("evaluate/{stem}.json",),
    ),
    "compile": StageSpec(
        "compile/{board}",
        (
            In("export", "export/model.qonnx.onnx"),
            In("export", "export/verify.json"),
            *(In("export", p, optional=True) for p in _EXPORT_GOLDEN),
        ),
        (
            "compile/{board}/summary.json",
            "compile/{board}/time_per_step.json",
            "compile/{board}/report/*.json",
            f"{_COMPILED}/*",
            *_BITFILES,
        ),
    ),
    "bundle": StageSpec(
        "bundle/{board}",
        (
            In("compile/{board}", f"{_COMPILED}/intmodel.npz"),
            In("compile/{board}", f"{_COMPILED}/golden_pixels.npy"),
            In("compile/{board}", f"{_COMPILED}/golden_codes.npy", optional=True),
            In("compile/{board}", f"{_COMPILED}/golden_codes_nhwc.npy", optional=True),
            In("compile/{board}", "compile/{board}/summary.json"),
            *(In("compile/{board}", p, optional=True) for p in _BITFILES),
        ),
        ("bundle/{board}/*",),
    ),
}


class StageRecord:
    """One run of a declared stage in a run folder (see the module doc)."""

    def __init__(self, run: RunFolder, kind: str, config: dict, **params: str) -> None:
        self.run, self.config = run, config
        self.spec = STAGES[kind].resolve(**params)
        self.name = self.spec.name
        self._t0: float | None = None
        self._inputs: dict[str, str] = {}

    def _present(self, i: In) -> bool:
        st = self.run.load()["stages"].get(i.stage) or {}
        return i.path in (st.get("outputs") or {})

    def _verify(self, i: In) -> Path:
        """Check one input against its producer's hash, once per stage run: the hash is recorded
        and later asks for the same input are answered without reading it again."""
        if i.path not in self._inputs:
            path = self.run.verified(i.stage, i.path)  # refuses a missing or changed file
            self._inputs[i.path] = self.run.stage(i.stage)["outputs"][i.path]
            return path
        return self.run.path / i.path

    def begin(self, values: dict | None = None, **extra: object) -> StageRecord:
        """Verify every declared input not read yet and mark the stage running. ``values``:
        inputs that are no file of the run (the hash of a dataset), recorded beside the files'
        hashes; ``extra``: stored beside the record (e.g. the accelerator a training ran on)."""
        for i in self.spec.inputs:
            if not i.optional or self._present(i):
                self._verify(i)
        self._t0 = self.run.begin(
            self.name, self.config, {**self._inputs, **(values or {})}, **extra
        )
        return self

    def resumed(self) -> StageRecord:
        """Go on with a stage that began in an earlier process (a resumed training): its record
        stays; ``finish`` measures this process's part."""
        self._t0 = time.perf_counter()
        return self

    def input(self, path: str) -> Path:
        """A declared input, checked against its producer's hash (before or after ``begin``)."""
        for i in self.spec.inputs:
            if i.path == path:
                return self._verify(i)
        raise QdevError(f"stage {self.name}: {path} is not one of its declared inputs")

    def has_input(self, path: str) -> bool:
        """Whether an optional input was there (and recorded) when the stage began."""
        return path in self._inputs

    def outputs(self) -> list[Path]:
        """The declared outputs that exist now."""
        found: set[Path] = set()
        for pattern in self.spec.outputs:
            found.update(p for p in self.run.path.glob(pattern) if p.is_file())
        return sorted(found)

    def finish(
        self, status: str = "done", outputs: list[Path] | None = None, **extra: object
    ) -> None:
        """Record the outputs (default: the declared ones that exist), status and duration."""
        if self._t0 is None:
            raise QdevError(f"stage {self.name}: finished before it began")
        self.run.finish(
            self.name,
            self._t0,
            self.outputs() if outputs is None else outputs,
            status=status,
            **extra,
        )
