"""The pynq backend's packing equals FINN's driver packing; power meters read real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from device.accel.pynq_backend import pack_innermost, unpack_innermost
from device.power import EstimateMeter, HwmonMeter, open_power_meter
from tests.device.helpers import SHIPPED

pytestmark = pytest.mark.device_env


@pytest.mark.parametrize("dtype", ["UINT8", "INT8", "INT4", "UINT4", "INT2", "BIPOLAR", "UINT3"])
def test_pack_unpack_round_trip(dtype):
    from device.accel.intmodel import dtype_range

    lo, hi = dtype_range(dtype)
    rng = np.random.default_rng(1)
    x = rng.integers(lo, hi + 1, (2, 5, 7))
    b = pack_innermost(x, dtype)
    assert b.dtype == np.uint8
    assert np.array_equal(unpack_innermost(b, dtype, 7), x)


def test_packing_matches_finn_data_packing():
    dp = pytest.importorskip("finn.util.data_packing", reason="FINN lives in the workstation environment")
    from qonnx.core.datatype import DataType

    rng = np.random.default_rng(2)
    for dtype, n in (("UINT8", 1), ("INT4", 6), ("INT2", 5), ("UINT3", 4), ("INT8", 3)):
        lo, hi = DataType[dtype].min(), DataType[dtype].max()
        x = rng.integers(lo, hi + 1, (3, 4, n)).astype(np.float32)
        # what finn-plus-driver's pack_input does (reverse_endian=True, reverse_inner=True)
        ref = dp.finnpy_to_packed_bytearray(x, DataType[dtype], reverse_inner=True, reverse_endian=True)
        assert np.array_equal(pack_innermost(x, dtype), ref), dtype


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
    dyn = 200.0 * (res["LUT"]["used"] * 0.05 + res["BRAM_18K"]["used"] * 1.5 + res["DSP"]["used"] * 1.0) * 1e-6
    assert busy.watts - idle.watts == pytest.approx(dyn)
    with pytest.raises(Exception, match="no power sensors"):
        open_power_meter("hwmon", man, str(tmp_path / "none"))


def test_pynq_backend_refuses_estimate_only_bundles_and_auto_falls_back():
    from device.accel.backend import open_accelerator
    from device.errors import QdevError

    man = json.loads((SHIPPED["KV260"] / "manifest.json").read_text())
    with pytest.raises(QdevError, match="estimate-only"):
        open_accelerator(SHIPPED["KV260"], man, "pynq")
    acc = open_accelerator(SHIPPED["KV260"], man, "auto")
    assert acc.name == "software"
    px = np.load(Path(SHIPPED["KV260"]) / "golden_pixels.npy")
    exp = np.load(Path(SHIPPED["KV260"]) / "golden_codes.npy")
    assert np.array_equal(acc.run(px), exp.reshape(acc.run(px).shape))
