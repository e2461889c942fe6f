"""The training loop shared by pretraining and finetuning, for every method."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler
from tqdm import tqdm

from rvos.config import TrainConfig
from rvos.data.datasets import collate
from rvos.engine.checkpoint import save_checkpoint
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
) -> TrainResult:
    """Train for cfg.epochs, saving `checkpoint` after every epoch and a loss curve CSV."""
    samples = cfg.samples_per_epoch or len(dataset)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=RandomSampler(dataset, num_samples=samples, generator=generator),
        num_workers=num_workers,
        collate_fn=collate,
        drop_last=len(dataset) >= cfg.batch_size,
    )
    total = cfg.epochs * len(loader)
    model.to(device).train()
    optimizer = build_optimizer(model, cfg)
    scheduler = warmup_cosine(optimizer, cfg.warmup_steps, total)
    rows = ["step,epoch,loss,lr"]
    step, recent, logged = 0, [], float("nan")
    for epoch in range(cfg.epochs):
        bar = tqdm(loader, desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}", unit="batch")
        for batch in bar:
            frames, masks = batch["frames"].to(device), batch["masks"].to(device)
            valid = batch["valid"].to(device)
            losses = criterion(model(frames, batch["texts"]), masks, valid)
            loss = sum(criterion.weight_dict[k] * v for k, v in losses.items())
            if not torch.isfinite(loss):
                raise RvosError(f"{desc}: loss is {loss.item()} at step {step}; lower the lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            recent.append(loss.item())
            lr = optimizer.param_groups[0]["lr"]
            bar.set_postfix(loss=f"{recent[-1]:.4f}", lr=f"{lr:.2e}")
            if step % cfg.log_every == 0 or step == total:
                logged = float(np.mean(recent))
                recent.clear()
                rows.append(f"{step},{epoch + 1},{logged:.6f},{lr:.6e}")
                metrics = {"loss": logged, "lr": lr, **{k: v.item() for k, v in losses.items()}}
                tracker.log_metrics(metrics, step=step)
        save_checkpoint(
            checkpoint,
            model=model.state_dict(),
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            epoch=epoch + 1,
            step=step,
            config=config,
        )
        log.info("%s: epoch %d done, checkpoint %s", desc, epoch + 1, checkpoint)
    write_text(curve, "\n".join(rows) + "\n")
    return TrainResult(steps=step, final_loss=round(logged, 6))
