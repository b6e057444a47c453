"""The four target boards: FPGA part, resources, default clock, power facts.

Resources are the parts' totals from AMD's product tables (DS190 Zynq-7000, DS891 Zynq
UltraScale+ MPSoC; BRAM as 36 Kb blocks): xc7z020 53,200 LUT / 140 BRAM36 / 220 DSP;
xczu3eg 70,560 LUT / 216 BRAM36 / 360 DSP; xczu7ev 230,400 LUT / 312 BRAM36 / 96 URAM /
1,728 DSP; xck26 (KV260's K26 SOM, a zu5ev-class die) 117,120 LUT / 144 BRAM36 / 64 URAM /
1,248 DSP. ``finn_board`` is the name FINN's builder uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from qdev.core.errors import ConfigError

__all__ = ["Board", "BOARDS", "get_board"]


@dataclass(frozen=True)
class Board:
    name: str
    finn_board: str
    part: str
    lut: int
    bram36: int
    uram: int
    dsp: int
    clock_ns: float  # default fabric clock used for estimates
    pmbus: bool  # PMBus power rails readable through pynq.get_rails()

    @property
    def capacity(self) -> dict[str, int]:
        return {"LUT": self.lut, "BRAM_18K": 2 * self.bram36, "URAM": self.uram, "DSP": self.dsp}


BOARDS: dict[str, Board] = {
    b.name: b
    for b in (
        Board("Pynq-Z2", "Pynq-Z2", "xc7z020clg400-1", 53_200, 140, 0, 220, 10.0, False),
        Board("Ultra96-V2", "Ultra96-V2", "xczu3eg-sbva484-1-i", 70_560, 216, 0, 360, 5.0, True),
        Board("ZCU104", "ZCU104", "xczu7ev-ffvc1156-2-e", 230_400, 312, 96, 1_728, 5.0, True),
        Board("KV260", "KV260_SOM", "xck26-sfvc784-2LV-c", 117_120, 144, 64, 1_248, 5.0, False),
    )
}


def get_board(name: str) -> Board:
    for k, b in BOARDS.items():
        if k.lower() == name.lower():
            return b
    raise ConfigError(f"unknown board {name!r}; choose one of {', '.join(BOARDS)}")
