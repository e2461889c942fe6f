"""BIFIT (Lan et al., 2023): ReferFormer whose queries see the other frames and whose sentence
sees the clip.

ReferFormer decodes each frame's queries apart from the other frames', and its sentence
feature, the queries' content, never looks at the video. BIFIT adds two modules:

- `InterFrameInteraction`, in the decoder: after every decoder layer the object queries of
  all frames of a clip attend to each other, forwards and backwards in time, so that a
  query's box and mask draw on the same object's appearance in the other frames;
- a bidirectional vision-language interaction before the transformer: besides ReferFormer's
  early fusion (vision ← language), the words attend to the clip's pixels at every feature
  level in turn (language ← vision), and the refined words, pooled by `SentencePool`, become
  the sentence feature, so the queries start from the sentence as this clip shows it.

Module names follow the official code's (`text_fusion_module`, `poolout_module`), except the
inter-frame layers, which live beside the shared decoder rather than inside it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from rvos.errors import ConfigError
from rvos.models.fpn import VisionLanguageFusion, clip_tokens
from rvos.models.referformer import ReferFormer, build_referformer
from rvos.models.text import TextFeatures


class InterFrameInteraction(nn.Module):
    """Self-attention over the T·Q object queries of a clip, then a feed-forward layer
    (post-norm transformer encoder layers), applied after every decoder layer with the same
    weights. Queries carry no frame position here, so attention weighs them by content alone
    (its correlation): the output is equivariant to reordering the clip's frames."""

    def __init__(
        self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, num_layers: int = 1
    ):
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout, batch_first=True
        )
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)  # as the transformer's own layers

    def forward(self, queries: Tensor, frames: int) -> Tensor:
        """queries (N·T, Q, C), the T frames of each clip consecutive → (N·T, Q, C)."""
        n, q, c = queries.shape
        x = queries.reshape(n // frames, frames * q, c)  # one sequence per clip
        for layer in self.layers:
            x = layer(x)
        return x.reshape(n, q, c)


class SentencePool(nn.Module):
    """tanh(dense(first token)): a BERT-style pooler over the clip-refined words (the first
    token, `<s>` or `[CLS]`, has attended to the whole sentence)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)

    def forward(self, words: Tensor) -> Tensor:
        """words (B, L, C) → (B, C)."""
        return torch.tanh(self.dense(words[:, 0]))


class Bifit(ReferFormer):
    """ReferFormer with BIFIT's inter-frame interaction and language ← vision refinement; the
    forward's inputs and outputs are ReferFormer's."""

    def __init__(self, *args, interframe: InterFrameInteraction, **kwargs):
        super().__init__(*args, **kwargs)
        d = self.transformer.d_model
        self.interframe = interframe
        self.text_fusion_module = VisionLanguageFusion(d, nhead=8)
        self.poolout_module = SentencePool(d)
        if hasattr(self, "sentence_resizer"):  # the text encoder's sentence is not used
            del self.sentence_resizer

    def _sentence(
        self,
        text: TextFeatures,
        words: Tensor,
        levels: list[Tensor],
        poses: list[Tensor],
        frames: int,
    ) -> Tensor:
        """Every word is gated by what it finds among the clip's pixels, level after level
        (strides 8, 16, 32, 64), one shared attention; the refined words give the sentence.
        They read each level before its early fusion, and the early fusion and the mask
        pyramid keep the words as the text encoder gave them. A padded word's refinement is
        never read: it is not a key anywhere and the sentence comes from the first token."""
        for src, pos in zip(levels, poses, strict=True):
            visual = clip_tokens(src, frames)  # (B·K, T·h·w, C)
            words = self.text_fusion_module(words, visual, clip_tokens(pos, frames), None)
        return self.poolout_module(words)

    def _interaction(self, frames: int) -> Callable[[Tensor], Tensor] | None:
        if not len(self.interframe.layers):
            return None
        return partial(self.interframe, frames=frames)


def build_bifit(cfg, load_weights: bool = True) -> tuple[nn.Module, nn.Module]:
    """Model and criterion from a ModelConfig: `model.referformer` as for ReferFormer, plus
    `model.bifit`; the inter-frame layers take the transformer's width, heads and dropout."""
    rf, layers = cfg.referformer, cfg.bifit.interframe_layers
    if layers < 0:
        raise ConfigError(
            f"params.yaml: model.bifit.interframe_layers = {layers}: expected 0 or more"
        )
    interframe = InterFrameInteraction(
        rf.hidden_dim, rf.nheads, rf.dim_feedforward, rf.dropout, layers
    )
    return build_referformer(cfg, load_weights, model_class=Bifit, interframe=interframe)
