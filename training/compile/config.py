"""The compile stage's configuration: one dataclass, steps as data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from qdev.core.errors import ConfigError
from qdev.training.compile.boards import Board, get_board

__all__ = ["CompileConfig", "DEFAULT_STEPS", "DEFAULT_VERIFY_AFTER", "VERIFY_STEPS", "DEFAULT_FPS"]

#: The build, in order. FINN's own steps by their builder names, qdev's prefixed ``qdev_``.
DEFAULT_STEPS: list[str] = [
    "step_qonnx_to_finn",
    "step_tidy_up",
    "qdev_pixel_input",
    "qdev_streamline_unet",
    "qdev_lower_unet",
    "qdev_strip_io",
    "qdev_convert_to_hw",
    "step_create_dataflow_partition",
    "step_specialize_layers",
    "qdev_fold",
    "step_minimize_bit_width",
    "qdev_fifo_depths",
    "step_generate_estimate_reports",
    "qdev_integer_model",
    "qdev_bitstream",
]

#: Steps after which FINN's python execution is compared with the QONNX golden output (default).
DEFAULT_VERIFY_AFTER = (
    "step_tidy_up",
    "qdev_streamline_unet",
    "qdev_lower_unet",
    "qdev_strip_io",
    "qdev_convert_to_hw",
)

#: Target frames/s when --fps is not given (the issue's targets at 128x128).
DEFAULT_FPS = {"Pynq-Z2": 30.0, "Ultra96-V2": 60.0, "ZCU104": 200.0, "KV260": 200.0}

#: ``--verify`` mode -> the step that performs it (added before the bitstream, in this order).
VERIFY_STEPS = {"cppsim": "qdev_cppsim", "verilator": "qdev_verilator", "stitched": "qdev_stitched"}


@dataclass
class CompileConfig:
    """Options of one compile.

    Attributes:
        board: target board name (see :mod:`training.compile.boards`).
        fps: target frames per second (None: the board's default target).
        clock_ns: fabric clock period (None: the board's default).
        steps: the build steps, in order.
        start_step / stop_step: run only a slice of ``steps`` (inclusive), resuming from the
            intermediate model saved by the step before ``start_step``.
        max_utilisation: fraction of each resource the accelerator may use (the rest is the
            shell: DMA engines, interconnect, FIFOs).
        mvau_wwidth_max: FINN's cap on an MVAU's weight stream width (bits).
        standalone_thresholds: thresholds as separate layers (fewer LUTs on this U-Net).
        verify: extra verification modes, each a step before the bitstream: ``cppsim`` adds
            ``qdev_cppsim`` (HLS C++ simulation of every HLS node, :mod:`.cppsim`), ``verilator``
            adds ``qdev_verilator`` (every RTL node's SystemVerilog in Verilator, :mod:`.verilate`),
            ``stitched`` adds ``qdev_stitched`` (all nodes at once through FIFOs of the chosen
            depths, :mod:`.stitch`).
        hls_deps: the open-source HLS headers for cppsim (None: ``$QDEV_HLS_DEPS`` or
            ``../shared/vendor``).
        cppsim_opt: g++ optimisation flag of the node simulators.
        verilator_opt: C++ optimisation flag of the verilated layer models.
        verify_after: steps after which FINN's python execution of the graph is compared with
            the QONNX golden output (a difference stops the build).
    """

    board: str = "KV260"
    fps: float | None = None
    clock_ns: float | None = None
    steps: list[str] = field(default_factory=lambda: list(DEFAULT_STEPS))
    start_step: str | None = None
    stop_step: str | None = None
    max_utilisation: float = 0.85
    mvau_wwidth_max: int = 36
    standalone_thresholds: bool = True
    verify: tuple[str, ...] = ()
    hls_deps: str | None = None
    cppsim_opt: str = "-O2"
    verilator_opt: str = "-O1"
    verify_after: tuple[str, ...] = DEFAULT_VERIFY_AFTER

    def __post_init__(self) -> None:
        unknown = set(self.verify) - set(VERIFY_STEPS)
        if unknown:
            raise ConfigError(
                f"--verify {', '.join(sorted(unknown))}: the modes are: {', '.join(VERIFY_STEPS)}"
            )
        for mode, step in VERIFY_STEPS.items():  # in this order, before the bitstream
            if mode in self.verify and step not in self.steps:
                at = (
                    self.steps.index("qdev_bitstream")
                    if "qdev_bitstream" in self.steps
                    else len(self.steps)
                )
                self.steps = [*self.steps[:at], step, *self.steps[at:]]

    @property
    def board_info(self) -> Board:
        return get_board(self.board)

    @property
    def clock(self) -> float:
        return self.clock_ns or self.board_info.clock_ns

    @property
    def target_fps(self) -> float:
        return self.fps or DEFAULT_FPS[self.board_info.name]

    def to_dict(self) -> dict:
        return asdict(self)
