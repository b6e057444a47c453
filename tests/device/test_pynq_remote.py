"""The pynq backend in CI, without a board: pynq's own remote-device path
(``PYNQ_REMOTE_DEVICES``, gRPC) against the software PYNQ remote board of
``tests/fixtures/remote_board.py``, whose accelerator model is the software backend.

The device runtime runs unchanged in its own process with ``--backend pynq``; the bundle carries
a ``.hwh`` describing FINN's zynq-iodma shell and a ``.bit`` with a valid header.

pynq 4.0.0 remote-mode quirks worked around here, in test code only:
* the remote port is fixed at 7967 (``RemoteDevice(port=PYNQ_PORT)``; ``PYNQ_REMOTE_DEVICES``
  takes addresses only), so the test board listens there and the test skips if it is taken;
* ``PYNQ_REMOTE_DEVICES`` is read when pynq is imported, so everything that imports pynq with it
  set runs in a subprocess (the device runtime here);
* the PS clock registers read as 0 over the test board (pynq warns "Setting frequency to the
  closest possible value 0.0MHz"); the runtime takes the clock from the bundle manifest.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys

from pathlib import Path

import numpy as np
import pytest

from tests.device.helpers import SHIPPED, golden_masks, make_key, resign
from tests.fixtures.finn_shell_hwh import write_hwh
from tests.fixtures.remote_board import write_bit

pytestmark = pytest.mark.device_env
REPO = Path(__file__).resolve().parents[2]


def _bundle_with_bitstream(dst: Path, key) -> Path:  # noqa: ANN001
    shutil.copytree(SHIPPED["KV260"], dst)
    write_bit(dst / "finn-accel.bit")
    write_hwh(dst / "finn-accel.hwh")
    m = json.loads((dst / "manifest.json").read_text())
    m["files"].update({"finn-accel.bit": {}, "finn-accel.hwh": {}})
    (dst / "manifest.json").write_text(json.dumps(m))
    return resign(
        dst, key, estimate_only=False, bitstream="test bitstream (valid header, no configuration)"
    )


@pytest.fixture(scope="module")
def remote_board(tmp_path_factory):
    pytest.importorskip(
        "pynq", reason="the pynq backend test runs where pynq is installed (.venv-device)"
    )
    pytest.importorskip("grpc")
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 7967)) == 0:
            pytest.skip("port 7967 (pynq's fixed remote port) is taken")
    tmp = tmp_path_factory.mktemp("remote")
    key, pub = make_key(tmp)
    bundle = _bundle_with_bitstream(tmp / "bundle", key)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.remote_board", "--bundle", str(bundle)],
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert "remote board" in line, line
    yield bundle, pub
    proc.terminate()
    proc.wait(10)


def test_device_runtime_runs_the_pynq_backend_through_pynq_remote(remote_board, tmp_path):
    from qdev.host.client import connect
    from qdev.host.local import LocalDevice

    bundle, pub = remote_board
    env = {"PYNQ_REMOTE_DEVICES": "127.0.0.1"}
    with LocalDevice(tmp_path / "store", trusted=[pub], backend="auto", env=env) as dev:
        c = connect(dev.port, timeout=60)
        try:
            res = c.flash(bundle, [pub])
            assert res["activated"], res
            assert (
                res["self_test"]["backend"] == "pynq" and res["self_test"]["codes_differing"] == 0
            )
            info = c.info()
            assert info["backend"] == "pynq" and info["clock_mhz"] == pytest.approx(200.0)
            px = np.load(bundle / "golden_pixels.npy").reshape(-1, 128, 128)
            exp = golden_masks(bundle).astype(bool)
            reps = list(c.stream(((i, px[i % 4]) for i in range(8)), window=2, timeout=60))
        finally:
            c.close()
    assert all(
        r.error is None and np.array_equal(r.mask.astype(bool), exp[r.frame_id % 4]) for r in reps
    )


def test_without_a_board_auto_falls_back_to_software_and_says_why(tmp_path):
    from qdev.device.accel.backend import backends, open_accelerator
    from qdev.core.errors import QdevError

    key, _ = make_key(tmp_path)
    bundle = _bundle_with_bitstream(tmp_path / "b", key)
    manifest = json.loads((bundle / "manifest.json").read_text())
    pynq_b = next(b for b in backends() if b.name == "pynq")
    reason = pynq_b.probe(bundle, manifest)
    assert reason and ("device" in reason or "pynq" in reason)
    assert open_accelerator(bundle, manifest, "auto").name in ("onnx", "software")
    with pytest.raises(QdevError, match="backend pynq cannot run here"):
        open_accelerator(bundle, manifest, "pynq")
