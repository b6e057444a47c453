"""The import rules of docs/ARCHITECTURE.md, enforced.

* ``qdev.device`` (the board runtime) imports nothing of ``qdev.host``/``qdev.training``, nor torch,
  FINN or Click: tests/device/test_device_env.py walks every module of it in the board env.
* ``qdev.host.cli`` loads no torch at import: every ``qdev`` command starts without it, and only
  the commands that train or export bring it in.
* ``qdev compile`` runs without qdev's trainer, export or Brevitas, and no qdev module imports
  torch on its way. finn-plus 1.6.1 itself imports torch when its custom-op registry loads
  (``finn/custom_op/fpgadataflow/layernorm.py``: ``import torch`` at module level); the test
  names who imported it first, so a qdev module doing so fails it.
* No module of ``qdev.host`` imports torch, Brevitas, FINN, QONNX or ``qdev.training`` (other than
  its numpy-only data package and config classes) at module level: only inside the command that
  needs them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "brevitas")

_PROBE = """
import sys, traceback
first = {}
class _Who:
    def find_spec(self, name, path=None, target=None):
        if name in ("torch", "brevitas") and name not in first:
            files = [f.filename for f in traceback.extract_stack()[:-1]
                     if "importlib" not in f.filename and not f.filename.startswith("<")]
            first[name] = files[-1] if files else "?"
        return None
sys.meta_path.insert(0, _Who())
"""


def loaded_heavy_modules(code: str) -> dict[str, str]:
    """Run ``code`` in a fresh interpreter; {heavy module or qdev trainer/export: the file that
    imported it first} for what got loaded."""
    probe = (
        _PROBE
        + code
        + (
            "\nimport json\nloaded = {m for m in sys.modules if m.split('.')[0] in ('torch', "
            "'brevitas')}\n"
            "out = {m: first.get(m, '?') for m in ('torch', 'brevitas') if m in {x.split('.')[0] "
            "for x in loaded}}\n"
            "out.update({m: 'qdev' for m in ('qdev.training.trainer', 'qdev.training.export') if m "
            "in sys.modules})\n"
            "print('LOADED=' + json.dumps(out))\n"
        )
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=600, cwd=REPO
    )
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    line = [x for x in out.stdout.splitlines() if x.startswith("LOADED=")][-1]
    return json.loads(line[len("LOADED=") :])


def test_host_cli_imports_no_torch():
    assert (
        loaded_heavy_modules("import qdev.host.cli, qdev.host.cli.deploy, qdev.host.cli.train")
        == {}
    )


#: training modules that are numpy-only (no torch, FINN, QONNX): config classes and data readers
_TORCH_FREE_TRAINING = (
    "qdev.training.data",
    "qdev.training.config",
    "qdev.training.compile.config",
)


def test_host_modules_import_training_only_inside_functions():
    offenders = []
    for py in sorted((REPO / "host").rglob("*.py")):
        for node in ast.parse(py.read_text()).body:  # module level only
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            offenders += [
                f"{py.relative_to(REPO)}: {n}"
                for n in names
                if n.startswith(("qdev.training", "torch", "brevitas", "finn", "qonnx"))
                and not n.startswith(_TORCH_FREE_TRAINING)
            ]
    assert offenders == []


def _imports(py: Path) -> list[str]:
    """Every module name a file imports, at any level (functions included)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(py.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def _offenders(folder: str, banned: tuple[str, ...]) -> list[str]:
    return [
        f"{py.relative_to(REPO)}: {n}"
        for py in sorted((REPO / folder).rglob("*.py"))
        for n in _imports(py)
        if n == "qdev.device" or n.startswith(banned)
    ]


def test_host_and_training_never_import_the_board_runtime():
    """The host reaches a device only through the link (DeviceClient) and starts a local one as
    a process (``python -m qdev.device``, host/local.py); training needs nothing of it. What both
    sides share is qdev.core."""
    assert _offenders("host", ("qdev.device.",)) == []
    assert _offenders("training", ("qdev.device.",)) == []


def test_core_imports_no_side():
    banned = (
        "qdev.device.",
        "qdev.host",
        "qdev.training",
        "torch",
        "brevitas",
        "finn",
        "qonnx",
        "click",
    )
    assert _offenders("core", banned) == []
