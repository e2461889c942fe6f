"""The training loop shared by pretraining and finetuning, for every method."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
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
from rvos.engine.tracking import Tracker
from rvos.errors import RvosError
from rvos.io import write_text

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RvosError("params.yaml: base.device = 'cuda': no CUDA device is available")
    return torch.device(name)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW: the backbone at `lr_backbone`, the text encoder at `lr_text`, the rest at `lr`."""
    groups = {"backbone.": [], "text_encoder.": [], "": []}
    for name, param in model.named_parameters():
        if param.requires_grad:
            prefix = next(p for p in groups if name.startswith(p))
            groups[prefix].append(param)
    lrs = {"backbone.": cfg.lr_backbone, "text_encoder.": cfg.lr_text, "": cfg.lr}
    return torch.optim.AdamW(
        [{"params": params, "lr": lrs[p]} for p, params in groups.items() if params],
        weight_decay=cfg.weight_decay,
    )


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int):
    """Linear warm-up for `warmup` steps, then cosine decay to zero at `total`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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
    return json.dumps([config, dataclasses.asdict(cfg), seed, len(dataset)], sort_keys=True)


def _load_resume(path: Path | None, fingerprint: str, desc: str) -> dict | None:
    if path is None or not path.is_file():
        return None
    state = load_checkpoint(path)
    if state.get("fingerprint") != fingerprint:
        log.warning("%s: %s was written with other params or data; starting afresh", desc, path)
        return None
    log.info("%s: resuming from %s at step %d", desc, path, state["progress"]["step"])
    return state


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

    With `resume`, the whole training state (model, optimizer, scheduler, RNGs, position in
    the epoch, loss curve) is written there atomically every cfg.checkpoint_every steps and at
    each epoch's end, and a run started again with the same params and data continues from
    it: with num_workers = 0 the final weights equal those of an uninterrupted run, bit for
    bit. The file is removed once training completes.
    """
    drop_last = len(dataset) >= cfg.batch_size
    samples = cfg.samples_per_epoch or len(dataset)
    plan = batch_plan(len(dataset), samples, cfg.batch_size, cfg.epochs, seed, drop_last)
    total = sum(len(batches) for batches in plan)
    model.to(device).train()
    optimizer = build_optimizer(model, cfg)
    scheduler = warmup_cosine(optimizer, cfg.warmup_steps, total)
    fingerprint = _fingerprint(config, cfg, seed, dataset)
    state = _load_resume(resume, fingerprint, desc)
    progress = {"step": 0, "epoch": 0, "batch": 0, "rows": ["step,epoch,loss,lr"], "recent": []}
    progress.update(logged=float("nan"), skipped=0, bad_in_a_row=0)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        progress.update(state["progress"])
        set_rng_state(state["rng"])
    resumed_at = progress["step"]

    def save_resume() -> None:
        if resume is not None:
            save_checkpoint(
                resume,
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                progress=progress,
                rng=rng_state(),
                fingerprint=fingerprint,
                config=config,
            )

    for epoch in range(progress["epoch"], cfg.epochs):
        # A generator of its own: starting a loader must not draw from the global RNG, which a
        # resumed run would then be one draw ahead on.
        loader = DataLoader(
            dataset,
            batch_sampler=plan[epoch][progress["batch"] :],
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
        )
        for batch in bar:
            _step(model, criterion, optimizer, batch, cfg, device, progress, tracker, desc)
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
        save_checkpoint(
            checkpoint,
            model=model.state_dict(),
            epoch=epoch + 1,
            step=progress["step"],
            config=config,
        )
        save_resume()
        log.info("%s: epoch %d done, checkpoint %s", desc, epoch + 1, checkpoint)
    write_text(curve, "\n".join(progress["rows"]) + "\n")
    if resume is not None:
        resume.unlink(missing_ok=True)
    return TrainResult(
        steps=progress["step"],
        final_loss=round(progress["logged"], 6),
        resumed_at=resumed_at,
        skipped_steps=progress["skipped"],
    )


def _step(model, criterion, optimizer, batch, cfg, device, progress, tracker, desc) -> None:
    """One optimisation step; a non-finite loss skips it, too many in a row stop training."""
    frames, masks = batch["frames"].to(device), batch["masks"].to(device)
    valid = batch["valid"].to(device)
    losses = criterion(model(frames, batch["texts"]), masks, valid)
    loss = sum(criterion.weight_dict[k] * v for k, v in losses.items())
    optimizer.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):
        progress["skipped"] += 1
        progress["bad_in_a_row"] += 1
        log.warning("%s: loss %s at step %d, step skipped", desc, loss.item(), progress["step"])
        tracker.log_metrics({"skipped_steps": progress["skipped"]}, step=progress["step"])
        if progress["bad_in_a_row"] >= cfg.max_bad_steps:
            raise RvosError(
                f"{desc}: {progress['bad_in_a_row']} non-finite losses in a row (last at step "
                f"{progress['step']}, max_bad_steps = {cfg.max_bad_steps}); lower the lr or "
                "check the data"
            )
        return
    progress["bad_in_a_row"] = 0
    loss.backward()
    if cfg.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    progress["recent"].append(loss.item())
