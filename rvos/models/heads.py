"""Heads shared by query-based methods: the text feature resizer and the dynamic mask head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rvos.models.transformer import MLP


class FeatureResizer(nn.Module):
    """Linear → LayerNorm → dropout: text features into the transformer's width."""

    def __init__(self, input_dim: int, output_dim: int, dropout: float = 0.1):
        super().__init__()
        self.fc = nn.Linear(input_dim, output_dim)
        self.layer_norm = nn.LayerNorm(output_dim, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.layer_norm(self.fc(x)))


class DynamicMaskHead(nn.Module):
    """Per-query 1×1 convolutions whose weights a controller predicts from the query (CondInst).

    Each query's small network reads the shared mask features plus two channels of relative
    coordinates — pixel position minus the query's reference point, in input pixels — so the
    same features give a different mask for each object.
    """

    def __init__(
        self,
        hidden_dim: int,
        in_channels: int,
        channels: int = 8,
        layers: int = 3,
        rel_coord: bool = True,
        feature_stride: int = 4,
    ):
        super().__init__()
        if layers < 2:
            raise ValueError(f"the dynamic mask head needs at least 2 layers, got {layers}")
        self.rel_coord = rel_coord
        self.feature_stride = feature_stride
        first_in = in_channels + 2 if rel_coord else in_channels
        self.shapes = (
            [(channels, first_in)] + [(channels, channels)] * (layers - 2) + [(1, channels)]
        )
        total = sum(o * i + o for o, i in self.shapes)
        self.controller = MLP(hidden_dim, hidden_dim, total, 3)
        for layer in self.controller.layers:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(
        self, queries: Tensor, features: Tensor, centres: Tensor, image_size: tuple[int, int]
    ) -> Tensor:
        """queries (B, T, Q, C), features (B, T, C', h, w), centres (B, T, Q, 2) as (x, y) in
        [0, 1] → mask logits (B, T, Q, h, w)."""
        b, t, q = queries.shape[:3]
        h, w = features.shape[-2:]
        x = features[:, :, None].expand(-1, -1, q, -1, -1, -1)
        if self.rel_coord:
            x = torch.cat((x, self._relative_coords(centres, image_size, h, w)), 3)
        x = x.flatten(4)  # (B, T, Q, C_in, h·w)
        weights, biases = self._parse(self.controller(queries))
        for i, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
            x = torch.einsum("btqoi,btqin->btqon", weight, x) + bias[..., None]
            if i < len(weights) - 1:
                x = F.relu(x)
        return x.view(b, t, q, h, w)

    def _relative_coords(
        self, centres: Tensor, image_size: tuple[int, int], h: int, w: int
    ) -> Tensor:
        """(B, T, Q, 2, h, w): reference point minus each feature pixel's centre, in pixels."""
        img_h, img_w = image_size
        points = centres * centres.new_tensor([img_w, img_h])
        stride = self.feature_stride
        ys = torch.arange(h, dtype=centres.dtype, device=centres.device) * stride + stride // 2
        xs = torch.arange(w, dtype=centres.dtype, device=centres.device) * stride + stride // 2
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        locations = torch.stack((grid_x, grid_y))  # (2, h, w)
        return points[..., None, None] - locations

    def _parse(self, params: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Split (..., total) into per-layer weights (..., out, in) and biases (..., out):
        all weights first, then all biases."""
        sizes = [o * i for o, i in self.shapes] + [o for o, _ in self.shapes]
        chunks = params.split(sizes, -1)
        n = len(self.shapes)
        weights = [c.unflatten(-1, shape) for c, shape in zip(chunks[:n], self.shapes, strict=True)]
        return weights, list(chunks[n:])
