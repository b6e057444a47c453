"""The import rules of docs/ARCHITECTURE.md, enforced.

* ``qdev.device`` (the board runtime) imports nothing of ``qdev.host``/``qdev.training``, nor torch,
  FINN or Click: tests/device/test_device_env.py walks every module of it in the board env.
* ``qdev.host.cli`` loads no torch at import: every ``qdev`` command starts without it, and only
  the commands that train or export bring it in.
* ``qdev compile`` runs from start to end without torch or the trainer (FINN and QONNX only).
* No module of ``qdev.host`` imports torch, Brevitas, FINN, QONNX or ``qdev.training`` (other than
  its numpy-only data package) at module level: only inside the command that needs them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "brevitas")


def loaded_heavy_modules(code: str) -> list[str]:
    probe = code + ("\nimport sys\nprint('LOADED=' + ','.join(sorted({m.split('.')[0] for m in sys.modules "
                    f"if m.split('.')[0] in {HEAVY!r}}} | {{m for m in sys.modules if m in "
                    "('qdev.training.trainer', 'qdev.training.export')})))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    line = [x for x in out.stdout.splitlines() if x.startswith("LOADED=")][-1]
    return [m for m in line[len("LOADED="):].split(",") if m]


def test_host_cli_imports_no_torch():
    assert loaded_heavy_modules("import qdev.host.cli, qdev.host.cli.deploy, qdev.host.cli.train") == []


def test_host_modules_import_training_only_inside_functions():
    offenders = []
    for py in sorted((REPO / "host").rglob("*.py")):
        for node in ast.parse(py.read_text()).body:  # module level only
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{py.relative_to(REPO)}: {n}" for n in names
                          if n.startswith(("qdev.training", "torch", "brevitas", "finn", "qonnx"))
                          and not n.startswith("qdev.training.data")]
    assert offenders == []
