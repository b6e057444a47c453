"""The one registry of build steps: finn-plus's own (``build_dataflow_step_lookup``) and qdev's
graph steps (:mod:`.graph_steps`) and build steps (:mod:`.build_steps`), by name."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["step_lookup"]


def _qdev_steps() -> dict[str, Callable]:
    from qdev.training.compile.build_steps import BUILD_STEPS
    from qdev.training.compile.graph_steps import GRAPH_STEPS

    clash = set(GRAPH_STEPS) & set(BUILD_STEPS)
    assert not clash, f"step names defined twice: {clash}"
    return {**GRAPH_STEPS, **BUILD_STEPS}


def step_lookup() -> dict[str, Callable]:
    """Every step a build may name (FINN must be booted first: see finn_env.boot_finn)."""
    from finn.builder.build_dataflow_steps import build_dataflow_step_lookup

    own = _qdev_steps()
    shadowed = set(own) & set(build_dataflow_step_lookup)
    if shadowed:
        raise RuntimeError(f"qdev steps shadow FINN's: {sorted(shadowed)}")
    return {**build_dataflow_step_lookup, **own}

