"""The compile stage's configuration: one dataclass, steps as data."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from qdev.core.errors import ConfigError
from qdev.core.fields import no_option, opt
from qdev.training.compile.boards import BOARDS, Board, get_board

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

_OPT_LEVELS = ("-O0", "-O1", "-O2", "-O3")

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

    board: str = opt(
        "KV260", required=True, choices=tuple(BOARDS), any_case=True, help="Target board."
    )
    fps: float | None = opt(None, help="Target frames/s (default: the board's target).")
    clock_ns: float | None = opt(None, help="Fabric clock period (default: the board's).")
    steps: list[str] = no_option(
        "the build is data: a library caller passes its own list; the command line runs a slice "
        "of it (--start-step/--stop-step)",
        default_factory=lambda: list(DEFAULT_STEPS),
    )
    start_step: str | None = opt(None, help="Resume the build at this step.")
    stop_step: str | None = opt(None, help="Stop the build after this step.")
    max_utilisation: float = opt(
        0.85,
        help="Fraction of each resource the accelerator may use (the rest is the shell: DMA, "
        "interconnect).",
    )
    mvau_wwidth_max: int = opt(
        36,
        help="FINN's cap on an MVAU's weight-stream width in bits (SIMD x PE x weight bits, "
        "8..4096); raising it lets the folding go faster at more LUTs.",
    )
    standalone_thresholds: bool = opt(
        True,
        decl="--standalone-thresholds/--fused-thresholds",
        help="Thresholds as layers of their own (fewer LUTs on this U-Net) or inside the MVAUs.",
    )
    verify: tuple[str, ...] = opt(
        (),
        choices=tuple(VERIFY_STEPS),
        help="Also simulate the hardware's own code on the golden batch, against python execution "
        "(repeatable): cppsim = every HLS layer's generated C++ compiled against open-source HLS "
        "headers (no Vitis needed); verilator = every RTL layer's SystemVerilog in Verilator "
        "(no Vivado needed); stitched = all layers at once in those languages, connected by FIFOs "
        "of the chosen depths, golden frames back to back, deadlocks detected and named.",
    )
    hls_deps: str | None = opt(
        None,
        path="dir",
        help="Folder with finn-hlslib, finn-hlslib-newer and HLS_arbitrary_Precision_Types "
        "(default: $QDEV_HLS_DEPS or ../shared/vendor).",
    )
    cppsim_opt: str = opt(
        "-O2", choices=_OPT_LEVELS, help="g++ optimisation of the node simulators."
    )
    verilator_opt: str = opt(
        "-O1", choices=_OPT_LEVELS, help="C++ optimisation of the verilated layer models."
    )
    verify_after: tuple[str, ...] = no_option(
        "where the build compares FINN's execution with the golden output is part of the build's "
        "definition, as the steps are",
        DEFAULT_VERIFY_AFTER,
    )

    def __post_init__(self) -> None:
        if not 8 <= self.mvau_wwidth_max <= 4096:
            raise ConfigError(f"--mvau-wwidth-max {self.mvau_wwidth_max}: must be 8..4096 bits")
        if not 0.0 < self.max_utilisation <= 1.0:
            raise ConfigError(
                f"--max-utilisation {self.max_utilisation}: a fraction in (0, 1], e.g. 0.85"
            )
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
