"""Mask losses shared by the methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 − Dice per mask, averaged; logits and targets (N, H, W). eps keeps empty masks finite."""
    probs = logits.sigmoid().flatten(1)
    targets = targets.flatten(1)
    overlap = (probs * targets).sum(1)
    return (1 - (2 * overlap + eps) / (probs.sum(1) + targets.sum(1) + eps)).mean()


class MaskLoss(nn.Module):
    """Binary cross-entropy + Dice on per-frame mask logits.

    Returns unweighted losses; `weight_dict` says how the engine combines them.
    """

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0):
        super().__init__()
        self.weight_dict = {"loss_bce": bce_weight, "loss_dice": dice_weight}

    def forward(
        self, outputs: dict, masks: torch.Tensor, valid: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """outputs["pred_masks"] and masks: (N, T, H, W); valid (N, T): frames with a target
        (A2D annotates one frame of a window); the others are left out of the loss."""
        logits, targets = outputs["pred_masks"], masks.to(outputs["pred_masks"].dtype)
        if valid is None:
            logits, targets = logits.flatten(0, 1), targets.flatten(0, 1)
        else:
            logits, targets = logits[valid], targets[valid]
        return {
            "loss_bce": F.binary_cross_entropy_with_logits(logits, targets),
            "loss_dice": dice_loss(logits, targets),
        }
