"""DMFormer (Gao et al., IEEE TCSVT 2023): decoupled multimodal transformers.

An expression names its subject ("the brown dog") and the context that tells it apart from
similar objects ("chasing a ball on the left"). Fed to one cross-modal attention, the two are
intertwined; DMFormer decouples them. A subject perceptron finds the subject words; two
parallel branches let the frames interact with the language, a subject-aware one through the
subject words and a context-aware one through the whole expression. Each branch is a stack of
basic interaction modules (the pixels gated by their attention to the branch's words,
deformable attention over each frame's levels, self-attention over the words). The branches'
visual outputs, each resized to half the width, are concatenated into the memory the decoder
and the mask pyramid read; their sentence features, likewise, into the decoder's queries.
The rest (backbone, decoder, cross-modal pyramid, dynamic mask head) is ReferFormer's.

The paper trains the perceptron on subject labels that a GLIP grounding model makes from each
frame's box (its "booster"), then picks the noun phrase it scores highest. Neither GLIP nor a
noun-phrase parser is available here, so the selection is soft: the perceptron's word weights
are a softmax over the sentence, the subject branch attends to the words by those weights,
and the perceptron learns from the segmentation losses alone (docs/methods/dmformer.md).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rvos.models.heads import FeatureResizer
from rvos.models.position import sine_1d
from rvos.models.referformer import ReferFormer, _positions, build_referformer
from rvos.models.text import TextEncoder
from rvos.models.transformer import DeformableTransformer, Encoder, EncoderLayer, level_maps
from rvos.ops.modules import MSDeformAttn

WORD_SHARE = 0.5  # weight of a branch's words beside the sentence feature in its queries


def word_log_weights(scores: Tensor, padding: Tensor) -> Tensor:
    """(B, L) word scores → log of a distribution over each sentence's words: a log-softmax
    over the real words, -inf at padding."""
    return scores.masked_fill(padding, float("-inf")).log_softmax(-1)


def uniform_log_weights(padding: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, L): every real word of a sentence alike (the context branch's weights)."""
    return word_log_weights(torch.zeros(padding.shape, dtype=dtype, device=padding.device), padding)


def attention_bias(log_weights: Tensor, heads: int, queries: int) -> Tensor:
    """(B, L) log word weights → (B·heads, queries, L) additive attention mask. Adding a word's
    log weight to its attention logits multiplies its attention by the weight before the
    softmax renormalises: a word of weight 0 is never read, uniform weights change nothing."""
    b, n = log_weights.shape
    return log_weights[:, None, None].expand(b, heads, queries, n).reshape(b * heads, queries, n)


def weighted_mean(words: Tensor, log_weights: Tensor) -> Tensor:
    """(B, L, C) words, (B, L) log weights summing to one → (B, C)."""
    return (log_weights.exp().to(words.dtype)[..., None] * words).sum(1)


class WordLayer(nn.Module):
    """A BERT layer at the model's width, as the official code uses: self-attention over the
    words, each reading the others by their weights, then a GELU feed-forward layer; post-norm
    residuals. (torch's TransformerEncoderLayer is not used: its inference fast path turns a
    per-sentence additive mask with -inf into NaN.)"""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model, eps=1e-12)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model, eps=1e-12)

    def forward(self, words: Tensor, log_weights: Tensor) -> Tensor:
        """words (B, L, C), log_weights (B, L) → (B, L, C)."""
        heads = self.self_attn.num_heads
        bias = attention_bias(log_weights, heads, words.shape[1]).to(words.dtype)
        attended = self.self_attn(words, words, words, attn_mask=bias, need_weights=False)[0]
        words = self.norm1(words + self.dropout1(attended))
        ffn = self.linear2(F.gelu(self.linear1(words)))
        return self.norm2(words + self.dropout2(ffn))


