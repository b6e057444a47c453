"""What qdev's build steps share during one compile: the :class:`StepContext` (handed to each of
qdev's own steps as its third argument, never hung on FINN's build config) and
:class:`StopBuild` (a step ends the build on purpose)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


from qdev.core.golden import GoldenBatch
from qdev.training.compile.boards import Board
from qdev.training.compile.config import CompileConfig
from qdev.training.compile.finn_env import VivadoInfo
from qdev.training.runs import RunFolder

__all__ = ["StepContext", "StopBuild"]


class StopBuild(Exception):
    """A step ends the build early on purpose (e.g. no Vivado for synthesis)."""


@dataclass
class StepContext:
    cfg: CompileConfig
    board: Board
    out: Path
    golden: GoldenBatch  # the export's golden batch, in the hardware's layout (core/golden.py)
    out_scale: float
    vivado: VivadoInfo
    run: RunFolder
    folding: dict | None = None
    intmodel: dict | None = None
    bitstream: dict | None = None
    fifos: dict | None = (
        None  # qdev_fifo_depths: the plan, FINN's cost of it, the stitched token simulation
    )
    verification: dict = field(default_factory=dict)  # step name -> verify_model() result
    # python execution of the specialised graph on the golden frames, shared by the simulation
    # steps of one build: (sha256 of the graph, contexts, equals the unspecialised graph)
    sim_reference: tuple | None = None
