"""Trainer: log contents, best checkpoint, resume after a kill, config guards, CLI, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from qdev.core.errors import QdevError
from qdev.host.cli import cli
from qdev.training.runs import sha256_file
from qdev.training.models import ModelConfig
from qdev.training.trainer import TrainConfig, train

TINY = dict(size=32, batch_size=8, threads=1)


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    model = kw.pop("model", ModelConfig(kind="quant", width=2))
    return TrainConfig(model=model, data=str(data), out=str(out), **{**TINY, **kw})


def _log(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "train" / "log.jsonl").read_text().splitlines()]


def test_quant_run_logs_everything(phantom_busi, tmp_path):
    out = tmp_path / "q"
    rec = train(_cfg(phantom_busi, out, epochs=2))
    log = _log(out)
    assert [r["epoch"] for r in log] == [1, 2] and rec["epoch"] == 2
    r = log[-1]
    for k in ("total", "bce", "dice", "bits"):
        assert k in r["train"]
    for k in ("dice", "dice_lesion", "iou", "pixel_acc", "per_class", "n_lesion_images"):
        assert k in r["val"]
    b = r["bits"]
    assert len(b["weight_bits"]) == 23 and len(b["act_bits"]) == 18
    for k in ("avg_bits", "avg_weight_bits", "avg_act_bits", "size_weighted_bits", "model_bits"):
        assert k in b
    assert r["seconds"] > 0
    for f in (
        "best.pt",
        "last.pt",
        "split.json",
        "fig1_layer_bits.png",
        "fig2_acc_bits.png",
        "fig3_bit_vs_seg.png",
    ):
        assert (out / "train" / f).is_file(), f
    man = json.loads((out / "manifest.json").read_text())
    st = man["stages"]["train"]
    assert st["status"] == "done" and "train/best.pt" in st["outputs"] and st["versions"]["torch"]
    assert st["cpu"].endswith(" CPUs") and len(st["cpu"]) > len(
        " 1 CPUs"
    )  # which machine trained it


def test_widths_move_during_training(phantom_busi, tmp_path):
    out = tmp_path / "mv"
    train(_cfg(phantom_busi, out, epochs=3, bits_lr=2.0, lam=1.0))
    log = _log(out)
    raw0 = log[0]["bits"]["raw_bits"]
    raw2 = log[-1]["bits"]["raw_bits"]
    moved = [n for n in raw0 if abs(raw2[n] - 4.0) > 0.5]
    assert len(moved) >= 30
    assert log[-1]["bits"]["avg_bits"] < 4.0


def test_existing_run_and_mismatched_resume_are_refused(phantom_busi, tmp_path):
    out = tmp_path / "r"
    train(_cfg(phantom_busi, out, epochs=1, model=ModelConfig(kind="float", width=2)))
    with pytest.raises(QdevError, match="already holds a training run"):
        train(_cfg(phantom_busi, out, epochs=1, model=ModelConfig(kind="float", width=2)))
    with pytest.raises(QdevError, match="different configuration"):
        train(
            _cfg(phantom_busi, out, epochs=2, lr=0.5, model=ModelConfig(kind="float", width=2)),
            resume=True,
        )
    # extending the epochs of a finished run is a resume
    train(_cfg(phantom_busi, out, epochs=2, model=ModelConfig(kind="float", width=2)), resume=True)
    assert [r["epoch"] for r in _log(out)] == [1, 2]


@pytest.mark.slow
def test_resume_after_kill_loses_no_epoch(phantom_busi, tmp_path):
    out = tmp_path / "k"
    cmd = [
        sys.executable,
        "-m",
        "qdev.host.cli",
        "train",
        "--model",
        "quant",
        "--width",
        "2",
        "--size",
        "32",
        "--batch-size",
        "4",
        "--epochs",
        "6",
        "--threads",
        "1",
        "--data",
        str(phantom_busi),
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "train" / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.is_file() or len(log.read_text().splitlines()) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(log.read_text().splitlines())
    assert 2 <= done < 6
    r = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    epochs = [json.loads(x)["epoch"] for x in log.read_text().splitlines()]
    assert epochs == [1, 2, 3, 4, 5, 6]


def test_cli_train_and_evaluate(phantom_busi, tmp_path):
    out = tmp_path / "cli"
    r = CliRunner().invoke(
        cli,
        [
            "train",
            "--model",
            "float",
            "--width",
            "2",
            "--size",
            "32",
            "--epochs",
            "1",
            "--threads",
            "1",
            "--data",
            str(phantom_busi),
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["evaluate", str(out), "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["split"] == "test" and m["metrics"]["n_images"] > 0 and "dice_lesion" in m["metrics"]
    assert (out / "evaluate" / "metrics.json").is_file()
    r = CliRunner().invoke(cli, ["evaluate", str(out), "--checkpoint", "last", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["checkpoint"] == "last"
    assert (out / "evaluate" / "metrics_last.json").is_file()
    r = CliRunner().invoke(cli, ["evaluate", str(out), "--split", "val", "--json"])
    assert r.exit_code == 0, r.output
    # one stage record per split and checkpoint: the val run kept test's record, each with the
    # checkpoint it read (by its run-relative path) and its own output's hash
    st = json.loads((out / "manifest.json").read_text())["stages"]
    assert {"evaluate/test", "evaluate/test@last", "evaluate/val"} <= set(st)
    assert st["evaluate/test"]["outputs"] == {
        "evaluate/metrics.json": sha256_file(out / "evaluate" / "metrics.json")
    }
    assert st["evaluate/test@last"]["inputs"] == {  # the declared inputs, by run-relative path
        k: st["train"]["outputs"][k] for k in ("train/last.pt", "train/split.json")
    }
    assert st["evaluate/val"]["duration_s"] > 0
    # tampered checkpoint is refused
    (out / "train" / "best.pt").write_bytes(b"x")
    r = CliRunner().invoke(cli, ["evaluate", str(out)])
    assert r.exit_code == 2 and "sha256 differs" in r.output
    r = CliRunner().invoke(
        cli, ["train", "--bits", "9..3", "--out", str(tmp_path / "z"), "--data", str(phantom_busi)]
    )
    assert r.exit_code == 2 and r.output.startswith("qdev: ")


@pytest.mark.slow
def test_torchrun_two_processes_gloo(phantom_busi, tmp_path):
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "qdev.host.cli",
            "train",
            "--model",
            "quant",
            "--width",
            "2",
            "--size",
            "32",
            "--batch-size",
            "8",
            "--epochs",
            "2",
            "--data",
            str(phantom_busi),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    log = _log(out)
    assert [x["epoch"] for x in log] == [1, 2] and (out / "train" / "best.pt").is_file()


def test_init_from_float_then_widths_in_checkpoint_match_log(phantom_busi, tmp_path):
    """Regression: Brevitas rebuilds quantizers on load_state_dict; the bit widths the loss
    pushes must be the model's own, so the saved checkpoint shows the logged widths."""
    import torch

    from qdev.training.models.bitwidth import BitWidthTracker
    from qdev.training.checkpoint import load_checkpoint_model

    f = tmp_path / "f"
    train(_cfg(phantom_busi, f, epochs=1, model=ModelConfig(kind="float", width=2)))
    q = tmp_path / "q"
    train(
        _cfg(
            phantom_busi,
            q,
            epochs=2,
            bits_lr=2.0,
            lam=1.0,
            freeze_bits=1.0,
            init_from=str(f / "train" / "best.pt"),
        )
    )
    logged = _log(q)[-1]["bits"]
    model, _ = load_checkpoint_model(q / "train" / "last.pt")
    rep = BitWidthTracker(model, (32, 32)).report()
    assert rep["weight_bits"] == logged["weight_bits"] and rep["act_bits"] == logged["act_bits"]
    assert rep["avg_bits"] < 4.0
    with torch.no_grad():  # and the exported widths are the same integers
        assert all(
            float(m.quant_weight().bit_width) == logged["weight_bits"][n]
            for n, m in model.conv_layers()
            if n in logged["weight_bits"]
        )


