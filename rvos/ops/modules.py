"""`MSDeformAttn`: the multi-scale deformable attention layer of Deformable-DETR.

Parameter names and initialisation follow Deformable-DETR, so its checkpoints (and
ReferFormer's) load without renaming.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rvos.ops.function import ms_deform_attn


class MSDeformAttn(nn.Module):
    """Each query attends to `n_points` learned offsets around its reference point per level.

    Args:
        d_model: channels of queries and values; split across heads.
        n_levels: feature levels L.
        n_heads: attention heads M; d_model must divide evenly.
        n_points: sampling points P per head and level.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Start with uniform attention over points spread on rays, one direction per head.

        Head h's offsets point along angle 2*pi*h/M, scaled to touch the unit square's border,
        and point p sits p + 1 steps out, so the initial samples cover a neighbourhood.
        """
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        directions = torch.stack([angles.cos(), angles.sin()], -1)  # (M, 2)
        directions = directions / directions.abs().max(-1, keepdim=True).values
        steps = torch.arange(1, self.n_points + 1, dtype=torch.float32)  # (P,)
        # (M, 1, P, 2) -> (M, L, P, 2), the same pattern on every level
        grid = (directions[:, None, None, :] * steps[None, None, :, None]).expand(
            -1, self.n_levels, -1, -1
        )
        self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from the queries to the flattened feature pyramid.

        Args:
            query: (N, Lq, C).
            reference_points: (N, Lq, L, 2) as (x, y) in [0, 1] — offsets are then in pixels of
                each level — or (N, Lq, L, 4) as boxes (cx, cy, w, h) — offsets are then
                fractions of the box, scaled by 0.5 / n_points.
            value: (N, S, C), the L levels flattened and concatenated, S = sum of H * W.
            spatial_shapes: (L, 2) int64, rows (H, W).
            level_start_index: (L,) int64, where each level starts in S.
            padding_mask: optional (N, S) bool, True at padding, which then contributes zero.

        Returns:
            (N, Lq, C).
        """
        n, queries, _ = query.shape
        keys = value.shape[1]
        heads, levels, points = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(value)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(n, keys, heads, self.d_model // heads)  # (N, S, M, D)
        offsets = self.sampling_offsets(query).view(n, queries, heads, levels, points, 2)
        weights = self.attention_weights(query).view(n, queries, heads, levels * points)
        weights = weights.softmax(-1).view(n, queries, heads, levels, points)
        if reference_points.shape[-1] == 2:
            # (L, 2) as (W, H): offsets in pixels become fractions of each level's map
            normalizer = spatial_shapes.flip(-1).to(offsets.dtype)
            locations = (
                reference_points[:, :, None, :, None, :]
                + offsets / normalizer[None, None, None, :, None, :]
            )
        elif reference_points.shape[-1] == 4:
            centers = reference_points[:, :, None, :, None, :2]
            sizes = reference_points[:, :, None, :, None, 2:]
            locations = centers + offsets / points * sizes * 0.5
        else:
            raise ValueError(
                "reference_points must end in 2 (points) or 4 (boxes), got "
                f"{tuple(reference_points.shape)}"
            )
        output = ms_deform_attn(value, spatial_shapes, level_start_index, locations, weights)
        return self.output_proj(output)
