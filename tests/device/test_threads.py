"""BLAS/OpenMP pinning of the device runtime (both environments) and the one percentile helper."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.device_env


def test_pin_threads_limits_every_loaded_pool_and_children():
    code = (
        "import os, json\n"
        "from qdev.core.threads import pin_threads\n"
        "from threadpoolctl import threadpool_info\n"
        "r = pin_threads(1)\n"
        "print(json.dumps([r['threads'], [p['num_threads'] for p in threadpool_info()], "
        "os.environ['OPENBLAS_NUM_THREADS']]))\n"
    )
    import json

    env_threads = {"OPENBLAS_NUM_THREADS": "", "OMP_NUM_THREADS": ""}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, **env_threads},
    )
    n, pools, env = json.loads(out.stdout)
    assert n == 1 and pools and set(pools) == {1} and env == "1"


def test_bad_thread_counts_are_refused():
    from qdev.core.errors import ConfigError
    from qdev.core.threads import pin_threads

    for bad in (0, -2, 1.5, True):
        with pytest.raises(ConfigError, match="--threads"):
            pin_threads(bad)


def test_device_info_reports_its_threads(tmp_path):
    import json

    from tests.device.helpers import DEV_PUB, SHIPPED

    store = tmp_path / "store"
    run = [sys.executable, "-m", "qdev.device"]
    r = subprocess.run(
        [
            *run,
            "install",
            str(SHIPPED["KV260"]),
            "--store",
            str(store),
            "--trust",
            str(DEV_PUB),
            "--backend",
            "software",
            "--threads",
            "2",
            "--dev-key",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [*run, "info", "--store", str(store), "--threads", "2", "--dev-key"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(r.stdout)["threads"] == 2
    r = subprocess.run(
        [*run, "info", "--store", str(store), "--threads", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        r.returncode == 2
        and r.stderr.strip() == "qdev-device: --threads 0: must be a positive integer"
    )


def test_percentiles_of_nothing_say_so():
    from qdev.host.stats import percentiles

    assert percentiles([]) == {"n": 0}
    p = percentiles([1.0, 2.0, 3.0, 4.0])
    assert p["n"] == 4 and p["p50"] == 2.5 and p["max"] == 4.0 and p["mean"] == 2.5
