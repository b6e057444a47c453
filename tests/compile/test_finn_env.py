"""What qdev patches in finn-plus is listed (training/compile/finn_env.py: PATCHES), and this test
fails when the installed finn-plus changes what a patch relies on."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

from qdev.training.compile.finn_env import FINN_VERSION, PATCHES


def test_the_patches_are_written_against_the_installed_finn_plus():
    assert importlib.metadata.version("finn-plus") == FINN_VERSION, (
        "finn-plus changed: look at every entry of finn_env.PATCHES again, then update FINN_VERSION"
    )


def test_every_patched_thing_is_still_there_and_still_needed(tmp_path):
    """In a fresh interpreter without Vivado: finn.xsi still lacks SimEngine (so the patch is still
    needed), the settings cache and set_console still exist, and after boot_finn the builder's
    steps import."""
    code = f"""
import os
os.environ.pop("XILINX_VIVADO", None)
import finn.xsi as xsi
assert "SimEngine" not in vars(xsi), "finn.xsi defines SimEngine without Vivado: drop that patch"
import finn.util.settings as fs
assert hasattr(fs, "_SETTINGS"), "finn.util.settings._SETTINGS is gone: rework the reset patch"
import finn.util.logging as fl
assert callable(getattr(fl, "set_console", None)), "finn.util.logging.set_console is gone"
from qdev.training.compile.finn_env import boot_finn
viv = boot_finn(r"{tmp_path / "build"}")
assert not viv.available
import finn.builder.build_dataflow_steps  # imports now, thanks to the SimEngine patch
assert os.environ["FINN_BUILD_DIR"].endswith("build")
assert os.environ["FINN_SETTINGS"].endswith(".yaml")
print("ok")
"""
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in __import__("os").environ.items() if k != "XILINX_VIVADO"},
    )
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
    assert {p.target for p in PATCHES} >= {"finn.xsi.SimEngine", "finn.util.settings._SETTINGS"}


def test_every_step_takes_the_context_as_an_argument(tmp_path, monkeypatch) -> None:
    """qdev's state reaches its steps as their third argument, not hung on FINN's config object."""
    import inspect

    from qdev.training.compile.finn_env import boot_finn

    for var in ("FINN_BUILD_DIR", "FINN_SETTINGS"):  # restored after the test
        monkeypatch.setenv(var, "")
    from qdev.training.compile.build_steps import BUILD_STEPS
    from qdev.training.compile.registry import step_lookup

    boot_finn(tmp_path / "finn_build")
    lookup = step_lookup()
    for name, step in lookup.items():
        assert list(inspect.signature(step, follow_wrapped=False).parameters) == [
            "model",
            "cfg",
            "ctx",
        ], name
    assert BUILD_STEPS.keys() <= lookup.keys()
    for name, step in BUILD_STEPS.items():  # qdev's own build steps use it (no wrapper)
        assert lookup[name] is step
