"""Operators per training step of the shipped recipe, by part of the step.

On the H200 a width-8 step is launch-bound (16 runs side by side under MPS trained at the pace of
one; bench/RESULTS.md): its time follows the number of operators dispatched, not their
arithmetic. Counting them on the CPU (torch.profiler, top-level aten operators) is a repeatable
stand-in for that cost that needs no GPU. The EMA update is counted twice in the same run: as
training/ema.py does it (one fused lerp) and as a loop of one lerp per tensor (how it was done
before), for the ratio. On CUDA tensors torch's AdamW takes its multi-tensor (foreach) path by
default, on the CPU not: its count here overstates what it dispatches on a GPU.

Usage: OMP_NUM_THREADS=1 .venv/bin/python bench/step_ops.py [--width 8] [--size 128] [--batch 16]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from qdev.training.augment import AUGMENT_PRESETS, augment_batch
from qdev.training.losses import total_loss
from qdev.training.models import ModelConfig
from qdev.training.trainer import TrainConfig, _build_state, _setup_distributed


def count_ops(fn: Callable[[], object]) -> int:
    """Top-level aten operators ``fn`` dispatches (those not called by another aten operator)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(
        1
        for e in prof.events()
        if e.name.startswith("aten::")
        and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = TrainConfig(
        model=ModelConfig(kind="quant", width=a.width, out_range=8.0),
        lam=0.05,
        ema=0.995,
        dice="image",
        normal_weight=4.0,
        epochs=100,
        threads=1,
        device="cpu",
        size=a.size,
    )
    st = _build_state(cfg, None, 544, _setup_distributed(cfg))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(a.batch, 1, a.size, a.size, generator=g)
    y = (torch.rand(a.batch, 1, a.size, a.size, generator=g) > 0.8).float()

    def forward_loss():  # noqa: ANN202
        xb, yb = augment_batch(x, y, g, AUGMENT_PRESETS[cfg.augment])
        return total_loss(
            st.model(xb), yb, st.tracker.average(cfg.bit_loss), cfg.lam, cfg.normal_weight, cfg.dice
        )

    def step() -> None:
        parts = forward_loss()
        st.opt.zero_grad(set_to_none=True)
        st.bopt.zero_grad(set_to_none=True)
        parts.total.backward()
        st.opt.step()
        st.bopt.step()
        st.sched.step()
        st.tracker.project_()
        st.ema.update(st.model)

    @torch.no_grad()
    def ema_loop() -> None:  # the update before: one lerp per tensor, detached state dicts
        src, own = st.model.state_dict(), st.ema.module.state_dict()
        for k, dst in own.items():
            if dst.dtype.is_floating_point:
                dst.lerp_(src[k].detach(), 0.005)
            else:
                dst.copy_(src[k])

    for _ in range(3):
        step()
    parts = {
        "whole step": step,
        "augment + forward + loss": forward_loss,
        "AdamW step": st.opt.step,
        "bit widths (project, average)": lambda: (
            st.tracker.project_(),
            st.tracker.average(cfg.bit_loss),
        ),
        "EMA update, fused (training/ema.py)": lambda: st.ema.update(st.model),
        "EMA update, one lerp per tensor (before)": ema_loop,
    }
    print(
        f"width {a.width}, {a.size}x{a.size}, batch {a.batch}: top-level aten operators dispatched"
    )
    print("| part | operators |")
    print("|---|---:|")
    counts = {name: count_ops(fn) for name, fn in parts.items()}
    for name, n in counts.items():
        print(f"| {name} | {n} |")
    fused, loop = (
        counts["EMA update, fused (training/ema.py)"],
        counts["EMA update, one lerp per tensor (before)"],
    )
    whole = counts["whole step"]
    print(
        f"\nthe step with the per-tensor EMA would dispatch {whole - fused + loop}: the fused "
        "update takes "
        f"{100 * (loop - fused) / (whole - fused + loop):.1f}% of the step's operators off"
    )


if __name__ == "__main__":
    main()
