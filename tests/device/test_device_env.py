"""The board-side package imports without torch, Brevitas, FINN or Click, on numpy 1.26 and 2.x:
every module of ``qdev.device`` and ``qdev.core``, walked, not a chosen few."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.device_env

WALK = (
    "import importlib, pkgutil, sys\n"
    "import qdev.device as pkg, qdev.core as core\n"
    "names = [m.name for m in pkgutil.walk_packages(pkg.__path__, 'qdev.device.')]\n"
    "names += [m.name for m in pkgutil.walk_packages(core.__path__, 'qdev.core.')]\n"
    "for n in names: importlib.import_module(n)\n"
    "heavy = ('torch', 'brevitas', 'finn', 'qonnx', 'click', 'onnx', 'qdev.training', "
    "'qdev.host')\n"
    "bad = sorted({m for m in sys.modules for h in heavy if m == h or m.startswith(h + '.')})\n"
    "print(len(names)); print(','.join(bad))\n"
)


def test_every_device_module_imports_nothing_heavy():
    out = subprocess.run([sys.executable, "-c", WALK], capture_output=True, text=True, check=True)
    count, bad = (out.stdout.splitlines() + [""])[:2]
    assert int(count) >= 25, out.stdout  # the walk really covered the package
    assert bad == "", f"device modules pull in {bad}"


def test_numpy_major_is_supported():
    import numpy as np

    assert int(np.__version__.split(".")[0]) in (1, 2)
