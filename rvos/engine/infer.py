"""Inference over a prepared video index, a window of frames at a time."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rvos.data.index import Expression, VideoIndex
from rvos.data.transforms import frames_to_tensor


@torch.no_grad()
def expression_probabilities(
    model: nn.Module,
    probabilities: Callable[[dict], torch.Tensor],
    index: VideoIndex,
    expression: Expression,
    *,
    size: tuple[int, int],
    window: int,
    device: torch.device,
) -> np.ndarray:
    """Foreground probability (T, H, W) float32 at the video's original size."""
    video = index.videos[expression.video]
    out = np.empty((len(video.frames), video.height, video.width), dtype=np.float32)
    for start in range(0, len(video.frames), window):
        names = video.frames[start : start + window]
        images = [index.load_frame(video.name, f) for f in names]
        clip = frames_to_tensor(images, size).unsqueeze(0).to(device)  # (1, t, 3, H, W)
        probs = probabilities(model(clip, [expression.text]))[0]  # (t, h, w)
        probs = F.interpolate(
            probs[:, None].float(), size=(video.height, video.width), mode="bilinear"
        )[:, 0]
        out[start : start + len(names)] = probs.cpu().numpy()
    return out
