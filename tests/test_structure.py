"""Structure rules of the style guide that a test can hold: no function over 60 lines.

Every function and method of the package (``core``, ``device``, ``host``, ``training``, ``qdev``)
fits in 60 formatted lines (``ruff format``, 100 columns), docstring included. The benchmark
scripts under ``bench/`` are outside the rule: each ``main`` is one measurement procedure read top
to bottom beside the figures it prints in ``bench/RESULTS.md``.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT = 60
PACKAGE = ("core", "device", "host", "training", "qdev")


def _lengths() -> dict[str, int]:
    out = {}
    for root in PACKAGE:
        for py in sorted((REPO / root).rglob("*.py")):
            for node in ast.walk(ast.parse(py.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    key = f"{py.relative_to(REPO)}::{node.name}"
                    out[key] = max(out.get(key, 0), node.end_lineno - node.lineno + 1)
    return out


def test_no_function_over_sixty_lines() -> None:
    lengths = _lengths()
    assert len(lengths) > 500, "the walk found too few functions: is the layout still the same?"
    over = {k: n for k, n in lengths.items() if n > LIMIT}
    assert over == {}, "split these functions (at most 60 lines)"
