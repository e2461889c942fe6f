"""The training loop shared by pretraining and finetuning, for every method.

Under torchrun every rank runs `train` after `distributed.setup`: `batch_size` is the global
batch, each rank trains DistributedDataParallel on its share of every batch of one seeded
plan, and rank 0 alone writes checkpoints, the resume state and the loss curve.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from rvos.config import TrainConfig
from rvos.data.datasets import collate
from rvos.engine.checkpoint import load_checkpoint, save_checkpoint
from rvos.engine.distributed import (
    all_gather_objects,
    is_main,
    rank,
    reduce_mean,
    shard,
    world_size,
)
from rvos.engine.tracking import Tracker
from rvos.errors import ConfigError, RvosError
from rvos.io import write_text

log = logging.getLogger(__name__)

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Deformable attention layers Deformable-DETR and ReferFormer train at their own lr.
LINEAR_PROJ_NAMES = ("sampling_offsets", "reference_points")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_amp(amp: str, device: torch.device, key: str) -> None:
    """float16 autocast needs CUDA; bfloat16 also runs on CPUs (fast only on those with bf16
    instructions)."""
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"params.yaml: {key} = 'fp16': expected a CUDA device (base.device gives {device}); "
            "use 'bf16' or 'off' on a CPU"
        )


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW: the backbone at `lr_backbone`, the text encoder at `lr_text`, the deformable
    attention's sampling offsets and reference points at `lr × lr_linear_proj_mult`, the rest
    at `lr`."""
    lrs = {"backbone.": cfg.lr_backbone, "text_encoder.": cfg.lr_text, "": cfg.lr}
    groups: dict[str, list[nn.Parameter]] = {prefix: [] for prefix in lrs}
    linear_proj = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if any(word in name for word in LINEAR_PROJ_NAMES):
            linear_proj.append(param)
        else:
            groups[next(p for p in groups if name.startswith(p))].append(param)
    param_groups = [{"params": params, "lr": lrs[p]} for p, params in groups.items() if params]
    if linear_proj:
        param_groups.append({"params": linear_proj, "lr": cfg.lr * cfg.lr_linear_proj_mult})
    return torch.optim.AdamW(param_groups, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, steps_per_epoch: int, total: int) -> Callable[[int], float]:
    """The lr multiplier at each step: linear warm-up over `warmup_steps`, times the decay of
    `lr_schedule` (cosine to zero at `total`, or `lr_drop_factor` per epoch of
    `lr_drop_epochs` done). A function of the step alone, so a resumed run follows it exactly."""
    warmup = cfg.warmup_steps
    drops = [epoch * steps_per_epoch for epoch in cfg.lr_drop_epochs]

    def cosine(step: int) -> float:
        progress = max(0.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def stepwise(step: int) -> float:
        return cfg.lr_drop_factor ** sum(step >= drop for drop in drops)

    decay = cosine if cfg.lr_schedule == "cosine" else stepwise

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup) if warmup else 1.0
        return warm * decay(step)

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """`lr_factor` applied to every parameter group, stepped once per optimisation step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, steps_per_epoch, total))


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    resumed_at: int = 0  # the step a killed run was resumed from (0: started afresh)
    skipped_steps: int = 0  # batches whose loss was not finite


def batch_plan(
    length: int, samples: int, batch_size: int, epochs: int, seed: int, drop_last: bool
) -> list[list[list[int]]]:
    """Per epoch, its batches of dataset indices: seeded permutations repeated past the dataset
    size. Drawn up front from `seed` alone, so a resumed run sees the batches a run that was
    never interrupted sees."""
    generator = torch.Generator().manual_seed(seed)
    plan = []
    for _ in range(epochs):
        order = torch.cat(
            [torch.randperm(length, generator=generator) for _ in range(-(-samples // length))]
        )[:samples].tolist()
        batches = [order[i : i + batch_size] for i in range(0, samples, batch_size)]
        if drop_last and len(batches[-1]) < batch_size:
            batches.pop()
        plan.append(batches)
    return plan


def rng_state() -> dict:
    """Python, NumPy and torch RNG states as plain data and tensors (loadable weights-only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fingerprint(config: dict, cfg: TrainConfig, seed: int, dataset: Dataset) -> str:
    """What a resume state must have been trained with to be continued."""
    return json.dumps(
        [config, dataclasses.asdict(cfg), seed, len(dataset), world_size()], sort_keys=True
    )


def _load_resume(path: Path | None, fingerprint: str, desc: str) -> dict | None:
    if path is None or not path.is_file():
        return None
    state = load_checkpoint(path)
    if state.get("fingerprint") != fingerprint:
        log.warning(
            "%s: %s was written with other params, data or number of processes; starting afresh",
            desc,
            path,
        )
        return None
    log.info("%s: resuming from %s at step %d", desc, path, state["progress"]["step"])
    return state


def _check_batches(plan: list[list[list[int]]], cfg: TrainConfig, desc: str) -> None:
    """Every rank needs at least one item of every batch."""
    smallest = min((len(b) for batches in plan for b in batches), default=world_size())
    if smallest < world_size():
        raise ConfigError(
            f"{desc}: batch_size = {cfg.batch_size} is the global batch, and a batch of "
            f"{smallest} cannot give each of {world_size()} processes an item: expected "
            f"batch_size (and dataset size) >= {world_size()}"
        )


def _distribute(model: nn.Module, device: torch.device, cfg: TrainConfig) -> nn.Module:
    """What forward and backward run through: `model` itself in a single process, else
    DistributedDataParallel around it (which averages gradients over the ranks)."""
    if world_size() == 1:
        return model
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=cfg.find_unused_parameters,
    )


