"""`qdev evaluate runs/NAME`: test-split metrics of the best checkpoint, written to metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from qdev.core.errors import QdevError
from qdev.core.preprocess import to_unit_float
from qdev.training.data import open_run_data, read_split
from qdev.training.mask_rule import run_mask_rule
from qdev.training.runs import RunFolder, atomic_write_text
from qdev.training.stages import StageRecord
from qdev.training.checkpoint import checkpoint_path, load_checkpoint_model
from qdev.training.trainer import evaluate_model

__all__ = ["evaluate_run"]


def _metrics_stem(split_name: str, checkpoint: str) -> str:
    """``metrics``, ``metrics_val``, ``metrics_test_last``...: one file per split and checkpoint."""
    stem = "metrics" if split_name == "test" else f"metrics_{split_name}"
    return stem + ("" if checkpoint == "best" else f"_{checkpoint}")


def _weight_count(model: torch.nn.Module) -> int:
    """Parameters that are weights and biases (not the learnt bit widths and scales)."""
    return int(
        sum(
            p.numel()
            for n, p in model.named_parameters()
            if "bit_width" not in n and "scaling" not in n
        )
    )


def _score(model, x, y, labels, rule) -> tuple[dict, float, dict | None]:
    """Metrics with the run's mask rule (and without it, where the rule is not the default)."""
    if rule.is_default:
        metrics, loss, _ = evaluate_model(model, x, y, labels, torch.device("cpu"))
        return metrics, loss, None
    # the run's chosen rule, on the integer output codes, as the device applies it
    from qdev.training.postprocess import output_scale

    without, loss, metrics = evaluate_model(
        model, x, y, labels, torch.device("cpu"), rule=rule, output_scale=output_scale(model)
    )
    return metrics, loss, without


def evaluate_run(
    run_dir: Path, data: str | None = None, split_name: str = "test", checkpoint: str = "best"
) -> dict:
    """Evaluate ``runs/NAME/train/best.pt`` on a split of the run's split file.

    Args:
        run_dir: the run folder.
        data: another copy of BUSI (default: the one the run was trained on, or the default places).
        split_name: ``test`` (default) or ``val``/``train``.
        checkpoint: ``best`` (by validation lesion Dice, default) or ``last`` (end of training).
    """
    run = RunFolder.existing(run_dir)
    st = run.stage("train")
    ckpt_rel = checkpoint_path(checkpoint)
    if split_name not in ("train", "val", "test"):
        raise QdevError(f"split must be train, val or test, not {split_name!r}")
    # one stage record per split and checkpoint: evaluating val after test keeps test's record
    stem = _metrics_stem(split_name, checkpoint)
    rec = StageRecord(
        run,
        "evaluate",
        {"data": data, "split": split_name, "checkpoint": checkpoint},
        split=split_name,
        at="" if checkpoint == "best" else f"@{checkpoint}",
        checkpoint=checkpoint,
        stem=stem,
    )
    split_file = rec.input("train/split.json")
    model, ckpt = load_checkpoint_model(rec.input(ckpt_rel))
    size = int(ckpt["size"])
    arrays = open_run_data(st["config"], data, (size, size))
    idx = read_split(split_file).indices(arrays, split_name)
    x = torch.from_numpy(to_unit_float(arrays.images[idx])).unsqueeze(1)
    y = torch.from_numpy(arrays.masks[idx]).float().unsqueeze(1)
    labels = torch.from_numpy(arrays.labels[idx])
    rule, rule_source = run_mask_rule(run)
    rec.begin()
    metrics, loss, without = _score(model, x, y, labels, rule)
    out = {
        "run": run.path.name,
        "split": split_name,
        "checkpoint": checkpoint,
        "checkpoint_epoch": ckpt["epoch"],
        "model": ckpt["model_config"],
        "data_hash": arrays.data_hash,
        "metrics": metrics,
        "mask_rule": {"describe": rule.describe(), **rule.to_dict(), **rule_source},
        "loss": loss,
        "bits": ckpt.get("bits"),
        "params": _weight_count(model),
    }
    if without is not None:
        out["metrics_without_rule"] = without  # logit > 0: the network's own masks
    out["float_model_bits"] = 32 * out["params"]
    if out["bits"]:
        out["compression_vs_float"] = out["float_model_bits"] / out["bits"]["model_bits"]
    atomic_write_text(run.path / "evaluate" / f"{stem}.json", json.dumps(out, indent=1) + "\n")
    rec.finish()
    return out
