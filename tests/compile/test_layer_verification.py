"""What the bundle and `qdev info` say was verified per layer type: only what a simulation step
recorded, each layer in its own hardware language, "not run" where no step ran."""

from __future__ import annotations

from qdev.training.compile.finn_env import VivadoInfo
from qdev.training.compile.summary import layer_verification, verification_modes


def _t(nodes: int, simulated: int, exact: int, reason=None, note=None) -> dict:  # noqa: ANN001
    return {
        "nodes": nodes,
        "simulated": simulated,
        "bit_exact": exact,
        "reason": reason,
        "note": note,
    }


def test_each_layer_type_reports_its_own_languages_simulation():
    v = {
        "qdev_cppsim": {
            "exec_mode": "cppsim",
            "by_type": {
                "MVAU_hls": _t(23, 23, 23),
                "FMPadding_rtl": _t(2, 0, 0, reason="RTL layer"),
            },
        },
        "qdev_verilator": {
            "exec_mode": "verilator",
            "by_type": {"FMPadding_rtl": _t(2, 2, 1), "MVAU_rtl": _t(3, 3, 3, note="behavioural")},
        },
    }
    got = layer_verification(v)
    assert got["MVAU_hls"] == {
        "nodes": 23,
        "python": True,
        "cppsim": "23/23 bit-exact",
        "verilator": "-",
    }
    assert (
        got["FMPadding_rtl"]["cppsim"] == "-"
        and got["FMPadding_rtl"]["verilator"] == "1/2 bit-exact"
    )
    assert got["MVAU_rtl"]["verilator"] == "3/3 bit-exact (behavioural)"
    modes = verification_modes(v, VivadoInfo(False, None, "no vivado"))
    assert modes["modes_run"] == ["cppsim", "verilator"] and set(modes["not_run"]) == {
        "rtlsim",
        "stitched",
    }


def test_a_step_that_did_not_run_is_never_claimed():
    v = {
        "qdev_cppsim": {
            "exec_mode": "cppsim",
            "by_type": {"Pool_hls": _t(4, 4, 4), "Thresholding_rtl": _t(5, 0, 0)},
        }
    }
    got = layer_verification(v)
    assert (
        got["Thresholding_rtl"]["verilator"] == "not run"
        and got["Pool_hls"]["cppsim"] == "4/4 bit-exact"
    )
    v = {
        "qdev_verilator": {
            "exec_mode": "verilator",
            "by_type": {"Pool_hls": _t(4, 0, 0), "FMPadding_rtl": _t(1, 0, 0, reason="hung")},
        }
    }
    got = layer_verification(v)
    assert (
        got["Pool_hls"]["cppsim"] == "not run"
        and got["FMPadding_rtl"]["verilator"] == "not simulated: hung"
    )
    assert "verilator" in verification_modes({}, VivadoInfo(False, None, "x"))["not_run"]