def test_widths_freeze_and_best_is_chosen_among_frozen_epochs(phantom_busi, tmp_path):
    out = tmp_path / "fz"
    train(_cfg(phantom_busi, out, epochs=4, bits_lr=2.0, lam=1.0, freeze_bits=0.5))
    log = _log(out)
    assert [r["bits_frozen"] for r in log] == [False, False, True, True]
    # frozen widths are integers and do not change any more, whatever the loss says
    raw3, raw4 = log[2]["bits"]["raw_bits"], log[3]["bits"]["raw_bits"]
    assert raw3 == raw4 and all(float(v).is_integer() for v in raw4.values())
    assert not any(r["best"] for r in log[:2]) and any(r["best"] for r in log[2:])
    import torch

    best = torch.load(out / "train" / "best.pt", weights_only=False)
    assert best["epoch"] >= 3 and best["bits"]["weight_bits"] == log[3]["bits"]["weight_bits"]


def test_augment_presets_and_runs_from_before_them(phantom_busi, tmp_path):
    import torch

    from qdev.training.augment import AUGMENT_PRESETS, augment_batch

    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 32, 32)
    y = (torch.rand(16, 1, 32, 32) > 0.7).float()
    xa, ya = augment_batch(x, y, g, AUGMENT_PRESETS["flips"])
    mirrored = [bool(torch.equal(xa[i], x[i].flip(-1))) for i in range(16)]
    for i in range(16):  # flips only: every image is itself or its mirror, mask alike
        src = x[i].flip(-1) if mirrored[i] else x[i]
        assert torch.equal(xa[i], src) and torch.equal(
            ya[i], y[i].flip(-1) if mirrored[i] else y[i]
        )
    assert 0 < sum(mirrored) < 16
    xf, _ = augment_batch(x, y, torch.Generator().manual_seed(0), AUGMENT_PRESETS["full"])
    assert not all(torch.equal(xf[i], x[i]) or torch.equal(xf[i], x[i].flip(-1)) for i in range(16))
    # a stored config from before the presets (augment: true/false) still loads and resumes
    from dataclasses import asdict

    d = asdict(_cfg(phantom_busi, tmp_path / "o"))
    assert TrainConfig.from_dict({**d, "augment": True}).augment == "full"
    assert TrainConfig.from_dict({**d, "augment": False}).augment == "none"
    with pytest.raises(QdevError, match="--augment must be one of"):
        train(_cfg(phantom_busi, tmp_path / "bad", epochs=1, augment="rotate"))


