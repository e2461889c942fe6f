"""Set criterion of query-based methods: match a query per sentence, then supervise it.

For the final decoder layer and, with auxiliary losses, every earlier one: a sigmoid focal
classification loss over all queries of the annotated frames (only the matched query in
frames where the object is present is positive), L1 + generalised-IoU box losses and focal
+ Dice mask losses on the matched query's track. Sums are divided by the number of present
object-frames (averaged over DDP ranks), as in DETR-family training.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import box_convert, generalized_box_iou_loss

from rvos.engine.distributed import reduce_mean
from rvos.models.matcher import (
    ClipMatcher,
    Targets,
    dice_coefficient,
    focal_pixel_loss,
    subsample_masks,
)

LOSSES = ("loss_ce", "loss_bbox", "loss_giou", "loss_mask", "loss_dice")


class SetCriterion(nn.Module):
    """criterion(outputs, masks, valid) → unweighted losses; `weight_dict` weighs them.

    masks (N, T, H, W) are the sentences' target masks at the input size; valid (N, T) marks
    the annotated frames (None: all).
    """

    def __init__(self, matcher: ClipMatcher, weights: dict[str, float], aux_layers: int):
        super().__init__()
        if set(weights) != set(LOSSES):
            raise ValueError(f"loss weights must be given for {LOSSES}, got {sorted(weights)}")
        self.matcher = matcher
        self.weight_dict = dict(weights)
        for i in range(aux_layers):
            self.weight_dict.update({f"{k}_{i}": v for k, v in weights.items()})

    def forward(self, outputs: dict, masks: Tensor, valid: Tensor | None = None) -> dict:
        targets = Targets.from_masks(masks, valid)
        num_boxes = _num_boxes(targets.present)
        losses = self.layer_losses(outputs, targets, num_boxes)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            losses.update(
                {f"{k}_{i}": v for k, v in self.layer_losses(aux, targets, num_boxes).items()}
            )
        return losses

    def layer_losses(self, outputs: dict, targets: Targets, num_boxes: float) -> dict:
        matched = self.matcher(outputs, targets)  # (N,)
        logits = outputs["pred_logits"]  # (N, T, Q, K)
        n, t = logits.shape[:2]
        rows = torch.arange(n, device=logits.device)
        annotated = targets.annotated

        labels = torch.zeros_like(logits)
        labels[rows[:, None], torch.arange(t, device=logits.device), matched[:, None]] = (
            targets.present.to(logits.dtype)[..., None]
        )
        focal = focal_pixel_loss(logits, labels).sum((2, 3))  # (N, T)
        loss_ce = focal[annotated].sum() / num_boxes

        boxes = outputs["pred_boxes"][rows, :, matched][annotated]  # (A, 4)
        target_boxes = targets.boxes[annotated]
        loss_bbox = (boxes - target_boxes).abs().sum() / num_boxes
        loss_giou = (
            generalized_box_iou_loss(
                box_convert(boxes, "cxcywh", "xyxy"),
                box_convert(target_boxes, "cxcywh", "xyxy"),
                reduction="sum",
            )
            / num_boxes
        )

        pred = outputs["pred_masks"][rows, :, matched]  # (N, T, h, w)
        target = subsample_masks(targets.masks, pred.shape[-2:]).to(pred.dtype)
        frames = annotated.to(pred.dtype)[..., None, None]
        pixels = frames.sum((1, 2, 3)).clamp(min=1) * pred.shape[-1] * pred.shape[-2]
        loss_mask = ((focal_pixel_loss(pred, target) * frames).sum((1, 2, 3)) / pixels).sum()
        dice = 1 - dice_coefficient(pred.sigmoid() * frames, target * frames, (1, 2, 3))
        return {
            "loss_ce": loss_ce,
            "loss_bbox": loss_bbox,
            "loss_giou": loss_giou,
            "loss_mask": loss_mask / num_boxes,
            "loss_dice": dice.sum() / num_boxes,
        }


def _num_boxes(present: Tensor) -> float:
    """Present object-frames in the global batch per rank, at least 1."""
    return max(reduce_mean(present.sum().to(torch.float32)).item(), 1.0)
