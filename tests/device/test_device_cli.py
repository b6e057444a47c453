"""``qdev-device`` (python -m qdev.device): one-line errors with exit 2, local install and info."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.device.helpers import DEV_PUB, SHIPPED

pytestmark = pytest.mark.device_env


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qdev.device", *args, *(["--dev-key"] if args[0] in ("install", "info") else [])],
                          capture_output=True, text=True, timeout=120)


def test_install_then_info(tmp_path):
    store = tmp_path / "store"
    r = _run("install", str(SHIPPED["KV260"]), "--store", str(store), "--trust", str(DEV_PUB), "--backend", "software")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["activated"] and res["self_test"]["ok"]
    r = _run("info", "--store", str(store))
    info = json.loads(r.stdout)
    assert info["bundle_id"] == res["bundle_id"] and info["backend"] == "software"
    assert info["power"]["kind"] == "estimated"


def test_errors_are_one_line_exit_2(tmp_path):
    r = _run("serve", "--store", str(tmp_path / "s"))
    assert r.returncode == 2 and r.stderr.strip().endswith("qdev-device: serve needs --tcp HOST:PORT and/or --serial PORT")
    bad = tmp_path / "bad"
    shutil.copytree(SHIPPED["KV260"], bad)
    (bad / "manifest.json.sig").unlink()
    r = _run("install", str(bad), "--store", str(tmp_path / "s"), "--trust", str(DEV_PUB))
    assert r.returncode == 2 and "unsigned bundle" in r.stderr and "Traceback" not in r.stderr
    r = _run("serve", "--store", str(tmp_path / "s"), "--tcp", "nonsense")
    assert r.returncode == 2 and "expected HOST:PORT" in r.stderr


def test_the_development_key_needs_an_explicit_flag(tmp_path):
    store = tmp_path / "store"
    r = subprocess.run([sys.executable, "-m", "qdev.device", "trust", str(DEV_PUB), "--store", str(store)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "development key" in r.stderr and "--dev-key" in r.stderr
    assert not list((store / "trusted").glob("*.pub"))
    r = _run("install", str(SHIPPED["KV260"]), "--store", str(store), "--trust", str(DEV_PUB), "--backend", "software")
    assert r.returncode == 0 and "WARNING: --dev-key" in r.stderr
    info = json.loads(_run("info", "--store", str(store)).stdout)
    assert info["dev_key"] is True and "development key" in info["warning"]
    # started without the flag, the same store no longer trusts it: the bundle it signed is not used
    r = subprocess.run([sys.executable, "-m", "qdev.device", "info", "--store", str(store)],
                       capture_output=True, text=True, timeout=120)
    info = json.loads(r.stdout)
    assert info["bundle_id"] is None and info["degraded"] and info["dev_key"] is False


def test_board_is_a_checked_choice(tmp_path):
    """`serve --board KV-260` is refused at once with the choices (it used to fail only at flash);
    any case of a real name is taken as the board's own spelling."""
    r = subprocess.run([sys.executable, "-m", "qdev.device", "serve", "--board", "KV-260", "--store",
                        str(tmp_path / "s")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown board 'KV-260'" in r.stderr and "Pynq-Z2" in r.stderr
    r = _run("info", "--board", "kv260", "--store", str(tmp_path / "s2"))
    assert r.returncode == 0 and json.loads(r.stdout)["board"] == "KV260"