def train(
    model: nn.Module,
    criterion: nn.Module,
    dataset: Dataset,
    cfg: TrainConfig,
    *,
    device: torch.device,
    checkpoint: Path,
    config: dict,
    tracker: Tracker,
    curve: Path,
    seed: int,
    num_workers: int = 0,
    desc: str = "train",
    resume: Path | None = None,
) -> TrainResult:
    """Train for cfg.epochs; `checkpoint` gets the model after every epoch, `curve` the loss.

    With `resume`, the whole training state (model, optimizer, scheduler, loss scaler, RNGs,
    position in the epoch, loss curve) is written there atomically every cfg.checkpoint_every
    steps and at each epoch's end, and a run started again with the same params, data and
    number of processes continues from it: with num_workers = 0 the final weights equal those
    of an uninterrupted run, bit for bit. The file is removed once training completes.

    With several ranks, `cfg.batch_size` is the global batch: the batches and their order are
    a single process's, each rank's loss is weighted by its share of the batch so that the
    averaged gradient is the whole batch's, and the logged loss is the whole batch's. On GPUs
    BatchNorm becomes SyncBatchNorm; on CPUs (where it has no kernel) each rank normalises
    with its share's statistics. Augmentation and dropout draw from each rank's generators.
    """
    drop_last = len(dataset) >= cfg.batch_size
    samples = cfg.samples_per_epoch or len(dataset)
    plan = batch_plan(len(dataset), samples, cfg.batch_size, cfg.epochs, seed, drop_last)
    _check_batches(plan, cfg, desc)
    total = sum(len(batches) for batches in plan)
    model.to(device).train()
    if world_size() > 1 and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, len(plan[0]), total)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    fingerprint = _fingerprint(config, cfg, seed, dataset)
    state = _load_resume(resume, fingerprint, desc)
    progress = {"step": 0, "epoch": 0, "batch": 0, "rows": ["step,epoch,loss,lr"], "recent": []}
    progress.update(logged=float("nan"), skipped=0, bad_in_a_row=0)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        progress.update(state["progress"])
        set_rng_state(state["rng"][rank()])
    if len(set(all_gather_objects(progress["step"]))) > 1:
        raise RvosError(
            f"{desc}: the processes found different resume states in {resume}: expected it on "
            "a filesystem every node shares"
        )
    resumed_at = progress["step"]
    net = _distribute(model, device, cfg)

    def save_resume() -> None:
        if resume is None:
            return
        rngs = all_gather_objects(rng_state())
        if is_main():
            save_checkpoint(
                resume,
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict(),
                progress=progress,
                rng=rngs,
                fingerprint=fingerprint,
                config=config,
            )

    for epoch in range(progress["epoch"], cfg.epochs):
        # A generator of its own: starting a loader must not draw from the global RNG, which a
        # resumed run would then be one draw ahead on.
        loader = DataLoader(
            dataset,
            batch_sampler=[shard(batch) for batch in plan[epoch][progress["batch"] :]],
            num_workers=num_workers,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(seed + epoch),
        )
        bar = tqdm(
            loader,
            desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}",
            unit="batch",
            total=len(plan[epoch]),
            initial=progress["batch"],
            disable=not is_main(),
        )
        for batch in bar:
            share = len(batch["frames"]) * world_size() / len(plan[epoch][progress["batch"]])
            loss = _step(net, criterion, optimizer, scaler, batch, share, cfg, device)
            _record(loss, progress, cfg, tracker, desc)
            scheduler.step()
            progress["step"] += 1
            progress["batch"] += 1
            lr = optimizer.param_groups[0]["lr"]
            step = progress["step"]
            if progress["recent"]:
                bar.set_postfix(loss=f"{progress['recent'][-1]:.4f}", lr=f"{lr:.2e}")
            if (step % cfg.log_every == 0 or step == total) and progress["recent"]:
                progress["logged"] = float(np.mean(progress["recent"]))
                progress["recent"] = []
                progress["rows"].append(f"{step},{epoch + 1},{progress['logged']:.6f},{lr:.6e}")
                tracker.log_metrics({"loss": progress["logged"], "lr": lr}, step=step)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                save_resume()
        progress.update(epoch=epoch + 1, batch=0)
        if is_main():
            save_checkpoint(
                checkpoint,
                model=model.state_dict(),
                epoch=epoch + 1,
                step=progress["step"],
                config=config,
            )
        save_resume()
        log.info("%s: epoch %d done, checkpoint %s", desc, epoch + 1, checkpoint)
    if is_main():
        write_text(curve, "\n".join(progress["rows"]) + "\n")
        if resume is not None:
            resume.unlink(missing_ok=True)
    return TrainResult(
        steps=progress["step"],
        final_loss=round(progress["logged"], 6),
        resumed_at=resumed_at,
        skipped_steps=progress["skipped"],
    )