def test_strong_augment_steps_do_what_they_say_and_train(phantom_busi, tmp_path):
    from dataclasses import replace

    import torch

    from qdev.training.augment import AUGMENT_PRESETS, AugmentConfig, augment_batch

    off = AugmentConfig(hflip=0.0, affine=0.0, intensity=0.0)
    y = (torch.rand(4, 1, 32, 32) > 0.7).float()
    flat = torch.full((4, 1, 32, 32), 0.5)
    # blur: a normalised kernel keeps a flat image flat; a point spreads symmetrically, its sum kept
    xb, yb = augment_batch(flat, y, torch.Generator().manual_seed(1), replace(off, blur=1.0))
    assert torch.allclose(xb, flat, atol=1e-6) and torch.equal(yb, y)
    point = torch.zeros(4, 1, 32, 32)
    point[:, :, 16, 16] = 1.0
    xp, _ = augment_batch(point, y, torch.Generator().manual_seed(1), replace(off, blur=1.0))
    assert torch.allclose(xp.sum((1, 2, 3)), torch.ones(4), atol=1e-5)
    assert torch.allclose(xp, xp.flip(-1).roll(1, -1), atol=1e-6) and (xp[:, :, 16, 16] < 1).all()
    # contrast: the image's mean stays where no pixel clips
    x = 0.4 + 0.2 * torch.rand(4, 1, 32, 32)
    xc, _ = augment_batch(x, y, torch.Generator().manual_seed(2), replace(off, contrast=1.0))
    assert torch.allclose(xc.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-5) and not torch.equal(
        xc, x
    )
    # noise: zero-mean, within [0, 1], never more than the configured spread
    xn, _ = augment_batch(x, y, torch.Generator().manual_seed(3), replace(off, noise=1.0))
    d = xn - x
    assert d.abs().mean() > 0 and d.std((1, 2, 3)).max() <= 0.05 * 1.2 and d.mean().abs() < 0.01
    # the preset as a whole: same seed, same batch; masks stay binary
    xs = torch.rand(8, 1, 32, 32)
    a = augment_batch(
        xs, y.repeat(2, 1, 1, 1), torch.Generator().manual_seed(4), AUGMENT_PRESETS["strong"]
    )
    b = augment_batch(
        xs, y.repeat(2, 1, 1, 1), torch.Generator().manual_seed(4), AUGMENT_PRESETS["strong"]
    )
    assert torch.equal(a[0], b[0]) and set(a[1].unique().tolist()) <= {0.0, 1.0}
    assert a[0].min() >= 0 and a[0].max() <= 1
    train(_cfg(phantom_busi, tmp_path / "s", epochs=1, augment="strong"))
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["stages"]["train"]["config"]["augment"] == "strong"


