"""Which query is the referred object: a matching cost over the whole clip.

A sentence refers to one object track (for MeViS, the union of its objects), so matching a
sentence's Q query tracks to its one target track is an assignment with one column: the query
of least cost. The cost sums, with weights, a focal classification cost over the frames where
the object is present, L1 and generalised-IoU box costs and focal and Dice mask costs over the
annotated frames (ReferFormer's costs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.ops import box_convert, generalized_box_iou_loss, masks_to_boxes

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0


@dataclass
class Targets:
    """One target track per sentence, N sentences of T frames.

    masks (N, T, H, W) float at the input size; boxes (N, T, 4) as (cx, cy, w, h) in [0, 1],
    zero where absent; present (N, T) bool: the object is in the frame; annotated (N, T) bool:
    the frame has ground truth (A2D and JHMDB annotate a few frames of a clip).
    """

    masks: Tensor
    boxes: Tensor
    present: Tensor
    annotated: Tensor

    @classmethod
    def from_masks(cls, masks: Tensor, annotated: Tensor | None = None) -> Targets:
        n, t, h, w = masks.shape
        if annotated is None:
            annotated = torch.ones(n, t, dtype=torch.bool, device=masks.device)
        present = masks.flatten(2).any(-1) & annotated
        boxes = mask_boxes(masks, present)
        # A mask one pixel thin has an empty box: like ReferFormer, no object to detect there.
        thin = (boxes[..., 2] <= 0) | (boxes[..., 3] <= 0)
        boxes[thin] = 0
        return cls(masks.float(), boxes, present & ~thin, annotated.bool())


def mask_boxes(masks: Tensor, present: Tensor) -> Tensor:
    """(N, T, 4) normalised (cx, cy, w, h) of each mask's extent — its first and last rows
    and columns, inclusive — and zeros for frames without the object."""
    n, t, h, w = masks.shape
    boxes = masks.new_zeros(n, t, 4, dtype=torch.float32)
    if present.any():
        xyxy = masks_to_boxes(masks[present].float())
        scale = xyxy.new_tensor([w, h, w, h])
        boxes[present] = box_convert(xyxy, "xyxy", "cxcywh") / scale
    return boxes


def subsample_masks(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """Target masks (..., H, W) at the predictions' (h, w): the centre pixel of every
    stride × stride cell, as ReferFormer's losses read them."""
    stride_h, stride_w = masks.shape[-2] // size[0], masks.shape[-1] // size[1]
    if stride_h * size[0] != masks.shape[-2] or stride_w * size[1] != masks.shape[-1]:
        raise ValueError(f"masks {tuple(masks.shape[-2:])} are not a multiple of {size}")
    return masks[..., stride_h // 2 :: stride_h, stride_w // 2 :: stride_w]


def focal_class_cost(logits: Tensor) -> Tensor:
    """Per logit, the focal loss of calling it positive minus that of calling it negative."""
    prob = logits.sigmoid()
    neg = (1 - FOCAL_ALPHA) * prob**FOCAL_GAMMA * -(1 - prob + 1e-8).log()
    pos = FOCAL_ALPHA * (1 - prob) ** FOCAL_GAMMA * -(prob + 1e-8).log()
    return pos - neg


def focal_pixel_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Sigmoid focal loss per element (RetinaNet), alpha 0.25, gamma 2."""
    prob = logits.sigmoid()
    ce = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    alpha_t = FOCAL_ALPHA * targets + (1 - FOCAL_ALPHA) * (1 - targets)
    return alpha_t * ce * (1 - p_t) ** FOCAL_GAMMA


def dice_coefficient(prob: Tensor, target: Tensor, dims: tuple[int, ...]) -> Tensor:
    """(2·overlap + 1) / (sizes + 1) over `dims`: 1 for a perfect mask, and defined for empty
    ones."""
    overlap = (prob * target).sum(dims)
    return (2 * overlap + 1) / (prob.sum(dims) + target.sum(dims) + 1)


def _frame_mean(values: Tensor, frames: Tensor) -> Tensor:
    """Mean over the selected frames: values (N, T, Q), frames (N, T) bool → (N, Q)."""
    weights = frames.to(values.dtype)[..., None]
    return (values * weights).sum(1) / weights.sum(1).clamp(min=1)


class ClipMatcher(nn.Module):
    def __init__(
        self,
        cost_class: float = 2,
        cost_bbox: float = 5,
        cost_giou: float = 2,
        cost_mask: float = 2,
        cost_dice: float = 5,
    ):
        super().__init__()
        if not any((cost_class, cost_bbox, cost_giou, cost_mask, cost_dice)):
            raise ValueError("all matching costs are 0: nothing to match on")
        self.weights = (cost_class, cost_bbox, cost_giou, cost_mask, cost_dice)

    @torch.no_grad()
    def forward(self, outputs: dict, targets: Targets) -> Tensor:
        """→ (N,) the index of the matched query of every sentence."""
        return self.cost(outputs, targets).argmin(-1)

    def cost(self, outputs: dict, targets: Targets) -> Tensor:
        """(N, Q) weighted matching cost of every query track against its sentence's target."""
        logits, boxes, masks = outputs["pred_logits"], outputs["pred_boxes"], outputs["pred_masks"]
        q = logits.shape[2]
        annotated = targets.annotated
        cost_class = _frame_mean(focal_class_cost(logits[..., 0]), targets.present)
        target_boxes = targets.boxes[:, :, None].expand(-1, -1, q, -1)
        cost_bbox = _frame_mean((boxes - target_boxes).abs().sum(-1), annotated)
        giou = 1 - generalized_box_iou_loss(
            box_convert(boxes, "cxcywh", "xyxy"), box_convert(target_boxes, "cxcywh", "xyxy")
        )
        cost_giou = _frame_mean(-giou, annotated)
        target_masks = subsample_masks(targets.masks, masks.shape[-2:])[:, :, None]
        target_masks = target_masks.expand_as(masks).to(masks.dtype)
        focal = focal_pixel_loss(masks, target_masks).flatten(3).mean(-1)  # (N, T, Q)
        cost_mask = _frame_mean(focal, annotated)
        frames = annotated.to(masks.dtype)[:, :, None, None, None]
        prob = masks.sigmoid() * frames
        target_masks = target_masks * frames
        cost_dice = -dice_coefficient(prob, target_masks, (1, 3, 4))
        costs = (cost_class, cost_bbox, cost_giou, cost_mask, cost_dice)
        return sum(w * c for w, c in zip(self.weights, costs, strict=True))
