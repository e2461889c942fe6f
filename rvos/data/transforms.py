"""Clip transforms shared by every dataset: resize, flip, normalise.

A clip is a list of PIL frames, a list of boolean masks (H, W) and one sentence. The
horizontal flip also swaps "left" and "right" in the sentence ("leftmost" becomes
"rightmost"), otherwise the flipped sample would teach the model the wrong side.
"""

from __future__ import annotations

import re

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_SIDES = re.compile(r"left|right", re.IGNORECASE)


def swap_left_right(text: str) -> str:
    """Swap every 'left' and 'right' (also inside words), keeping their case."""

    def swap(match: re.Match) -> str:
        word = match.group(0)
        other = "right" if word.lower() == "left" else "left"
        if word.isupper():
            return other.upper()
        return other.capitalize() if word[0].isupper() else other

    return _SIDES.sub(swap, text)


def frames_to_tensor(frames: list[Image.Image], size: tuple[int, int]) -> torch.Tensor:
    """(T, 3, H, W) float tensor, resized to `size` and normalised with ImageNet statistics."""
    array = np.stack([np.asarray(f.convert("RGB"), dtype=np.uint8) for f in frames])
    clip = torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(255.0)
    if clip.shape[-2:] != size:
        clip = F.interpolate(clip, size=size, mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (clip - mean) / std


def masks_to_tensor(masks: list[np.ndarray], size: tuple[int, int]) -> torch.Tensor:
    """(T, H, W) float tensor of 0/1, resized with nearest neighbour."""
    stacked = torch.from_numpy(np.stack(masks).astype(np.float32))
    if stacked.shape[-2:] != size:
        stacked = F.interpolate(stacked[:, None], size=size, mode="nearest")[:, 0]
    return stacked


class ClipTransform:
    """Resize and normalise a clip; in training also flip it at random."""

    def __init__(self, size: tuple[int, int], hflip: float = 0.0):
        self.size = tuple(size)
        self.hflip = hflip

    def __call__(
        self, frames: list[Image.Image], masks: list[np.ndarray], text: str
    ) -> tuple[torch.Tensor, torch.Tensor, str]:
        clip = frames_to_tensor(frames, self.size)
        target = masks_to_tensor(masks, self.size)
        if self.hflip > 0 and torch.rand(()) < self.hflip:
            clip, target, text = clip.flip(-1), target.flip(-1), swap_left_right(text)
        return clip, target, text
