"""The postprocess contract shared by every method: candidate objects, then a choice.

A method's outputs become `Candidates`: for each sentence, frame and query, class
probabilities and a mask. Offline (a whole clip at once) the referred object is the query
whose class score, averaged over the clip, is highest, as ReferFormer's inference does; online
inference (rvos.engine.online) also weighs how well each query continues the previous window.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Candidates:
    scores: Tensor  # (N, T, Q, C) class probabilities of each query in each frame
    masks: Tensor  # (N, T, Q, h, w) mask logits, at the input size or a fraction of it

    def clip_scores(self) -> Tensor:
        """(N, Q): each query's class probability averaged over the frames, best class."""
        return self.scores.mean(1).max(-1).values

    def frame_scores(self, query: Tensor) -> Tensor:
        """(N, T): the chosen queries' best class probability in each frame."""
        n, t = self.scores.shape[:2]
        index = query.view(n, 1, 1, 1).expand(n, t, 1, self.scores.shape[-1])
        return self.scores.gather(2, index).squeeze(2).max(-1).values

    def mask_logits(self, query: Tensor) -> Tensor:
        """(N, T, h, w): the chosen queries' masks."""
        n, t, _, h, w = self.masks.shape
        return self.masks.gather(2, query.view(n, 1, 1, 1, 1).expand(n, t, 1, h, w)).squeeze(2)


def probabilities(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, T, H, W) foreground probabilities at the input `size` from (N, T, h, w) logits."""
    if tuple(masks.shape[-2:]) != tuple(size):
        masks = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
    return masks.sigmoid()


def clip_probabilities(candidates: Candidates, size: tuple[int, int]) -> Tensor:
    """Offline choice: the query with the best clip score, its masks as probabilities."""
    return probabilities(candidates.mask_logits(candidates.clip_scores().argmax(-1)), size)


def soft_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of probability maps (..., h, w) in [0, 1]: sum(min) / sum(max); 0 when both empty."""
    union = torch.maximum(a, b).flatten(-2).sum(-1)
    return torch.minimum(a, b).flatten(-2).sum(-1) / union.clamp_min(1e-6)