def test_ema_is_what_is_validated_and_shipped_and_restarts_at_the_freeze(phantom_busi, tmp_path):
    import torch

    from qdev.training.ema import ModelEMA
    from qdev.training.checkpoint import load_checkpoint_model

    # the average itself: decay d after warm-up, BN buffers averaged, integer buffers copied
    lin = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEMA(lin, 0.5)
    ema.updates = 100  # past the warm-up
    w0 = lin[0].weight.detach().clone()
    with torch.no_grad():
        lin[0].weight.add_(2.0)
        lin[1].running_mean.fill_(4.0)
        lin[1].num_batches_tracked.fill_(7)
    ema.update(lin)
    assert torch.allclose(ema.module[0].weight, w0 + 1.0)
    assert torch.allclose(ema.module[1].running_mean, torch.full((2,), 2.0))
    assert int(ema.module[1].num_batches_tracked) == 7

    out = tmp_path / "ema"
    train(_cfg(phantom_busi, out, epochs=4, ema=0.9, freeze_bits=0.5))
    log = _log(out)
    assert all("val_live" in r for r in log)
    # the EMA model differs from the live one, and best.pt holds the EMA weights
    last = torch.load(out / "train" / "last.pt", weights_only=False)
    best = torch.load(out / "train" / "best.pt", weights_only=False)
    assert best["ema"] is True and last["ema"]["updates"] > 0
    ema_state, live_state = last["ema"]["model"], last["model"]
    assert any(
        not torch.equal(ema_state[k], live_state[k])
        for k in live_state
        if live_state[k].is_floating_point()
    )
    if best["epoch"] == last["epoch"]:
        assert all(torch.equal(best["model"][k], ema_state[k]) for k in ema_state)
    # restarted at the freeze: the average holds the frozen integer widths, not a mix
    model, _ = load_checkpoint_model(out / "train" / "best.pt")
    assert best["bits"] == log[best["epoch"] - 1]["bits"]
    # resuming restores the average (the next epoch's update count continues)
    train(_cfg(phantom_busi, out, epochs=5, ema=0.9, freeze_bits=0.5), resume=True)
    again = torch.load(out / "train" / "last.pt", weights_only=False)
    assert again["ema"]["updates"] > last["ema"]["updates"]
    with pytest.raises(QdevError, match="--ema"):
        train(_cfg(phantom_busi, tmp_path / "bad", epochs=1, ema=1.5))


def test_image_dice_and_out_range_are_recorded_resumed_and_export_bit_exact(phantom_busi, tmp_path):
    out = tmp_path / "idice"
    args = [
        "train",
        "--model",
        "quant",
        "--width",
        "2",
        "--size",
        "32",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--dice",
        "image",
        "--out-range",
        "8",
        "--data",
        str(phantom_busi),
        "--out",
        str(out),
    ]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "manifest.json").read_text())["stages"]["train"]["config"]
    assert cfg["dice"] == "image" and cfg["model"]["out_range"] == 8.0
    r = CliRunner().invoke(
        cli,
        [*args[: args.index("--epochs") + 1], "2", *args[args.index("--epochs") + 2 :], "--resume"],
    )
    assert r.exit_code == 0, r.output
    assert [x["epoch"] for x in _log(out)] == [1, 2]
    r = CliRunner().invoke(cli, ["export", str(out), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    # the learned scale moved from its start (8/128) but stays a plain per-tensor scale FINN takes
    assert rep["integer_outputs_equal"] is True and rep["output_scale"] > 0
