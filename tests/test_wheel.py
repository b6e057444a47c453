"""The built wheel, as a new user gets it: one ``qdev`` namespace, the shipped model, bundles and
development *public* key inside, no signing key, and a ``qdev demo`` that works in a fresh
virtual environment, run from a folder outside the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = out.glob("qdev-*.whl")
    return whl


def test_wheel_contents(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"qdev"}  # no top-level host/device/training to collide with other projects
    for must in (
        "qdev/device/runtime/server.py",
        "qdev/host/cli/__init__.py",
        "qdev/training/trainer.py",
        "qdev/devkeys/qdev-dev.pub",
        "qdev/bitstreams/KV260/quantunet-w8/manifest.json.sig",
        "qdev/bitstreams/KV260/quantunet-w8/intmodel.npz",
        "qdev/models/quantunet-w8/train/best.pt",
        "qdev/models/quantunet-w8/export/model.qonnx.onnx",
        "qdev/training/splits/busi-grouped-seed0.json",
        "qdev/device/systemd/qdev-device.service",
        "qdev/host/webview.html",
        "qdev/training/compile/hls_shim/hls_stream.h",
        "qdev/training/compile/hls_shim/ap_int.h",
        "qdev/core/tlsserial.py",
        "qdev/core/codecs.py",
    ):
        assert must in names, must
    assert not [n for n in names if n.endswith(".key")], "a signing key is in the wheel"
    # every file of every shipped bundle, as its signed manifest lists them
    z = zipfile.ZipFile(wheel)
    for board in ("KV260", "ZCU104", "Ultra96-V2", "Pynq-Z2"):
        man = json.loads(z.read(f"qdev/bitstreams/{board}/quantunet-w8/manifest.json"))
        for f in man["files"]:
            assert f"qdev/bitstreams/{board}/quantunet-w8/{f}" in names, (board, f)


def test_fresh_venv_demo_outside_the_checkout(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    r = subprocess.run(
        [*pip, f"qdev[host] @ {wheel.as_uri()}"], capture_output=True, text=True, timeout=900
    )
    assert r.returncode == 0, r.stderr[-3000:]
    # the host install pulls no torch
    r = subprocess.run(
        [str(py), "-c", "import importlib.util as u; print(u.find_spec('torch') is None)"],
        capture_output=True,
        text=True,
    )
    assert r.stdout.strip() == "True"
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    r = subprocess.run(
        ["qdev", "demo", "--frames", "20", "--probe", "phantom", "--out", "session"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "self-test passed" in r.stdout
    manifest = work / "session" / "manifest.json"
    assert (work / "session" / "report" / "report.html").is_file()
    man = json.loads(manifest.read_text())
    assert man["counts"]["ok"] == 20, man["counts"]
    # it ran the installed package, not a checkout
    r = subprocess.run(
        [str(py), "-c", "import qdev.host, sys; print(qdev.host.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert str(env_dir) in r.stdout and str(REPO) not in r.stdout


def test_board_install_pulls_no_torch_and_serves(wheel, tmp_path):
    """``pip install qdev`` (no extras), as on a board: the runtime imports and installs a
    bundle."""
    env_dir = tmp_path / "board"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = str(env_dir / "bin" / "python")
    r = subprocess.run(
        [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    code = (
        "import importlib.util as u, json, qdev.device.runtime.server, qdev.core.probe.sources\n"
        "print(json.dumps({m: u.find_spec(m) is not None for m in ('torch', 'click', 'finn', "
        "'brevitas')}))"
    )
    r = subprocess.run([py, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {
        "torch": False,
        "click": False,
        "finn": False,
        "brevitas": False,
    }
    store = tmp_path / "store"
    qd = str(env_dir / "bin" / "qdev-device")
    # the shipped bundle and dev key come from the installed package data
    code = (
        "from qdev import assets; print(assets.shipped_bundle()); "
        "print(assets.dev_public_keys()[0])"
    )
    bundle, pub = subprocess.run(
        [py, "-c", code], capture_output=True, text=True, cwd=tmp_path
    ).stdout.split()
    r = subprocess.run(
        [
            qd,
            "install",
            bundle,
            "--store",
            str(store),
            "--trust",
            pub,
            "--backend",
            "software",
            "--dev-key",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["self_test"]["ok"]
