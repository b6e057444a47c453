"""Power meters. Every reading says whether it was ``measured`` or ``estimated``.

* :class:`PmbusMeter`: the board's PMBus rails through ``pynq.get_rails()`` (ZCU104, Ultra96-V2
  with Avnet's support); ``pynq.DataRecorder`` records them with a mark per phase.
* :class:`HwmonMeter`: Linux hwmon sysfs (``power*_input`` in microwatts, or ``in*_input`` (mV)
  times ``curr*_input`` (mA) of the same index) - the INA226/INA260 sensors that carrier boards
  and USB power meters expose.
* :class:`EstimateMeter`: a documented model where nothing is measurable: board power =
  static board power + FPGA dynamic power from the bundle's resource estimates and clock,
  ``P_dyn = f_MHz * (LUT * 0.05 + BRAM18 * 1.5 + DSP * 1.0 + URAM * 3.0) uW`` while the
  accelerator runs, 0 when idle.

Sources. One figure here has a source that was checked: the KV260's 9.15 W idle at its 12 V
input (Simfero, "What One Inference Costs in Watts", dAIEDGE project, March 2026: shunt at the
12 V DC input, 9.15 W idle and 10.13 W under DPU load). Everything else is an **assumption**:
the other boards' static power, and the dynamic coefficients (of the order of Xilinx's XPE
defaults at 12.5 % toggle rate, not fitted to any measurement). :data:`ASSUMPTIONS` lists them,
and every estimated reading carries that list (``EstimateMeter.describe()["assumptions"]``) and
says "assumption" in its source text.

``open_power_meter("auto")`` picks PMBus, then hwmon, then the estimate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from qdev.device.accel.backend import clock_mhz

__all__ = [
    "PowerReading",
    "PowerMeter",
    "PmbusMeter",
    "HwmonMeter",
    "EstimateMeter",
    "open_power_meter",
    "STATIC_W",
    "DYN_UW_PER_MHZ",
    "ASSUMPTIONS",
    "estimate_split",
]

# Static (idle) board power, W, at the board's main supply, and where the figure comes from.
STATIC_W: dict[str, tuple[float, str]] = {
    "KV260": (
        9.15,
        "measured at the 12 V input, idle: Simfero, 'What one inference costs in watts' (2026), "
        "simfero.eu knowledge base",
    ),
    "ZCU104": (
        12.0,
        "assumption (no measured source checked): larger board than KV260 "
        "(ZU7EV, more peripherals)",
    ),
    "Ultra96-V2": (5.0, "assumption (no measured source checked)"),
    "Pynq-Z2": (2.5, "assumption (no measured source checked)"),
}
#: what the estimate rests on without a checked source
ASSUMPTIONS = (
    "dynamic power coefficients (uW per MHz per LUT/BRAM18/DSP/URAM): assumed, of the order of "
    "XPE defaults at 12.5 % toggle; not fitted to a measurement",
)
POWER_MONITORS = ["ina226", "ina260", "ina219"]  # hwmon driver names of board power monitors
DYN_UW_PER_MHZ = {"LUT": 0.05, "BRAM_18K": 1.5, "DSP": 1.0, "URAM": 3.0}


@dataclass(frozen=True)
class PowerReading:
    watts: float
    kind: str  # "measured" | "estimated"
    source: str
    t: float


class PowerMeter:
    """``read(active)`` -> total board power now (``active``: the accelerator is running)."""

    kind = "estimated"
    source = "none"

    def read(self, active: bool = False) -> PowerReading:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"kind": self.kind, "source": self.source}


class PmbusMeter(PowerMeter):
    kind = "measured"

    def __init__(self, rails: dict) -> None:
        self.rails = rails
        self.source = "pmbus:" + ",".join(sorted(rails))

    @staticmethod
    def available() -> dict | None:
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pynq warns when libsensors is missing (no board)
                import pynq

                rails = pynq.get_rails()
        except Exception:  # no pynq, or pynq without a board raises/returns {}
            return None
        return rails or None

    def record(self, interval_s: float = 0.1):  # noqa: ANN201
        """A started ``pynq.DataRecorder`` over the rails; call ``.mark()`` at each phase change
        (idle / streaming / ...) and ``.stop()``; its ``.frame`` holds the samples with a
        ``Mark`` column. Needs a board with PMBus rails (not exercised here: none exists)."""
        import pynq

        rec = pynq.DataRecorder(
            *[r.power for r in self.rails.values() if getattr(r, "power", None) is not None]
        )
        rec.record(interval_s)
        return rec

    def read(self, active: bool = False) -> PowerReading:
        w = 0.0
        for rail in self.rails.values():
            p = getattr(rail, "power", None)
            if p is not None:
                w += float(p.value)
        return PowerReading(w, "measured", self.source, time.time())


class HwmonMeter(PowerMeter):
    kind = "measured"

    def __init__(
        self, root: Path | str = "/sys/class/hwmon", names: list[str] | None = None
    ) -> None:
        self.root = Path(root)
        self.sensors = _hwmon_sensors(self.root, names)
        self.source = "hwmon:" + ",".join(s[0] for s in self.sensors)

    @staticmethod
    def available(root: Path | str = "/sys/class/hwmon", names: list[str] | None = None) -> bool:
        return bool(_hwmon_sensors(Path(root), names))

    def read(self, active: bool = False) -> PowerReading:
        w = 0.0
        for _, kind, a, b in self.sensors:
            try:
                if kind == "power":
                    w += int(a.read_text()) * 1e-6
                else:
                    w += int(a.read_text()) * 1e-3 * int(b.read_text()) * 1e-3
            except (OSError, ValueError):
                continue
        return PowerReading(w, "measured", self.source, time.time())


def _hwmon_sensors(root: Path, names: list[str] | None) -> list[tuple[str, str, Path, Path | None]]:
    out: list = []
    if not root.is_dir():
        return out
    for hw in sorted(root.iterdir()):
        try:
            name = (hw / "name").read_text().strip()
        except OSError:
            continue
        if names is not None and name not in names:
            continue
        powers = sorted(hw.glob("power*_input"))
        if powers:
            out += [(f"{name}/{p.name}", "power", p, None) for p in powers]
            continue
        for vin in sorted(hw.glob("in*_input")):
            idx = vin.name[2:-6]
            cur = hw / f"curr{idx}_input"
            if cur.is_file():
                out.append((f"{name}/{vin.name}", "vi", vin, cur))
    return out


def estimate_split(board: str, mhz: float, resources: dict) -> dict:
    """The estimate's parts: static board power (with its source or "assumption") and FPGA dynamic
    power from ``resources`` (``{"LUT": n | {"used": n}, ...}``) at ``mhz``, with the
    assumptions."""
    static_w, static_source = STATIC_W.get(board, (5.0, "assumption: unknown board"))
    uw = sum(_used(resources.get(k)) * c for k, c in DYN_UW_PER_MHZ.items())
    assumed = (
        [f"{board} static power: {static_source}"] if static_source.startswith("assumption") else []
    )
    return {
        "static_w": static_w,
        "static_source": static_source,
        "dynamic_w": mhz * uw * 1e-6,
        "assumptions": assumed + list(ASSUMPTIONS),
    }


class EstimateMeter(PowerMeter):
    kind = "estimated"

    def __init__(self, manifest: dict) -> None:
        board = manifest.get("board", "")
        mhz = clock_mhz(manifest) or 100.0
        est = manifest.get("estimates") or {}
        # the accelerator with its FIFOs where the bundle records them
        res = est.get("resources_with_fifos") or est.get("resources") or {}
        split = estimate_split(board, mhz, res)
        self.static_w, self.static_source = split["static_w"], split["static_source"]
        self.dynamic_w, self.assumptions = split["dynamic_w"], split["assumptions"]
        static_kind = (
            "assumption" if self.static_source.startswith("assumption") else "measured idle, cited"
        )
        self.source = (
            f"estimate: static {self.static_w:.2f} W ({board}, {static_kind}) + dynamic "
            f"{self.dynamic_w:.3f} W ({mhz:.0f} MHz x resources, assumed coefficients)"
        )

    def read(self, active: bool = False) -> PowerReading:
        return PowerReading(
            self.static_w + (self.dynamic_w if active else 0.0),
            "estimated",
            self.source,
            time.time(),
        )

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "source": self.source,
            "static_w": self.static_w,
            "static_source": self.static_source,
            "dynamic_w": self.dynamic_w,
            "coefficients_uw_per_mhz": DYN_UW_PER_MHZ,
            "assumptions": self.assumptions,
        }


def _used(entry) -> float:  # noqa: ANN001 - {"used": n, ...} in bundle manifests, or a number
    if isinstance(entry, dict):
        return float(entry.get("used", 0) or 0)
    return float(entry or 0)


def open_power_meter(kind: str, manifest: dict, hwmon_root: str = "/sys/class/hwmon") -> PowerMeter:
    """``auto`` | ``pmbus`` | ``hwmon`` | ``estimate``."""
    from qdev.core.errors import ConfigError

    if kind in ("auto", "pmbus"):
        rails = PmbusMeter.available()
        if rails:
            return PmbusMeter(rails)
        if kind == "pmbus":
            raise ConfigError("--power pmbus: pynq reports no PMBus rails on this machine")
    if kind in ("auto", "hwmon"):
        # auto: only power monitors; --power hwmon: any sensor with power or volt+current files
        names = None if kind == "hwmon" else POWER_MONITORS
        if HwmonMeter.available(hwmon_root, names):
            return HwmonMeter(hwmon_root, names)
        if kind == "hwmon":
            raise ConfigError(f"--power hwmon: no power sensors under {hwmon_root}")
    if kind in ("auto", "estimate"):
        return EstimateMeter(manifest)
    raise ConfigError(f"--power must be auto, pmbus, hwmon or estimate, not {kind!r}")
