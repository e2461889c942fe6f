"""The deformable transformer (Deformable-DETR) that ReferFormer-family models share.

The encoder refines each frame's multi-level features with multi-scale deformable
self-attention; the decoder turns N queries per frame into object embeddings, each
cross-attending around a reference point that iterative box refinement moves layer by layer.
Module and parameter names follow Deformable-DETR's, so released checkpoints map onto them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rvos.ops.modules import MSDeformAttn


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """logit(x), with x clamped to [0, 1] and both ratios terms kept above eps."""
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class MLP(nn.Module):
    """Linear layers with ReLU between them (DETR's box and controller heads)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        pairs = zip(dims[:-1], dims[1:], strict=True)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class EncoderLayer(nn.Module):
    def __init__(
        self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int
    ):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self, src: Tensor, pos: Tensor, reference: Tensor, shapes: Tensor, starts: Tensor
    ) -> Tensor:
        attended = self.self_attn(src + pos, reference, src, shapes, starts)
        src = self.norm1(src + self.dropout1(attended))
        ffn = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(ffn))


class DecoderLayer(nn.Module):
    def __init__(
        self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int
    ):
        super().__init__()
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self,
        tgt: Tensor,
        query_pos: Tensor,
        reference: Tensor,
        memory: Tensor,
        shapes: Tensor,
        starts: Tensor,
    ) -> Tensor:
        q = k = tgt + query_pos
        tgt = self.norm2(tgt + self.dropout2(self.self_attn(q, k, tgt, need_weights=False)[0]))
        attended = self.cross_attn(tgt + query_pos, reference, memory, shapes, starts)
        tgt = self.norm1(tgt + self.dropout1(attended))
        ffn = self.linear2(self.dropout3(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout4(ffn))


class Encoder(nn.Module):
    def __init__(self, layer: EncoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, src: Tensor, pos: Tensor, shapes: Tensor, starts: Tensor) -> Tensor:
        reference = _pixel_centres(shapes, src.device)  # (S, 2)
        reference = reference[None, :, None, :].expand(src.shape[0], -1, len(shapes), -1)
        for layer in self.layers:
            src = layer(src, pos, reference, shapes, starts)
        return src


class Decoder(nn.Module):
    def __init__(self, layer: DecoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.num_layers = num_layers

    def forward(
        self,
        tgt: Tensor,
        reference: Tensor,
        memory: Tensor,
        shapes: Tensor,
        starts: Tensor,
        query_pos: Tensor,
        bbox_embed: nn.ModuleList,
        interact: Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """→ hs (layers, N, Q, C) and boxes (layers, N, Q, 4): each layer's refined boxes
        (cx, cy, w, h) in [0, 1]. A layer refines the previous layer's box, detached, as
        iterative box refinement does; the first refines the 2-d reference point.
        `interact`, when given, maps every layer's (N, Q, C) output before its box and output
        are taken: there the queries of different frames can exchange information."""
        hs, boxes = [], []
        for layer, box_head in zip(self.layers, bbox_embed, strict=True):
            levels = len(shapes)
            tgt = layer(
                tgt,
                query_pos,
                reference[:, :, None].expand(-1, -1, levels, -1),
                memory,
                shapes,
                starts,
            )
            if interact is not None:
                tgt = interact(tgt)
            delta = box_head(tgt)
            if reference.shape[-1] == 4:
                box = (delta + inverse_sigmoid(reference)).sigmoid()
            else:
                centre = delta[..., :2] + inverse_sigmoid(reference)
                box = torch.cat((centre, delta[..., 2:]), -1).sigmoid()
            hs.append(tgt)
            boxes.append(box)
            reference = box.detach()
        return torch.stack(hs), torch.stack(boxes)


def _pixel_centres(shapes: Tensor, device) -> Tensor:
    """(S, 2): every level's pixel centres as (x, y) in [0, 1], levels concatenated."""
    centres = []
    for h, w in shapes.tolist():
        ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        centres.append(torch.stack((grid_x.flatten(), grid_y.flatten()), -1))
    return torch.cat(centres)


class DeformableTransformer(nn.Module):
    """Encoder + decoder over (N, C, H_l, W_l) maps; N is batch × frames, each frame apart."""

    def __init__(
        self,
        d_model: int = 256,
        nhead: int = 8,
        num_encoder_layers: int = 4,
        num_decoder_layers: int = 4,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        num_feature_levels: int = 4,
        enc_n_points: int = 4,
        dec_n_points: int = 4,
    ):
        super().__init__()
        self.d_model = d_model
        self.dropout = dropout
        self.encoder = Encoder(
            EncoderLayer(
                d_model, dim_feedforward, dropout, num_feature_levels, nhead, enc_n_points
            ),
            num_encoder_layers,
        )
        self.decoder = Decoder(
            DecoderLayer(
                d_model, dim_feedforward, dropout, num_feature_levels, nhead, dec_n_points
            ),
            num_decoder_layers,
        )
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.reference_points = nn.Linear(d_model, 2)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
        nn.init.zeros_(self.reference_points.bias)
        nn.init.normal_(self.level_embed)

    def forward(
        self,
        srcs: list[Tensor],
        poses: list[Tensor],
        tgt: Tensor,
        query_embed: Tensor,
        bbox_embed: nn.ModuleList,
        interact: Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
        """srcs, poses: per level (N, C, H_l, W_l); tgt (N, Q, C) the decoder's input queries,
        query_embed (Q, C) their learned positions; `interact` as in `Decoder.forward`.

        Returns hs (layers, N, Q, C), the initial reference points (N, Q, 2), the boxes after
        every layer (layers, N, Q, 4), and the encoder output of every level but the last
        as (N, C, H_l, W_l) maps, for the mask decoder.
        """
        src, pos, shapes, starts = self.flatten(srcs, poses)
        memory = self.encoder(src, pos, shapes, starts)
        query_pos = query_embed[None].expand(tgt.shape[0], -1, -1)
        reference = self.reference_points(query_pos).sigmoid()
        hs, boxes = self.decoder(
            tgt, reference, memory, shapes, starts, query_pos, bbox_embed, interact
        )
        return hs, reference, boxes, level_maps(memory, shapes)[:-1]

    def flatten(
        self, srcs: list[Tensor], poses: list[Tensor]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per-level (N, C, H_l, W_l) maps and positions → one token sequence per frame: src
        and pos (N, S, C), the level's embedding added to pos; the levels' shapes (L, 2) and
        the index where each starts in the sequence (L,)."""
        shapes = torch.as_tensor(
            [s.shape[-2:] for s in srcs], dtype=torch.long, device=srcs[0].device
        )
        starts = torch.cat((shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]))
        src = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos = torch.cat(
            [p.flatten(2).transpose(1, 2) + self.level_embed[i] for i, p in enumerate(poses)], 1
        )
        return src, pos, shapes, starts


def level_maps(tokens: Tensor, shapes: Tensor) -> list[Tensor]:
    """(N, S, C) tokens of all levels → per level (N, C, H_l, W_l) maps, the inverse of
    `DeformableTransformer.flatten`."""
    return [
        level.transpose(1, 2).unflatten(2, (h, w))
        for level, (h, w) in zip(
            tokens.split(shapes.prod(1).tolist(), 1), shapes.tolist(), strict=True
        )
    ]