class SubjectPerceptron(nn.Module):
    """Which words are the expression's subject: each word, read in its sentence by one
    self-attention layer, gets a score, and a softmax over the sentence's real words turns the
    scores into weights that sum to one. Returns their log, the form the branches attend
    with. The scorer starts at zero: every word alike until training says otherwise."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.encoder = WordLayer(d_model, nhead, dim_feedforward, dropout)
        self.score = nn.Linear(d_model, 1, bias=False)  # a bias would cancel in the softmax
        nn.init.zeros_(self.score.weight)

    def forward(self, words: Tensor, padding: Tensor) -> Tensor:
        """words (B, L, C), padding (B, L) → log subject weights (B, L), -inf at padding."""
        read = self.encoder(words, uniform_log_weights(padding, words.dtype))
        return word_log_weights(self.score(read).squeeze(-1), padding)


class WeightedFusion(nn.Module):
    """ReferFormer's early fusion (each visual token times what it reads from the words)
    with weighted words: a token's attention over the words is scaled by their weights."""

    def __init__(self, d_model: int, nhead: int):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, batch_first=True)

    def forward(
        self, visual: Tensor, words: Tensor, word_pos: Tensor, log_weights: Tensor
    ) -> Tensor:
        """visual (B, S, C), words and word_pos (B, L, C), log_weights (B, L) → (B, S, C)."""
        heads = self.multihead_attn.num_heads
        bias = attention_bias(log_weights, heads, visual.shape[1]).to(visual.dtype)
        attended = self.multihead_attn(
            visual, words + word_pos, words, attn_mask=bias, need_weights=False
        )[0]
        return visual * attended


