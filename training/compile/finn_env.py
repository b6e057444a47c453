"""Make finn-plus usable without Vivado (estimate-only builds), and detect Vivado for synthesis.

finn-plus 1.6.1 needs ``FINN_BUILD_DIR`` and ``FINN_SETTINGS`` (else it writes ``~/.finn``), and
``finn.builder.build_dataflow_steps`` does ``from finn.xsi import SimEngine`` at import time, which
raises ``OSError: XILINX_VIVADO environment variable not set`` without Vivado. :func:`boot_finn`
points both variables into the compile folder and, only when Vivado is absent, binds
``finn.xsi.SimEngine`` to None so the import succeeds; rtlsim (the only user of it) is never
called in that case.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["VivadoInfo", "boot_finn", "find_vivado", "PATCHES", "Patch", "FINN_VERSION"]

#: the finn-plus release these patches were written against (tests/compile/test_finn_env.py
#: fails when another one is installed, so each patch is looked at again)
FINN_VERSION = "1.6.1"


@dataclass(frozen=True)
class Patch:
    """One thing qdev changes in finn-plus's process state, and why."""

    target: str  # dotted name of what is written
    what: str
    why: str


#: Everything :func:`boot_finn` writes outside qdev, in the order it does.
PATCHES = (
    Patch(
        "os.environ['FINN_BUILD_DIR']",
        "the compile's own finn_build folder",
        "finn-plus writes its code generation there; unset, it uses a global folder",
    ),
    Patch(
        "os.environ['FINN_SETTINGS']",
        "an empty settings file in that folder",
        "unset, finn-plus reads and writes ~/.finn",
    ),
    Patch(
        "os.environ['XILINX_VIVADO']",
        "Vivado's root, when it is on PATH but the variable is unset",
        "finn-plus finds Vivado only through the variable",
    ),
    Patch(
        "finn.xsi.SimEngine",
        "None, only when Vivado is absent",
        "finn.builder.build_dataflow_steps imports it at import time and finn.xsi raises without "
        "XILINX_VIVADO; rtlsim, its only user, is never called then",
    ),
    Patch(
        "finn.util.logging console",
        "a rich Console on stderr (finn.util.logging.set_console)",
        "FINN logs to stdout by default; qdev keeps stdout for results (--json)",
    ),
    Patch(
        "finn.util.settings._SETTINGS",
        "None",
        "finn-plus caches its settings; reset so this build's are read",
    ),
)


@dataclass(frozen=True)
class VivadoInfo:
    available: bool
    path: str | None
    reason: str


def find_vivado() -> VivadoInfo:
    """Vivado is usable when ``XILINX_VIVADO`` points at an install with ``bin/vivado``, or
    ``vivado`` is on PATH (then ``XILINX_VIVADO`` is derived from it)."""
    env = os.environ.get("XILINX_VIVADO")
    if env:
        if (Path(env) / "bin" / "vivado").exists():
            return VivadoInfo(True, env, f"XILINX_VIVADO={env}")
        return VivadoInfo(False, None, f"XILINX_VIVADO={env} has no bin/vivado")
    exe = shutil.which("vivado")
    if exe:
        root = str(Path(exe).resolve().parents[1])
        return VivadoInfo(True, root, f"vivado on PATH ({exe})")
    return VivadoInfo(False, None, "no XILINX_VIVADO and no vivado on PATH")


def boot_finn(build_dir: Path) -> VivadoInfo:
    """Set up finn-plus for this process (every change is listed in :data:`PATCHES`); idempotent.
    Returns what was found of Vivado."""
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    os.environ["FINN_BUILD_DIR"] = str(build_dir)
    settings = build_dir / "finn_settings.yaml"
    if not settings.exists():
        settings.write_text(
            "# written by qdev: finn-plus defaults, build dir from FINN_BUILD_DIR\n{}\n"
        )
    os.environ["FINN_SETTINGS"] = str(settings)
    viv = find_vivado()
    if viv.available and not os.environ.get("XILINX_VIVADO"):
        os.environ["XILINX_VIVADO"] = viv.path or ""
    import finn.xsi as xsi

    if not viv.available and "SimEngine" not in vars(xsi):
        xsi.SimEngine = None  # see module doc: lets build_dataflow_steps import without Vivado
    import finn.util.settings as fs
    from finn.util.logging import set_console
    from rich.console import Console

    set_console(
        Console(stderr=True)
    )  # FINN's log goes to stdout by default: keep stdout for results

    fs._SETTINGS = None  # re-read from the environment of this build
    return viv
