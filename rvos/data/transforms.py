"""Clip transforms shared by every dataset: crop, resize, jitter, flip, normalise.

A clip is a list of PIL frames, a list of boolean masks (H, W) and one sentence. The
horizontal flip also swaps "left" and "right" in the sentence ("leftmost" becomes
"rightmost"), otherwise the flipped sample would teach the model the wrong side. The random
crop (multi-scale training) always keeps the whole target, so the sentence stays true, and
the photometric jitter never shifts hue, so colour words stay true.
"""

from __future__ import annotations

import re

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.v2 import functional as TF

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
    return normalize(resize_frames(frames, size))


def resize_frames(frames: list[Image.Image], size: tuple[int, int]) -> torch.Tensor:
    """(T, 3, H, W) float tensor in [0, 1], resized to `size` (antialiased bilinear)."""
    array = np.stack([np.asarray(f.convert("RGB"), dtype=np.uint8) for f in frames])
    clip = torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(255.0)
    if clip.shape[-2:] != size:
        clip = F.interpolate(clip, size=size, mode="bilinear", align_corners=False, antialias=True)
    return clip


def normalize(clip: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (clip - mean) / std


def crop_box(
    height: int, width: int, target: np.ndarray, scale: float
) -> tuple[int, int, int, int]:
    """(top, left, h, w): a crop of `scale` × the frame (same aspect), holding all of `target`.

    The crop grows when the target is bigger than it; its position is uniform among those
    that contain the target (or the whole frame when the target is empty).
    """
    h = min(height, max(1, round(scale * height)))
    w = min(width, max(1, round(scale * width)))
    rows, cols = np.nonzero(target)
    if rows.size == 0:
        lo_y, hi_y, lo_x, hi_x = 0, height - h, 0, width - w
    else:
        h = max(h, int(rows.max() - rows.min() + 1))
        w = max(w, int(cols.max() - cols.min() + 1))
        lo_y, hi_y = max(0, int(rows.max()) + 1 - h), min(int(rows.min()), height - h)
        lo_x, hi_x = max(0, int(cols.max()) + 1 - w), min(int(cols.min()), width - w)
    top = int(torch.randint(lo_y, hi_y + 1, ()))
    left = int(torch.randint(lo_x, hi_x + 1, ()))
    return top, left, h, w


def jitter_photometric(clip: torch.Tensor, strength: float) -> torch.Tensor:
    """The same random brightness, contrast and saturation change on every frame of a clip."""
    factors = 1 + strength * (2 * torch.rand(3) - 1)
    clip = TF.adjust_brightness(clip, float(factors[0]))
    clip = TF.adjust_contrast(clip, float(factors[1]))
    return TF.adjust_saturation(clip, float(factors[2]))


def masks_to_tensor(masks: list[np.ndarray], size: tuple[int, int]) -> torch.Tensor:
    """(T, H, W) float tensor of 0/1, resized with nearest neighbour."""
    stacked = torch.from_numpy(np.stack(masks).astype(np.float32))
    if stacked.shape[-2:] != size:
        stacked = F.interpolate(stacked[:, None], size=size, mode="nearest")[:, 0]
    return stacked


class ClipTransform:
    """Resize and normalise a clip; in training also crop, jitter and flip it at random.

    `crop_scale` (min, max): each clip is cropped to a random fraction of the frame in that
    range that keeps its target (multi-scale training); (1, 1) disables it. `jitter`: the
    strength of the photometric change (0 disables it).
    """

    def __init__(
        self,
        size: tuple[int, int],
        hflip: float = 0.0,
        crop_scale: tuple[float, float] = (1.0, 1.0),
        jitter: float = 0.0,
    ):
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"crop_scale = {crop_scale}: expected 0 < min <= max <= 1")
        self.size = tuple(size)
        self.hflip = hflip
        self.crop_scale = tuple(crop_scale)
        self.jitter = jitter

    def __call__(
        self, frames: list[Image.Image], masks: list[np.ndarray], text: str
    ) -> tuple[torch.Tensor, torch.Tensor, str]:
        """One sentence: masks are the T per-frame targets; returns (clip, (T, H, W), text)."""
        clip, targets, texts = self.many(frames, [masks], [text])
        return clip, targets[0], texts[0]

    def many(
        self, frames: list[Image.Image], masks: list[list[np.ndarray]], texts: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """K sentences about one clip, all given the same crop, jitter and flip.

        masks[k] are sentence k's T per-frame targets; returns (clip (T, 3, H, W),
        targets (K, T, H, W), texts).
        """
        if self.crop_scale[0] < 1:
            frames, masks = self._crop(frames, masks)
        clip = resize_frames(frames, self.size)
        if self.jitter > 0:
            clip = jitter_photometric(clip, self.jitter)
        clip = normalize(clip)
        targets = torch.stack([masks_to_tensor(m, self.size) for m in masks])
        if self.hflip > 0 and torch.rand(()) < self.hflip:
            clip, targets = clip.flip(-1), targets.flip(-1)
            texts = [swap_left_right(t) for t in texts]
        return clip, targets, list(texts)

    def _crop(
        self, frames: list[Image.Image], masks: list[list[np.ndarray]]
    ) -> tuple[list[Image.Image], list[list[np.ndarray]]]:
        low, high = self.crop_scale
        scale = low + (high - low) * float(torch.rand(()))
        width, height = frames[0].size
        union = np.any(np.stack([np.stack(m) for m in masks]), axis=(0, 1))
        top, left, h, w = crop_box(height, width, union, scale)
        frames = [f.crop((left, top, left + w, top + h)) for f in frames]
        return frames, [[m[top : top + h, left : left + w] for m in per] for per in masks]
