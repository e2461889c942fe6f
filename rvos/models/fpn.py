"""Vision-language fusion and ReferFormer's cross-modal feature pyramid.

`VisionLanguageFusion` gates visual tokens with the words they attend to (early fusion,
before the transformer). `CrossModalFPN` builds stride-4 mask features top-down from the
encoder's maps and the backbone's C2; at every level a `VisionLanguageBlock` lets all the
clip's pixels attend to each other across frames — where motion is seen — and to the words.
Parameter names follow ReferFormer's, so its checkpoints map onto these modules.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

FPN_GROUPS = 8  # GroupNorm groups of the pyramid's convolutions


class ConvNorm(nn.Conv2d):
    """Conv2d followed by GroupNorm and an optional ReLU; the norm is a child named `norm`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, relu: bool):
        super().__init__(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False
        )
        self.norm = nn.GroupNorm(FPN_GROUPS, out_channels)
        self.relu = relu
        nn.init.kaiming_uniform_(self.weight, a=1)  # Caffe2's Xavier fill

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(super().forward(x))
        return F.relu(x) if self.relu else x


class VisionLanguageFusion(nn.Module):
    """Visual tokens × (their attention over the words): the sentence scales each feature."""

    def __init__(self, d_model: int, nhead: int):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, batch_first=True)

    def forward(self, visual: Tensor, words: Tensor, word_pos: Tensor, padding: Tensor) -> Tensor:
        """visual (B, S, C), words and word_pos (B, L, C), padding (B, L) → (B, S, C)."""
        attended = self.multihead_attn(
            visual, words + word_pos, words, key_padding_mask=padding, need_weights=False
        )[0]
        return visual * attended


class VisionLanguageBlock(nn.Module):
    """Spatio-temporal self-attention over a clip's pixels (at 1/sr_ratio resolution), then
    cross-attention to the words, then a feed-forward layer; post-norm residuals."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int,
        dropout: float = 0.1,
        sr_ratio: int = 1,
    ):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(
            d_model, nhead, dropout=dropout, batch_first=True
        )
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.sr_ratio = sr_ratio

    def forward(
        self, x: Tensor, pos: Tensor, words: Tensor, word_pos: Tensor, padding: Tensor, frames: int
    ) -> Tensor:
        """x, pos (B·T, C, H, W); words, word_pos (B, L, C); padding (B, L) → (B·T, C, H, W)."""
        h, w = x.shape[-2:]
        q = x + pos
        if self.sr_ratio > 1:
            size = (int(h / self.sr_ratio), int(w / self.sr_ratio))
            small_q = F.interpolate(q, size=size, mode="nearest")
            small_x = F.interpolate(x, size=size, mode="nearest")
            tokens = clip_tokens(small_q, frames)
            attended = self.self_attn(
                tokens, tokens, clip_tokens(small_x, frames), need_weights=False
            )[0]
            attended = clip_maps(attended, frames, *size)
            attended = F.interpolate(attended, size=(h, w), mode="bilinear", align_corners=False)
        else:
            tokens = clip_tokens(q, frames)
            attended = self.self_attn(tokens, tokens, clip_tokens(x, frames), need_weights=False)[0]
            attended = clip_maps(attended, frames, h, w)
        tgt = self.norm1(clip_tokens(x + self.dropout1(attended), frames))
        cross = self.multihead_attn(
            tgt + clip_tokens(pos, frames),
            words + word_pos,
            words,
            key_padding_mask=padding,
            need_weights=False,
        )[0]
        tgt = self.norm2(tgt + self.dropout2(cross))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        tgt = self.norm3(tgt + self.dropout3(ffn))
        return clip_maps(tgt, frames, h, w)


def clip_tokens(maps: Tensor, frames: int) -> Tensor:
    """(B·T, C, H, W) → (B, T·H·W, C): one token sequence per clip."""
    n, c, h, w = maps.shape
    return (
        maps.view(n // frames, frames, c, h * w)
        .permute(0, 1, 3, 2)
        .reshape(n // frames, frames * h * w, c)
    )


def clip_maps(tokens: Tensor, frames: int, h: int, w: int) -> Tensor:
    """(B, T·H·W, C) → (B·T, C, H, W), the inverse of `clip_tokens`."""
    b, _, c = tokens.shape
    return tokens.view(b, frames, h * w, c).permute(0, 1, 3, 2).reshape(b * frames, c, h, w)


class CrossModalFPN(nn.Module):
    """Top-down pyramid from stride 32 to stride 4 whose every level is fused with the words.

    feature_channels: the channels of the stride-4 backbone map, then of the three encoder
    maps (strides 8, 16, 32). Output: (B·T, mask_dim, H/4, W/4).
    """

    SR_RATIOS = (8, 4, 2, 1)  # self-attention downsampling, stride 4 → 32

    def __init__(
        self,
        feature_channels: list[int],
        conv_dim: int,
        mask_dim: int,
        dim_feedforward: int,
        nhead: int = 8,
        dropout: float = 0.1,
    ):
        super().__init__()
        for stage, in_channels in enumerate(feature_channels, start=1):
            self.add_module(f"adapter_{stage}", ConvNorm(in_channels, conv_dim, 1, relu=False))
            self.add_module(f"layer_{stage}", ConvNorm(conv_dim, conv_dim, 3, relu=True))
            block = VisionLanguageBlock(
                conv_dim, nhead, dim_feedforward, dropout, sr_ratio=self.SR_RATIOS[stage - 1]
            )
            for p in block.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
            self.add_module(f"cross_attn_{stage}", block)
        self.levels = len(feature_channels)
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, 3, padding=1)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.zeros_(self.mask_features.bias)

    def forward(
        self,
        maps: list[Tensor],
        poses: list[Tensor],
        words: Tensor,
        word_pos: Tensor,
        padding: Tensor,
        frames: int,
    ) -> Tensor:
        """maps: [backbone C2, encoder stride 8, 16, 32], poses their position encodings."""
        y = None
        for stage in range(self.levels, 0, -1):
            adapter = getattr(self, f"adapter_{stage}")
            block = getattr(self, f"cross_attn_{stage}")
            x = block(adapter(maps[stage - 1]), poses[stage - 1], words, word_pos, padding, frames)
            if y is not None:
                x = x + F.interpolate(y, size=x.shape[-2:], mode="nearest")
            y = getattr(self, f"layer_{stage}")(x)
        return self.mask_features(y)
