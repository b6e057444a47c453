"""Train the float U-Net or QuantU-Net: per-epoch JSON-lines log, best checkpoint by validation
lesion Dice, resume after a kill with no completed epoch lost, fixed seeds, CPU/CUDA, DDP.

Runs unchanged under ``torchrun --nproc_per_node N`` (gloo on CPU, NCCL on CUDA): each rank trains
on a disjoint shard of the epoch's permutation; rank 0 validates, logs and writes checkpoints.

Bit widths move, and lambda means what it says: the bit-width offsets get their own optimizer,
plain SGD with momentum (``bits_lr`` = 0.1, no weight decay), not the weights' AdamW. Under
AdamW at the weights' rate (1e-3) they need ~1,000 steps per bit (Brevitas issues #1156, #1177,
#1372); under any Adam, which divides each gradient by its own running magnitude, a width moves
at ~lr per step whatever the size of lambda/N versus the task's gradient. With SGD a width moves by
``bits_lr * (lambda/N - d task / d width)``, so it settles where the task's marginal value of a
bit equals lambda/N. A float checkpoint can initialise QuantU-Net (``init_from``); the bit-width
tracker is built after every ``load_state_dict`` because Brevitas rebuilds its quantizers then.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qdev.core.errors import ConfigError, QdevError
from qdev.core.maskrule import MaskRule
from qdev.core.preprocess import to_unit_float
from qdev.training.augment import AUGMENT_PRESETS, augment_batch
from qdev.training.config import ModelConfig, TrainConfig
from qdev.training.ema import ModelEMA
from qdev.training.data import (
    DataOptions,
    find_duplicates,
    make_split,
    open_busi,
    read_split,
    write_split,
)
from qdev.training.losses import total_loss
from qdev.training.metrics import SegMetrics
from qdev.training.postprocess import logit_codes
from qdev.training.models import build_model
from qdev.training.models.bitwidth import BitWidthTracker
from qdev.training.checkpoint import init_weights_from, save_checkpoint
from qdev.training.runs import RunFolder, atomic_write_text
from qdev.training.stages import StageRecord

__all__ = [
    "TrainConfig",
    "train",
    "prepare_data",
    "DataTensors",
    "evaluate_model",
    "ProgressFn",
    "finetune_model_config",
]

log = logging.getLogger(__name__)


@dataclass
class DataTensors:
    x: dict[str, torch.Tensor]
    y: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    ids: dict[str, list[str]]
    data_hash: str
    split_path: Path | None
    weights: torch.Tensor | None = None  # per training image, where several datasets are mixed
    epoch_draws: int = 0  # training images drawn per epoch (0: one permutation of the train set)
    mix_hashes: list = field(default_factory=list)

    @property
    def n_epoch(self) -> int:
        return self.epoch_draws or len(self.x["train"])


def prepare_data(cfg: TrainConfig, split_out: Path | None = None, progress=None) -> DataTensors:  # noqa: ANN001
    """Load BUSI (cached), make or read the split, return float tensors per split."""
    arrays = open_busi(
        cfg.data,
        (cfg.size, cfg.size),
        progress=progress,
        options=DataOptions.from_dict(cfg.data_options),
    )
    if cfg.split in ("grouped", "paper"):
        split = make_split(
            arrays, find_duplicates(arrays), cfg.split, cfg.seed if cfg.split == "paper" else 0
        )
    else:
        split = read_split(Path(cfg.split))
    if split_out is not None:
        write_split(split, split_out)
    xs, ys, ls, ids = {}, {}, {}, {}
    for name in ("train", "val", "test"):
        idx = split.indices(arrays, name)
        xs[name] = torch.from_numpy(to_unit_float(arrays.images[idx])).unsqueeze(1)
        ys[name] = torch.from_numpy(arrays.masks[idx]).float().unsqueeze(1)
        ls[name] = torch.from_numpy(arrays.labels[idx])
        ids[name] = [arrays.ids[i] for i in idx]
    if len(xs["train"]) == 0 or len(xs["val"]) == 0:
        raise QdevError("the split leaves no training or validation images")
    out = DataTensors(xs, ys, ls, ids, arrays.data_hash, split_out)
    if cfg.mix:
        _add_mix(cfg, out)
    return out


def _add_mix(cfg: TrainConfig, data: DataTensors) -> None:
    """Append the mixed datasets' training images and give every training image its draw weight."""
    n_main = len(data.x["train"])
    weights = [torch.ones(n_main, dtype=torch.float64)]
    draws = float(n_main)
    for m in cfg.mix:
        arrays = open_busi(
            m["data"], (cfg.size, cfg.size), options=DataOptions.from_dict(m.get("data_options"))
        )
        split_spec = m.get("split", "grouped")
        split = (
            make_split(arrays, find_duplicates(arrays))
            if split_spec == "grouped"
            else read_split(Path(split_spec))
        )
        idx = split.indices(arrays, "train")
        if len(idx) == 0:
            raise QdevError(f"mix {m['data']}: its split has no training images")
        data.x["train"] = torch.cat(
            [data.x["train"], torch.from_numpy(to_unit_float(arrays.images[idx])).unsqueeze(1)]
        )
        data.y["train"] = torch.cat(
            [data.y["train"], torch.from_numpy(arrays.masks[idx]).float().unsqueeze(1)]
        )
        data.labels["train"] = torch.cat(
            [data.labels["train"], torch.from_numpy(arrays.labels[idx])]
        )
        data.ids["train"] = data.ids["train"] + [
            f"{Path(str(m['data'])).name}:{arrays.ids[i]}" for i in idx
        ]
        w = float(m["weight"])
        weights.append(torch.full((len(idx),), w * n_main / len(idx), dtype=torch.float64))
        draws += w * n_main
        data.mix_hashes.append(arrays.data_hash)
    data.weights = torch.cat(weights)
    data.epoch_draws = int(round(draws))


