"""The pynq backend's packing equals FINN's driver packing; power meters read real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qdev.device.accel.pynq_backend import pack_innermost, unpack_innermost
from qdev.device.power import EstimateMeter, HwmonMeter, open_power_meter
from tests.device.helpers import SHIPPED

pytestmark = pytest.mark.device_env


DTYPES = [
    "UINT8",
    "INT8",
    "INT4",
    "UINT4",
    "INT2",
    "UINT3",
    "BIPOLAR",
    "BINARY",
    "UINT1",
    "INT16",
    "FIXED<8,4>",
    "FIXED<6,2>",
]


def _values(dtype: str, rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Random values of a FINN data type (FIXED: codes / 2**fraction bits)."""
    if dtype == "BIPOLAR":
        return rng.choice([-1, 1], shape)
    if dtype.startswith("FIXED"):
        w, i = (int(v) for v in dtype[6:-1].split(","))
        return rng.integers(-(2 ** (w - 1)), 2 ** (w - 1), shape) / 2.0 ** (w - i)
    from qdev.core.intmodel import dtype_range

    lo, hi = dtype_range(dtype)
    return rng.integers(lo, hi + 1, shape)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pack_unpack_round_trip(dtype):
    x = _values(dtype, np.random.default_rng(1), (2, 5, 7))
    b = pack_innermost(x, dtype)
    assert b.dtype == np.uint8
    assert np.array_equal(unpack_innermost(b, dtype, 7), x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_packing_matches_finn_data_packing(dtype):
    """Every data type FINN's driver handles, both directions, against FINN's own functions."""
    dp = pytest.importorskip(
        "finn.util.data_packing", reason="FINN lives in the workstation environment"
    )
    from qonnx.core.datatype import DataType

    rng = np.random.default_rng(2)
    for n in (1, 3, 5, 6, 8):
        x = _values(dtype, rng, (3, 4, n)).astype(np.float32)
        # what finn-plus-driver's pack_input / unpack_output do (reverse_endian, reverse_inner)
        ref = dp.finnpy_to_packed_bytearray(
            x, DataType[dtype], reverse_inner=True, reverse_endian=True
        )
        assert np.array_equal(pack_innermost(x, dtype), ref), (dtype, n)
        assert np.array_equal(unpack_innermost(ref, dtype, n), x), (dtype, n)
        if dtype.startswith("FIXED") and DataType[dtype].bitwidth() in (8, 16):
            # finn-plus 1.6.1's unpacking takes a "fast" path for 8/16-bit types that views the
            # bytes as DataType.to_numpy_dt(), float32 for FIXED: its result is garbage, so the
            # exact values above are the reference for these
            continue
        back = dp.packed_bytearray_to_finnpy(
            np.ascontiguousarray(ref),
            DataType[dtype],
            x.shape,
            reverse_inner=True,
            reverse_endian=True,
        )
        assert np.array_equal(unpack_innermost(ref, dtype, n), back), (dtype, n)


def test_hwmon_meter_reads_power_and_volt_current_files(tmp_path):
    a = tmp_path / "hwmon0"
    a.mkdir()
    (a / "name").write_text("ina260\n")
    (a / "power1_input").write_text("2500000\n")  # 2.5 W in microwatts
    b = tmp_path / "hwmon1"
    b.mkdir()
    (b / "name").write_text("ina226\n")
    (b / "in1_input").write_text("12000\n")  # mV
    (b / "curr1_input").write_text("500\n")  # mA -> 6 W
    m = open_power_meter("auto", {}, str(tmp_path))
    assert isinstance(m, HwmonMeter)
    r = m.read()
    assert r.kind == "measured" and abs(r.watts - 8.5) < 1e-9


def test_estimate_meter_uses_bundle_resources_and_says_estimated(tmp_path):
    man = json.loads((SHIPPED["KV260"] / "manifest.json").read_text())
    m = open_power_meter("auto", man, str(tmp_path / "no-hwmon"))
    assert isinstance(m, EstimateMeter)
    idle, busy = m.read(False), m.read(True)
    assert idle.kind == busy.kind == "estimated"
    assert idle.watts == pytest.approx(9.15)  # KV260 static, sourced in device/power.py
    res = man["estimates"]["resources"]
    dyn = (
        200.0
        * (res["LUT"]["used"] * 0.05 + res["BRAM_18K"]["used"] * 1.5 + res["DSP"]["used"] * 1.0)
        * 1e-6
    )
    assert busy.watts - idle.watts == pytest.approx(dyn)
    with pytest.raises(Exception, match="no power sensors"):
        open_power_meter("hwmon", man, str(tmp_path / "none"))


def _best_cpu_backend() -> str:
    """onnx where onnxruntime imports, else the numpy software backend."""
    import importlib.util

    return (
        "onnx"
        if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx")
        else "software"
    )


def test_pynq_backend_refuses_estimate_only_bundles_and_auto_falls_back():
    from qdev.device.accel.backend import open_accelerator
    from qdev.core.errors import QdevError

    man = json.loads((SHIPPED["KV260"] / "manifest.json").read_text())
    with pytest.raises(QdevError, match="estimate-only"):
        open_accelerator(SHIPPED["KV260"], man, "pynq")
    acc = open_accelerator(SHIPPED["KV260"], man, "auto")
    assert acc.name == _best_cpu_backend()
    px = np.load(Path(SHIPPED["KV260"]) / "golden_pixels.npy")
    exp = np.load(Path(SHIPPED["KV260"]) / "golden_codes.npy")
    assert np.array_equal(acc.run(px), exp.reshape(acc.run(px).shape))
