"""The one registry of build steps: finn-plus's own (``build_dataflow_step_lookup``) and qdev's
graph steps (:mod:`.graph_steps`) and build steps (:mod:`.build_steps`), by name.

Every step is looked up as ``step(model, finn_cfg, ctx)``: qdev's build steps take the
:class:`~.context.StepContext` as their third argument; FINN's steps and qdev's graph steps
(FINN's signature, ``(model, cfg)``) are wrapped to ignore it. So qdev's state is handed to the
steps that use it and never hung on FINN's configuration object.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

__all__ = ["step_lookup", "Step"]

#: (model, FINN's DataflowBuildConfig, StepContext) -> model
Step = Callable[..., object]


def _without_context(fn: Callable) -> Step:
    @functools.wraps(fn)
    def step(model, cfg, ctx):  # noqa: ANN001, ANN202, ARG001 - ctx: not this step's business
        return fn(model, cfg)

    return step


def _qdev_steps() -> dict[str, Step]:
    from qdev.training.compile.build_steps import BUILD_STEPS
    from qdev.training.compile.graph_steps import GRAPH_STEPS

    clash = set(GRAPH_STEPS) & set(BUILD_STEPS)
    assert not clash, f"step names defined twice: {clash}"
    return {**{n: _without_context(f) for n, f in GRAPH_STEPS.items()}, **BUILD_STEPS}


def step_lookup() -> dict[str, Step]:
    """Every step a build may name, each called as ``step(model, finn_cfg, ctx)`` (FINN must be
    booted first: see finn_env.boot_finn)."""
    from finn.builder.build_dataflow_steps import build_dataflow_step_lookup

    own = _qdev_steps()
    shadowed = set(own) & set(build_dataflow_step_lookup)
    if shadowed:
        raise RuntimeError(f"qdev steps shadow FINN's: {sorted(shadowed)}")
    return {**{n: _without_context(f) for n, f in build_dataflow_step_lookup.items()}, **own}