class InteractionBlock(nn.Module):
    """One basic interaction module of a branch: every pixel of the clip gated by its
    attention to the weighted words, one deformable self-attention layer over each frame's
    levels, one self-attention layer over the words (also reading them by their weights)."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int,
        language_ffn: int,
        dropout: float,
        levels: int,
        n_points: int,
    ):
        super().__init__()
        self.fusion = WeightedFusion(d_model, nhead)
        layer = EncoderLayer(d_model, dim_feedforward, dropout, levels, nhead, n_points)
        self.visual = Encoder(layer, 1)
        self.language = WordLayer(d_model, nhead, language_ffn, dropout)
        for p in self.visual.parameters():  # as DeformableTransformer initialises its encoder
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.visual.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()

    def forward(
        self,
        src: Tensor,
        pos: Tensor,
        shapes: Tensor,
        starts: Tensor,
        words: Tensor,
        word_pos: Tensor,
        log_weights: Tensor,
        frames: int,
    ) -> tuple[Tensor, Tensor]:
        """src, pos (B·K·T, S, C): every frame's tokens of all levels (`shapes`, `starts` as
        `DeformableTransformer.flatten` gives them); words, word_pos (B·K, L, C); log_weights
        (B·K, L) → src and words, updated."""
        n, s, c = src.shape
        tokens = src.reshape(n // frames, frames * s, c)  # one sequence per clip and sentence
        src = self.fusion(tokens, words, word_pos, log_weights).view(n, s, c)
        src = self.visual(src, pos, shapes, starts)
        return src, self.language(words, log_weights)


class InteractionBranch(nn.Module):
    """Basic interaction modules in sequence, all reading the words by the same weights."""

    def __init__(self, blocks: int, **block):
        super().__init__()
        self.blocks = nn.ModuleList(InteractionBlock(**block) for _ in range(blocks))

    def forward(
        self,
        src: Tensor,
        pos: Tensor,
        shapes: Tensor,
        starts: Tensor,
        words: Tensor,
        word_pos: Tensor,
        log_weights: Tensor,
        frames: int,
    ) -> tuple[Tensor, Tensor]:
        """As `InteractionBlock.forward`: → src (B·K·T, S, C), words (B·K, L, C)."""
        for block in self.blocks:
            src, words = block(src, pos, shapes, starts, words, word_pos, log_weights, frames)
        return src, words


class DMFormer(ReferFormer):
    """ReferFormer whose early fusion and encoder are DMFormer's subject perceptron and two
    interaction branches. The transformer must have no encoder layers of its own.

    forward: as ReferFormer's, plus `subject_weights` (B·K, L): each sentence's word weights
    from the subject perceptron (zero at padding), for inspection."""

    def __init__(
        self,
        backbone: nn.Module,
        text_encoder: TextEncoder,
        transformer: DeformableTransformer,
        *,
        nheads: int = 8,
        enc_n_points: int = 4,
        interactions: int = 2,
        language_ffn: int = 3072,
        num_feature_levels: int = 4,
        dim_feedforward: int = 2048,
        **referformer,
    ):
        super().__init__(
            backbone,
            text_encoder,
            transformer,
            num_feature_levels=num_feature_levels,
            dim_feedforward=dim_feedforward,
            **referformer,
        )
        if len(transformer.encoder.layers):
            raise ValueError(
                "DMFormer's branches are its encoder: build its transformer with "
                "num_encoder_layers=0"
            )
        d, dropout = transformer.d_model, transformer.dropout
        if d % 2:
            raise ValueError(f"DMFormer concatenates two halves of the width: {d} is odd")
        del self.fusion_module  # each branch fuses the words its own way
        self.subject_perceptron = SubjectPerceptron(d, nheads, language_ffn, dropout)
        block = dict(
            d_model=d,
            nhead=nheads,
            dim_feedforward=dim_feedforward,
            language_ffn=language_ffn,
            dropout=dropout,
            levels=num_feature_levels,
            n_points=enc_n_points,
        )
        self.context_branch = InteractionBranch(interactions, **block)
        self.subject_branch = InteractionBranch(interactions, **block)
        # Each branch's memory and sentence feature at half the width: concatenated, the
        # decoder reads both interactions side by side.
        self.context_visual = FeatureResizer(d, d // 2, dropout)
        self.context_text = FeatureResizer(d, d // 2, dropout)
        self.subject_visual = FeatureResizer(d, d // 2, dropout)
        self.subject_text = FeatureResizer(d, d // 2, dropout)

    def forward(self, frames: Tensor, texts: list[str]) -> dict:
        t, h, w = frames.shape[1], *frames.shape[-2:]
        maps, text = self._encode(frames, texts)
        words, padding = self.resizer(text.words), text.padding
        word_pos = sine_1d(padding, words.shape[-1])
        srcs, poses = [], []
        for level, proj in enumerate(self.input_proj):
            source = maps[level + 1] if level < 3 else (maps[-1] if level == 3 else srcs[-1])
            srcs.append(proj(source))
            poses.append(_positions(srcs[-1], srcs[-1].shape[1]))
        sentence = getattr(self, "sentence_resizer", self.resizer)(text.sentence)
        subject = self.subject_perceptron(words, padding)
        memory, queries = self.interact(
            srcs, poses, (words, word_pos, padding), sentence, subject, t
        )
        tgt = queries.repeat_interleave(t, 0)[:, None].expand(-1, self.num_queries, -1)
        hs, reference, boxes, memory = self.transformer(
            memory,
            poses,
            tgt.contiguous(),
            self.query_embed.weight,
            self.bbox_embed,
            self._interaction(t),
        )
        out = self._predict(
            hs, reference, boxes, maps[0], memory, poses, (words, word_pos, padding), (h, w)
        )
        out["subject_weights"] = subject.exp()
        return out

    def interact(
        self,
        srcs: list[Tensor],
        poses: list[Tensor],
        text: tuple[Tensor, Tensor, Tensor],
        sentence: Tensor,
        subject: Tensor,
        frames: int,
    ) -> tuple[list[Tensor], Tensor]:
        """The two branches side by side. srcs, poses: per level (B·K·T, C, H_l, W_l); text:
        words, word_pos (B·K, L, C) and padding (B·K, L); sentence (B·K, C); subject (B·K, L)
        the log subject weights → the memory, per level (B·K·T, C, H_l, W_l), the context
        branch's in the first half of the channels and the subject branch's in the second,
        and the queries' content (B·K, C), halved alike."""
        words, word_pos, padding = text
        src, pos, shapes, starts = self.transformer.flatten(srcs, poses)
        context = uniform_log_weights(padding, words.dtype)
        halves, queries = [], []
        for branch, weights, visual, language in (
            (self.context_branch, context, self.context_visual, self.context_text),
            (self.subject_branch, subject, self.subject_visual, self.subject_text),
        ):
            out, out_words = branch(src, pos, shapes, starts, words, word_pos, weights, frames)
            halves.append(visual(out))
            summary = weighted_mean(language(out_words), weights)
            queries.append(language(sentence) + WORD_SHARE * summary)
        return level_maps(torch.cat(halves, -1), shapes), torch.cat(queries, -1)


def build_dmformer(cfg, load_weights: bool = True) -> tuple[nn.Module, nn.Module]:
    """Model and criterion from a ModelConfig: `model.referformer` as for ReferFormer except
    `enc_layers`, which DMFormer does not read (its branches are its encoder), and
    `model.dmformer` for its own modules."""
    rf, dm = cfg.referformer, cfg.dmformer
    without_encoder = replace(cfg, referformer=replace(rf, enc_layers=0))
    return build_referformer(
        without_encoder,
        load_weights,
        model_class=DMFormer,
        nheads=rf.nheads,
        enc_n_points=rf.enc_n_points,
        interactions=dm.interactions,
        language_ffn=dm.language_ffn,
    )