def _step(net, criterion, optimizer, scaler, batch, share, cfg, device) -> float:
    """One optimisation step on this rank's share of a batch, whose loss is weighted by `share`
    (its fraction of the batch × the number of ranks). Returns the whole batch's loss; when it
    is not finite (then on every rank) the update is skipped."""
    frames, masks = batch["frames"].to(device), batch["masks"].to(device)
    valid = batch["valid"].to(device)
    with torch.autocast(device.type, dtype=AMP_DTYPES.get(cfg.amp), enabled=cfg.amp != "off"):
        losses = criterion(net(frames, batch["texts"]), masks, valid)
        loss = sum(criterion.weight_dict[k] * v for k, v in losses.items()) * share
    batch_loss = reduce_mean(loss)
    optimizer.zero_grad(set_to_none=True)
    if not torch.isfinite(batch_loss):
        return batch_loss.item()
    scaler.scale(loss).backward()
    if cfg.grad_clip > 0:
        scaler.unscale_(optimizer)  # clip the true gradients, not the fp16-scaled ones
        nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return batch_loss.item()


def _record(loss: float, progress: dict, cfg: TrainConfig, tracker: Tracker, desc: str) -> None:
    """Keep a finite loss for the log; count a non-finite one (its step was skipped), and stop
    training after cfg.max_bad_steps of them in a row."""
    if math.isfinite(loss):
        progress["bad_in_a_row"] = 0
        progress["recent"].append(loss)
        return
    progress["skipped"] += 1
    progress["bad_in_a_row"] += 1
    log.warning("%s: loss %s at step %d, step skipped", desc, loss, progress["step"])
    tracker.log_metrics({"skipped_steps": progress["skipped"]}, step=progress["step"])
    if progress["bad_in_a_row"] >= cfg.max_bad_steps:
        raise RvosError(
            f"{desc}: {progress['bad_in_a_row']} non-finite losses in a row (last at step "
            f"{progress['step']}, max_bad_steps = {cfg.max_bad_steps}); lower the lr or "
            "check the data"
        )
