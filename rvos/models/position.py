"""Fixed sine position encodings (DETR's), for feature maps and for token sequences.

Frames in a batch share one size (rvos resizes every clip to `model.input_size`), so maps
have no padding; sentences do, and their encoding counts only real tokens.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

TEMPERATURE = 10000.0
SCALE = 2 * math.pi
EPS = 1e-6


def _sine(positions: Tensor, channels: int) -> Tensor:
    """positions (...,) → (..., channels): sin and cos of positions over geometric frequencies,
    interleaved sin, cos, sin, cos."""
    index = torch.arange(channels, dtype=torch.float32, device=positions.device)
    frequencies = TEMPERATURE ** (2 * torch.div(index, 2, rounding_mode="floor") / channels)
    angles = positions[..., None] / frequencies
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)


def sine_2d(height: int, width: int, channels: int, device=None) -> Tensor:
    """(channels, H, W): channels/2 encode the row, channels/2 the column, each normalised to
    (0, 2π] at pixel centres."""
    rows = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    cols = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    rows = (rows - 0.5) / (height + EPS) * SCALE
    cols = (cols - 0.5) / (width + EPS) * SCALE
    half = channels // 2
    pos_y = _sine(rows, half)[:, None, :].expand(height, width, half)
    pos_x = _sine(cols, half)[None, :, :].expand(height, width, half)
    return torch.cat((pos_y, pos_x), dim=-1).permute(2, 0, 1)


def sine_1d(padding: Tensor, channels: int) -> Tensor:
    """padding (B, L) bool, True at padding → (B, L, channels); real tokens are numbered 1..n
    and scaled so that the last real one sits at 2π."""
    counts = (~padding).cumsum(1, dtype=torch.float32)
    positions = counts / (counts[:, -1:] + EPS) * SCALE
    return _sine(positions, channels)
