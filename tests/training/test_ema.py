"""The EMA's fused update gives, bit for bit, what one lerp per tensor gives, on a real QuantU-Net
(Brevitas scale buffers, BatchNorm statistics, integer counters), and takes a handful of operators
where the loop took one per tensor."""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile

from qdev.training.ema import ModelEMA
from qdev.training.models import ModelConfig, build_model


def _reference(ema_state: dict, live_state: dict, weight: float) -> dict:
    out = {}
    for k, v in ema_state.items():
        out[k] = (
            v.clone().lerp_(live_state[k], weight)
            if v.dtype.is_floating_point
            else live_state[k].clone()
        )
    return out


def _trained_a_little(model: torch.nn.Module, steps: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        loss = model(torch.rand(2, 1, 32, 32, generator=g)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_fused_update_equals_one_lerp_per_tensor_on_a_quantunet():
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="quant", width=2))
    model.train()
    _trained_a_little(
        model, 101
    )  # past Brevitas's 100 steps of activation statistics: scales are parameters now
    ema = ModelEMA(model, 0.9)
    ema.update(model)
    _trained_a_little(model, 3)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    live = {k: v.clone() for k, v in model.state_dict().items()}
    d = min(0.9, (1.0 + ema.updates + 1) / (10.0 + ema.updates + 1))
    ema.update(model)
    want = _reference(before, live, 1.0 - d)
    got = ema.module.state_dict()
    assert got.keys() == want.keys()
    assert any(not v.dtype.is_floating_point for v in got.values())  # BN counters are in there
    for k in want:
        assert torch.equal(got[k], want[k]), k
    assert all(not p.requires_grad for p in ema.module.parameters())
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        ema.update(model)
    ops = [
        e
        for e in prof.events()
        if e.name.startswith("aten::")
        and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
    ]
    n_float = sum(v.dtype.is_floating_point for v in got.values())
    assert len(ops) < n_float / 2, (len(ops), n_float)