def selection_score(metrics: dict, select: str = "lesion") -> float:
    """The validation score the best checkpoint is chosen by (see ``TrainConfig.select``)."""
    if not metrics["n_lesion_images"]:
        return metrics["dice"]
    normal = metrics["per_class"].get("normal")
    if select == "balanced" and normal and normal["n"]:
        return 0.5 * (metrics["dice_lesion"] + normal["dice"])
    return metrics["dice_lesion"]


def finetune_model_config(path: str) -> ModelConfig:
    """The model configuration of the checkpoint a fine-tune starts from.

    Raises:
        QdevError: not a qdev checkpoint.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        return ModelConfig(**ckpt["model_config"])
    except (OSError, KeyError, TypeError, RuntimeError) as exc:
        raise QdevError(
            f"{path}: not a qdev checkpoint to fine-tune ({exc.__class__.__name__})"
        ) from None


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device available")
    return torch.device(name)


def _param_groups(
    model: nn.Module, tracker: BitWidthTracker | None, cfg: TrainConfig
) -> list[dict]:
    bit_ids = {id(p) for p in tracker.parameters()} if tracker else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if id(p) in bit_ids:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "name": "weights"},
        {"params": no_decay, "lr": cfg.lr, "weight_decay": 0.0, "name": "bias_bn_scale"},
    ]
    return groups


def _bits_optimizer(
    tracker: BitWidthTracker | None, cfg: TrainConfig
) -> torch.optim.Optimizer | None:
    if tracker is None:
        return None
    if cfg.bits_optimizer == "sgd":
        return torch.optim.SGD(tracker.parameters(), lr=cfg.bits_lr, momentum=0.9)
    if cfg.bits_optimizer == "adam":
        return torch.optim.Adam(tracker.parameters(), lr=cfg.bits_lr)
    raise ConfigError(f"--bits-optimizer must be sgd or adam, not {cfg.bits_optimizer!r}")


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    batch: int = 32,
    rule: MaskRule | None = None,
    output_scale: float | None = None,
) -> tuple[dict, dict, dict | None]:
    """(metrics of the network's own masks (logit > 0), mean segmentation loss parts, metrics
    under ``rule`` or None) of ``model`` on tensors (eval mode), in one pass. Under a mask rule
    (which needs the model's ``output_scale``) masks are the rule applied to the integer output
    codes, as on the device."""
    if rule is not None and output_scale is None:
        raise QdevError("a mask rule needs the model's output scale")
    model.eval()
    own = SegMetrics()
    ruled = SegMetrics() if rule is not None else None
    bce = dice = 0.0
    n = len(x)
    for i in range(0, n, batch):
        xb, yb, lb = x[i : i + batch].to(device), y[i : i + batch].to(device), labels[i : i + batch]
        logits = model(xb)
        parts = total_loss(logits, yb, None, 0.0)
        bce += float(parts.bce) * len(xb)
        dice += float(parts.dice) * len(xb)
        own.update(logits, yb, lb)
        if ruled is not None:
            codes = logit_codes(logits[:, 0].cpu().numpy(), output_scale)
            ruled.update_masks(torch.from_numpy(rule.apply(codes)).unsqueeze(1), yb, lb)
    loss = {"bce": bce / n, "dice": dice / n, "seg": (bce + dice) / n}
    return own.aggregate(), loss, (ruled.aggregate() if ruled is not None else None)


# --------------------------------------------------------------------------- the training run
# ``train`` = setup -> build (or restore) the training state -> per epoch: train, validate and
# checkpoint -> finish the run stage. Progress goes through a callback (see ProgressFn), so the
# trainer knows nothing of terminals; the CLI turns it into rich progress bars and epoch lines.

ProgressFn = Callable[[str, dict], None]
"""``progress(event, info)``: ``"step"`` ({epoch, step, steps, loss}) within an epoch,
``"epoch"`` (the epoch's log record) after validation."""


@dataclass
class _Dist:
    world: int
    rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclass
class _State:
    """Everything that changes during a run (and what ``last.pt`` restores)."""

    model: nn.Module
    tracker: BitWidthTracker | None
    opt: torch.optim.Optimizer
    bopt: torch.optim.Optimizer | None
    sched: torch.optim.lr_scheduler.LambdaLR
    ema: ModelEMA | None
    steps_per_epoch: int
    start_epoch: int = 1
    best_score: float = -1.0
    history: list = field(default_factory=list)


def _setup_distributed(cfg: TrainConfig) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    dev = _device(cfg.device)
    if world > 1:
        import torch.distributed as dist

        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif world > 1 and dev.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // world))
    return _Dist(world, rank, dev)


def _stored_state(cfg: TrainConfig, last_path: Path, resume: bool, main: bool) -> dict | None:
    """The checkpoint to resume from (None: a new run); refuses a clash with the stored config."""
    if not last_path.is_file():
        if resume and main:
            log.warning("%s: nothing to resume, starting a new run", cfg.out)
        return None
    if not resume:
        raise QdevError(
            f"{cfg.out} already holds a training run: pass --resume, or choose another --out"
        )
    state = torch.load(last_path, map_location="cpu", weights_only=False)
    old = TrainConfig.from_dict(state["config"])
    if cfg.model.kind == "float":  # bit-width optimiser settings do not apply to a float run
        old = replace(old, bits_lr=cfg.bits_lr, bits_optimizer=cfg.bits_optimizer)
    if replace(old, epochs=cfg.epochs) != cfg:
        raise QdevError(f"{cfg.out}: --resume with a different configuration than the stored one")
    return state


def _build_state(cfg: TrainConfig, stored: dict | None, n_train: int, dist: _Dist) -> _State:
    _seed_all(cfg.seed)
    model = build_model(cfg.model)
    if cfg.init_from and stored is None:
        init_weights_from(model, cfg.init_from)
    if cfg.finetune_from and stored is None:
        model.load_state_dict(
            torch.load(cfg.finetune_from, map_location="cpu", weights_only=False)["model"]
        )
    if stored is not None:
        model.load_state_dict(stored["model"])
    model.to(dist.device)
    # after every load_state_dict: Brevitas rebuilds its quantizer modules when a state dict is
    # loaded, so a tracker made earlier would hold bit widths that are no longer in the model
    tracker = BitWidthTracker(model, (cfg.size, cfg.size)) if cfg.model.kind == "quant" else None
    if tracker is not None:
        tracker.check_bound(model)
    opt = torch.optim.AdamW(_param_groups(model, tracker, cfg))
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs

    def lr_lambda(step: int) -> float:  # cosine to 1% (bit widths: constant rate)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))

    st = _State(
        model,
        tracker,
        opt,
        _bits_optimizer(tracker, cfg),
        torch.optim.lr_scheduler.LambdaLR(opt, [lr_lambda, lr_lambda]),
        ModelEMA(model, cfg.ema) if cfg.ema > 0 and dist.main else None,
        steps_per_epoch,
    )
    if stored is not None:
        if st.ema is not None and stored.get("ema") is not None:
            st.ema.load_state_dict(stored["ema"])
        st.opt.load_state_dict(stored["optimizer"])
        if st.bopt is not None:
            st.bopt.load_state_dict(stored["bits_optimizer"])
        st.sched.load_state_dict(stored["scheduler"])
        st.start_epoch, st.best_score, st.history = (
            stored["epoch"] + 1,
            stored["best_score"],
            stored["history"],
        )
        torch.set_rng_state(stored["torch_rng"])
    return st


def _epoch_order(cfg: TrainConfig, data: DataTensors, epoch: int) -> torch.Tensor:
    """The epoch's image order: a seeded permutation, or weighted draws for mixed datasets."""
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    if data.weights is None:
        return torch.randperm(len(data.x["train"]), generator=gen)
    return torch.multinomial(data.weights, data.n_epoch, replacement=True, generator=gen)


def _step(
    cfg: TrainConfig,
    st: _State,
    ddp_model: nn.Module,
    xb: torch.Tensor,
    yb: torch.Tensor,
    frozen: bool,
) -> dict:
    """One optimisation step on a batch (bit widths held once ``frozen``); its loss parts."""
    logits = ddp_model(xb)
    bits = st.tracker.average(cfg.bit_loss) if st.tracker else None
    if bits is not None and frozen:
        bits = bits.detach()  # a constant now: logged, but it pulls no width
    parts = total_loss(logits, yb, bits, cfg.lam, cfg.normal_weight, cfg.dice)
    st.opt.zero_grad(set_to_none=True)
    if st.bopt is not None:
        st.bopt.zero_grad(set_to_none=True)
    parts.total.backward()
    st.opt.step()
    if st.bopt is not None and not frozen:
        st.bopt.step()
    st.sched.step()
    if st.tracker and not frozen:
        st.tracker.project_()
    if st.ema is not None:
        st.ema.update(st.model)
    return parts.detached()


def _mean_over_ranks(parts: dict, dist: _Dist) -> dict:
    if dist.world == 1:
        return parts
    import torch.distributed as tdist

    t = torch.tensor([parts[k] for k in sorted(parts)], device=dist.device)
    tdist.all_reduce(t)
    return {k: float(v) / dist.world for k, v in zip(sorted(parts), t)}


def _train_epoch(
    cfg: TrainConfig,
    st: _State,
    data: DataTensors,
    dist: _Dist,
    epoch: int,
    frozen: bool,
    ddp_model: nn.Module,
    progress: ProgressFn | None,
) -> dict:
    """One pass over this rank's shard of the epoch's permutation; mean loss parts (all ranks)."""
    ddp_model.train()
    perm = _epoch_order(cfg, data, epoch)
    aug_gen = torch.Generator().manual_seed(cfg.seed * 7919 + epoch * 31 + dist.rank)
    aug_cfg = AUGMENT_PRESETS[cfg.augment]
    sums = {"total": 0.0, "bce": 0.0, "dice": 0.0, "bits": 0.0}
    nb = 0
    for s in range(st.steps_per_epoch):
        idx = perm[s * cfg.batch_size : (s + 1) * cfg.batch_size][dist.rank :: dist.world]
        if len(idx) == 0:
            continue
        xb, yb = data.x["train"][idx].to(dist.device), data.y["train"][idx].to(dist.device)
        if aug_cfg is not None:
            xb, yb = augment_batch(xb, yb, aug_gen, aug_cfg)
        for k, v in _step(cfg, st, ddp_model, xb, yb, frozen).items():
            sums[k] += v
        nb += 1
        if progress is not None and dist.main:
            figures = {"epoch": epoch, "step": s + 1, "steps": st.steps_per_epoch}
            progress("step", {**figures, "loss": sums["total"] / nb})
    return _mean_over_ranks({k: v / max(nb, 1) for k, v in sums.items()}, dist)


def _save_checkpoints(
    cfg: TrainConfig, st: _State, epoch: int, record: dict, judged: nn.Module, paths: dict
) -> None:
    """best.pt (the judged model, when this epoch is the best) and last.pt (everything resume
    needs)."""
    common = {
        "model_config": cfg.model.to_dict(),
        "config": cfg.to_dict(),
        "size": cfg.size,
        "epoch": epoch,
    }
    if record["best"]:
        best = {"model": judged.state_dict(), "val": record["val"], "bits": record.get("bits")}
        save_checkpoint({**common, **best, "ema": st.ema is not None}, paths["best"])
    save_checkpoint(
        {
            **common,
            "model": st.model.state_dict(),
            "optimizer": st.opt.state_dict(),
            "bits_optimizer": st.bopt.state_dict() if st.bopt is not None else None,
            "scheduler": st.sched.state_dict(),
            "best_score": st.best_score,
            "history": st.history,
            "ema": st.ema.state_dict() if st.ema is not None else None,
            "torch_rng": torch.get_rng_state(),
        },
        paths["last"],
    )


def _validate_and_checkpoint(
    cfg: TrainConfig,
    st: _State,
    data: DataTensors,
    dev: torch.device,
    epoch: int,
    seconds: float,
    train_parts: dict,
    frozen: bool,
    eligible: bool,
    paths: dict[str, Path],
) -> dict:
    """Validate (the EMA model if any), pick the best, write best.pt / last.pt / the log line."""
    judged = st.ema.module if st.ema is not None else st.model
    val = (data.x["val"], data.y["val"], data.labels["val"], dev)
    metrics, val_loss, _ = evaluate_model(judged, *val)
    record = {
        "epoch": epoch,
        "seconds": round(seconds, 3),
        "lr": st.opt.param_groups[0]["lr"],
        "train": train_parts,
        "val_loss": val_loss,
        "val": metrics,
    }
    if st.ema is not None:  # the live weights, for the EMA-vs-live comparison
        record["val_live"] = evaluate_model(st.model, *val)[0]
    if st.tracker:
        record["bits"] = st.tracker.report()
        value = float(st.tracker.average(cfg.bit_loss).detach())
        record["bit_loss"] = {"mode": cfg.bit_loss, "lambda": cfg.lam, "value": value}
        record["bits_frozen"] = frozen
    score = selection_score(metrics, cfg.select)
    record["best"] = bool(eligible and score > st.best_score)
    if record["best"]:
        st.best_score = score
    st.history.append(record)
    # checkpoint first, then the log line: a kill in between is repaired on resume, which
    # rewrites the log from the checkpoint's history.
    _save_checkpoints(cfg, st, epoch, record, judged, paths)
    with open(paths["log"], "a") as fh:
        fh.write(json.dumps(record) + "\n")
    return record


def _wrap_ddp(model: nn.Module, dist: _Dist) -> nn.Module:
    """The model as the ranks train it: itself on one process, DistributedDataParallel on more."""
    if dist.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)


def _barrier() -> None:
    import torch.distributed as tdist

    tdist.barrier()


def _stage_record(
    run: RunFolder, cfg: TrainConfig, data: DataTensors, dist: _Dist, resumed: bool
) -> StageRecord:
    """The train stage's record, begun with the data's hashes (a resumed run keeps its own)."""
    inputs = {"data_hash": data.data_hash, "split": cfg.split}
    if data.mix_hashes:
        inputs["mix_data_hashes"] = data.mix_hashes
    accel = torch.cuda.get_device_name(dist.device) if dist.device.type == "cuda" else None
    rec = StageRecord(run, "train", cfg.to_dict())
    return rec.begin(inputs, accelerator=accel) if dist.main and not resumed else rec.resumed()


def train(cfg: TrainConfig, resume: bool = False, progress: ProgressFn | None = None) -> dict:
    """Run (or resume) a training run. Returns the last epoch's log record.

    Raises:
        ConfigError / QdevError: bad options, a run folder that exists without ``resume``,
            or a resume whose config differs (other than ``epochs``).
    """
    if cfg.finetune_from:
        cfg.model = finetune_model_config(cfg.finetune_from)
    cfg.check()
    dist = _setup_distributed(cfg)
    run = RunFolder(Path(cfg.out))
    tdir = run.path / "train"
    paths = {"last": tdir / "last.pt", "best": tdir / "best.pt", "log": tdir / "log.jsonl"}
    stored = _stored_state(cfg, paths["last"], resume, dist.main)
    if dist.main:
        tdir.mkdir(parents=True, exist_ok=True)
    data = prepare_data(cfg, split_out=tdir / "split.json" if dist.main else None)
    st = _build_state(cfg, stored, data.n_epoch, dist)
    if stored is not None and dist.main:
        atomic_write_text(paths["log"], "".join(json.dumps(h) + "\n" for h in st.history))
    ddp_model = _wrap_ddp(st.model, dist)
    rec = _stage_record(run, cfg, data, dist, resumed=stored is not None)
    record: dict = st.history[-1] if st.history else {}
    freeze_at = cfg.freeze_epoch()
    for epoch in range(st.start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        frozen = freeze_at is not None and epoch >= freeze_at
        if frozen and st.tracker is not None:
            st.tracker.freeze_()  # idempotent: snaps offsets to integers, stops their gradients
            if st.ema is not None and epoch == freeze_at:
                st.ema.reset(st.model)  # average only weights on the final grid
        train_parts = _train_epoch(cfg, st, data, dist, epoch, frozen, ddp_model, progress)
        if dist.main:
            seconds, eligible = time.perf_counter() - t0, freeze_at is None or frozen
            record = _validate_and_checkpoint(
                cfg, st, data, dist.device, epoch, seconds, train_parts, frozen, eligible, paths
            )
            if progress is not None:
                progress("epoch", record)
        if dist.world > 1:
            _barrier()
    if dist.main:
        from qdev.training.plots import plot_training

        plot_training(paths["log"], tdir)
        rec.finish(best_val_score=st.best_score, epochs_done=len(st.history))
    if dist.world > 1:
        import torch.distributed as tdist

        tdist.destroy_process_group()
    return record
