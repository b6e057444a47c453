"""The U-Net topology, QuantU-Net's quantizers and its trainable bit widths."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from qdev.training.losses import total_loss
from qdev.training.models import ModelConfig, build_model
from qdev.training.models.bitwidth import BitWidthTracker


def test_float_unet_matches_table1_counts():
    for width, params in ((8, 486_409), (16, 1_942_289)):
        m = build_model(ModelConfig(kind="float", width=width))
        assert len(m.conv_layers()) == 23
        n = sum(p.numel() for p in m.parameters())
        assert n == params  # the 0.49 M / 1.9 M
    paper = build_model(ModelConfig(kind="float", width=64, batchnorm=False))
    assert 31.0e6 < sum(p.numel() for p in paper.parameters()) < 31.1e6  # the paper's ~31 M


def test_shapes_and_quantized_logits():
    torch.manual_seed(0)
    m = build_model(ModelConfig(kind="quant", width=2))
    m.eval()
    x = torch.rand(3, 1, 32, 32)
    y = m(x)
    assert y.shape == (3, 1, 32, 32)
    scale = float(m.out.act_quant.scale())
    codes = y / scale
    assert torch.allclose(codes, codes.round(), atol=1e-3) and codes.abs().max() <= 128


def test_bit_width_parameters_inventory_and_integer_widths():
    m = build_model(ModelConfig(kind="quant", width=2, init_bits=4))
    t = BitWidthTracker(m, (32, 32))
    assert len(t.layers) == 23 and len(t.acts) == 18 and len(t.parameters()) == 41
    rep = t.report()
    assert all(isinstance(v, int) and v == 4 for v in rep["weight_bits"].values())
    assert rep["avg_bits"] == 4.0 and rep["model_bits"] > 0
    # clamped to [min, max]
    with torch.no_grad():
        t.layers[0].weight_bw.bit_width_offset.fill_(50.0)
        t.layers[2].weight_bw.bit_width_offset.fill_(-0.3)
        t.layers[1].weight_bw.bit_width_offset.fill_(2.6)
    w, _ = t.widths()
    assert float(w[0]) == 8.0 and float(w[1]) == 5.0 and float(w[2]) == 2.0
    t.project_()
    assert float(t.layers[0].weight_bw.bit_width_offset) == 6.0
    assert float(t.layers[2].weight_bw.bit_width_offset) == pytest.approx(0.3)


def test_gradients_reach_every_bit_width():
    torch.manual_seed(0)
    m = build_model(ModelConfig(kind="quant", width=2))
    t = BitWidthTracker(m, (32, 32))
    m.train()
    x = torch.rand(4, 1, 32, 32)
    y = (torch.rand(4, 1, 32, 32) > 0.7).float()
    # task loss alone must reach every width (through the quantizers), not only the lambda term
    parts = total_loss(m(x), y, None, 0.0)
    parts.total.backward()
    for p in t.parameters():
        assert p.grad is not None and torch.isfinite(p.grad)
    nonzero = sum(float(p.grad.abs()) > 0 for p in t.parameters())
    assert nonzero >= 35  # (a width whose layer saw no rounding error this batch may get exactly 0)
    m.zero_grad()
    parts = total_loss(m(x), y, t.average("mean"), 0.25)
    parts.total.backward()
    assert all(p.grad is not None and float(p.grad.abs()) > 0 for p in t.parameters())


@pytest.mark.parametrize("mode", ["mean", "weights", "size", "bops"])
def test_lambda_lowers_average_width_on_toy_run(mode):
    def run(lam: float) -> float:
        torch.manual_seed(1)
        m = build_model(ModelConfig(kind="quant", width=2, init_bits=6))
        t = BitWidthTracker(m, (32, 32))
        ids = {id(p) for p in t.parameters()}
        opt = torch.optim.Adam(
            [
                {"params": [p for p in m.parameters() if id(p) not in ids], "lr": 1e-3},
                {"params": t.parameters(), "lr": 5e-2},
            ]
        )
        g = torch.Generator().manual_seed(0)
        x = torch.rand(8, 1, 32, 32, generator=g)
        y = (x > 0.6).float()
        for _ in range(40):
            parts = total_loss(m(x), y, t.average(mode), lam)
            opt.zero_grad()
            parts.total.backward()
            opt.step()
        return float(t.average(mode))

    without, with_lambda = run(0.0), run(0.25)
    assert with_lambda < without and with_lambda < 6.0


def test_qonnx_export_concat_inputs_share_one_quantizer(tmp_path):
    from brevitas.export import export_qonnx

    torch.manual_seed(0)
    m = build_model(ModelConfig(kind="quant", width=2))
    with torch.no_grad():  # distinct scales and widths everywhere, so equality is not accidental
        for name, p in m.named_parameters():
            if "scaling_impl.value" in name:
                p.copy_(torch.rand_like(p) + 0.1)
        for i, p in enumerate(BitWidthTracker(m, (32, 32)).parameters()):
            p.fill_(float(i % 5))
    m.eval()
    path = tmp_path / "tiny.onnx"
    export_qonnx(m, torch.rand(1, 1, 32, 32), export_path=str(path))
    g = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    concats = [n for n in g.node if n.op_type == "Concat"]
    assert len(concats) == 4
    assert not any(n.op_type in ("Sigmoid", "Resize", "Upsample") for n in g.node)
    act_params = set()
    for n in g.node:
        if n.op_type == "Quant" and n.input[0] not in inits:
            act_params.add(tuple(float(inits[i].ravel()[0]) for i in n.input[1:4]))
    assert len(act_params) > 5  # activations really differ in scale/width across layers
    for c in concats:
        qs = [prod[i] for i in c.input]
        assert all(q.op_type == "Quant" for q in qs)
        vals = [[inits[i] for i in q.input[1:4]] for q in qs]  # scale, zero point, bit width
        for a, b in zip(*vals):
            assert np.array_equal(a, b)
        attrs = [{a.name: a.i for a in q.attribute} for q in qs]
        assert attrs[0] == attrs[1]
        bw = float(vals[0][2])
        assert bw == round(bw)  # exported widths are integers


@pytest.mark.parametrize("kind", ["float", "quant"])
def test_net_without_bn_keeps_its_signal_at_init(kind):
    """Without BN the 23-layer net gets He init: the initial logits still vary across the image.
    (With PyTorch's default init they were nearly constant and a W4A4 run stalled on the
    all-background mask: bench/RESULTS.md.)"""
    torch.manual_seed(0)
    m = build_model(ModelConfig(kind=kind, width=4, batchnorm=False)).eval()
    with torch.no_grad():
        y = m(torch.rand(8, 1, 32, 32))
    y = y.value if hasattr(y, "value") else y
    assert float(y.flatten(1).std(1).mean()) > 0.05
    convs = [mod for _, mod in m.conv_layers()]
    assert all(float(c.bias.abs().max()) == 0.0 for c in convs if c.bias is not None)


def test_normal_weight_makes_a_false_lesion_on_a_normal_scan_cost_more():
    import torch

    from qdev.training.losses import total_loss, weighted_bce

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 1, 16, 16, generator=g)
    target = torch.zeros(4, 1, 16, 16)
    target[:2, :, 4:10, 4:10] = 1.0  # images 0-1 carry a lesion; 2-3 are normal scans
    paper = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert torch.equal(weighted_bce(logits, target, 1.0), paper)  # weight 1 is the paper's BCE
    per_image = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, target, reduction="none"
    ).mean((1, 2, 3))
    w = torch.tensor([1.0, 1.0, 3.0, 3.0])
    assert torch.allclose(weighted_bce(logits, target, 3.0), (w * per_image).sum() / w.sum())
    # a false lesion on a normal scan: the weighted loss rises more than the paper's
    bad = logits.clone()
    bad[2, :, :4, :4] += 8.0
    d_paper = float(weighted_bce(bad, target, 1.0) - weighted_bce(logits, target, 1.0))
    d_weighted = float(weighted_bce(bad, target, 3.0) - weighted_bce(logits, target, 3.0))
    assert d_paper > 0 and d_weighted / d_paper == pytest.approx(
        (3 / 8) / (1 / 4), rel=1e-4
    )  # its share: 3 of 8, not 1 of 4
    # and total_loss passes it on
    assert torch.allclose(
        total_loss(logits, target, None, 0.0, 3.0).bce, weighted_bce(logits, target, 3.0)
    )


def test_image_dice_counts_a_missed_small_lesion_as_a_whole_image():
    import torch

    from qdev.training.losses import dice_loss, image_dice_loss, total_loss

    target = torch.zeros(3, 1, 32, 32)
    target[0, :, 4:28, 4:28] = 1.0  # a large lesion (576 px), found
    target[1, :, 2:5, 2:5] = 1.0  # a small one (9 px), missed; image 2 is a normal scan
    logits = torch.full((3, 1, 32, 32), -30.0)
    logits[0, :, 4:28, 4:28] = 30.0
    # by hand: image 0's Dice is (2*576+1)/(576+576+1) = 1, image 1's is 1/(0+9+1) = 0.1
    assert float(image_dice_loss(logits, target)) == pytest.approx(1.0 - (1.0 + 0.1) / 2, abs=1e-6)
    # the batch Dice barely notices the missed lesion: 1 - 2*576/(576+585)
    assert float(dice_loss(logits, target)) == pytest.approx(1.0 - 2 * 576 / (576 + 585), abs=1e-6)
    # the normal scan is left to the BCE: a false lesion on it leaves this term as it is
    bad = logits.clone()
    bad[2, :, :8, :8] = 30.0
    assert float(image_dice_loss(bad, target)) == pytest.approx(
        float(image_dice_loss(logits, target)), abs=1e-6
    )
    # a batch of normal scans: 0, with a gradient of zeros rather than none
    x = logits.clone().requires_grad_(True)
    loss = image_dice_loss(x, torch.zeros_like(target))
    loss.backward()
    assert float(loss.detach()) == 0.0 and float(x.grad.abs().sum()) == 0.0
    # and total_loss passes the mode on
    assert torch.allclose(
        total_loss(logits, target, None, 0.0, 1.0, "image").dice, image_dice_loss(logits, target)
    )


def test_out_range_starts_the_output_scale_at_the_given_logits():
    torch.manual_seed(0)
    m = build_model(ModelConfig(kind="quant", width=2, out_range=8.0)).train()
    m(torch.rand(2, 1, 32, 32))  # a training step's statistics do not move a PARAMETER scale
    assert float(m.out.act_quant.scale()) == pytest.approx(8.0 / 128)
    with torch.no_grad():
        m.head.bias.fill_(50.0)  # far outside the range: saturates at the top code
        y = m.eval()(torch.rand(1, 1, 32, 32))
    assert float(y.max()) == pytest.approx(127 * 8.0 / 128)
    # the default (0) keeps the scale from the first steps' statistics, as models made before
    d = build_model(ModelConfig(kind="quant", width=2)).train()
    for _ in range(3):
        d(torch.rand(2, 1, 32, 32))
    assert float(d.out.act_quant.scale()) != pytest.approx(8.0 / 128)
