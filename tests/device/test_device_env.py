"""The board-side package imports without torch, Brevitas, FINN or Click, on numpy 1.26 and 2.x."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.device_env


def test_device_imports_nothing_heavy():
    code = (
        "import sys, device, device.probe, device.errors\n"
        "bad = [m for m in ('torch', 'brevitas', 'finn', 'qonnx', 'click', 'training', 'host') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_numpy_major_is_supported():
    import numpy as np

    assert int(np.__version__.split(".")[0]) in (1, 2)
