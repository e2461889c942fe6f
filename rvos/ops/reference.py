"""Multi-scale deformable attention in plain PyTorch, through `grid_sample`.

The semantics every backend must match, and the fallback when the extension is not built:
slow, and memory-hungry (it materialises every sampled value), but obviously right.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ms_deform_attn_reference(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Attention-weighted sum of bilinear samples taken on every level of a feature pyramid.

    Args:
        value: (N, S, M, D), the L flattened maps of M heads, S = sum of H * W.
        spatial_shapes: (L, 2) int64, rows (H, W).
        level_start_index: (L,) where each level starts in S. Implied by spatial_shapes here;
            taken for the compiled op's signature, so that the backends are interchangeable.
        sampling_locations: (N, Lq, M, L, P, 2), (x, y) in [0, 1] of each level's map; the
            pixel centres sit at (i + 0.5) / W, and samples outside the map read zeros.
        attention_weights: (N, Lq, M, L, P).

    Returns:
        (N, Lq, M * D).
    """
    n, _, heads, channels = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    per_level = value.split([h * w for h, w in spatial_shapes.tolist()], dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample's [-1, 1] coordinates
    samples = []
    for level, (h, w) in enumerate(spatial_shapes.tolist()):
        # (N, H*W, M, D) -> (N*M, D, H, W)
        level_value = per_level[level].permute(0, 2, 3, 1).reshape(n * heads, channels, h, w)
        # (N, Lq, M, P, 2) -> (N*M, Lq, P, 2)
        level_grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        # (N*M, D, Lq, P)
        samples.append(
            F.grid_sample(
                level_value, level_grid, mode="bilinear", padding_mode="zeros", align_corners=False
            )
        )
    # (N*M, D, Lq, L*P) weighted by (N*M, 1, Lq, L*P), summed over the samples
    stacked = torch.stack(samples, dim=-2).flatten(-2)
    weights = attention_weights.transpose(1, 2).reshape(n * heads, 1, queries, levels * points)
    output = (stacked * weights).sum(-1).view(n, heads * channels, queries)
    return output.transpose(1, 2).contiguous()
