"""VLP-RVOS (Zhou, Xiong et al., 2024): a vision-language pretrained model (CLIP) for RVOS.

CLIP's towers stay frozen; what trains is what adapts them to dense, temporal prediction:
- temporal-aware prompt tuning: learnable language, vision and temporal prompt tokens, encoded
  together (`PromptEncoder`), inserted into the text and vision towers; the temporal prompts
  carry context between frames inside the vision encoder (rvos.models.clip_vit);
- vision-language relation modelling in three stages: ① in every vision layer the tokens
  cross-attend to the words (clip_vit), ② after extraction the words and the clip's tokens
  exchange context and fuse in CLIP's aligned space (`VisionLanguageFusion`), ③ in the
  reasoning stage shallow visual features attend to the words (`SpatialTemporalReasoning`);
- cube-frame attention (`CubeFrameAttention`): each token attends to its spatial-temporal cube
  (a window of positions across all the clip's frames), then to its whole frame.
A ViTDet-style pyramid turns the single stride-16 map into strides 4-32 for ReferFormer's
deformable transformer, mask head and criterion, which rvos shares among its methods.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rvos.errors import ConfigError
from rvos.models.clip_vit import ClipText, ClipVision, build_clip
from rvos.models.fpn import ConvNorm, clip_maps, clip_tokens
from rvos.models.position import sine_2d
from rvos.models.referformer import ReferFormer, build_referformer
from rvos.models.refvos import sentences_per_clip
from rvos.models.text import TextFeatures


class PromptEncoder(nn.Module):
    """Learnable language, vision and temporal prompt tokens passed together through a
    transformer encoder (so the prompts of both modalities are learned coupled), then projected
    to the text and vision widths."""

    def __init__(
        self,
        counts: tuple[int, int, int],
        dim: int,
        text_width: int,
        vision_width: int,
        layers: int = 1,
    ):
        super().__init__()
        self.counts = counts  # (language, vision, temporal)
        self.tokens = nn.Parameter(torch.randn(sum(counts), dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, max(1, dim // 64), 4 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        if counts[0]:
            self.to_text = nn.Linear(dim, text_width)
        if counts[1] + counts[2]:
            self.to_vision = nn.Linear(dim, vision_width)

    def forward(self) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """→ language (P_l, text_width), vision (P_v, vision_width), temporal (P_t,
        vision_width) prompts; None where a count is 0."""
        encoded = self.encoder(self.tokens[None])[0]
        language, vision, temporal = encoded.split(self.counts)
        return (
            self.to_text(language) if self.counts[0] else None,
            self.to_vision(vision) if self.counts[1] else None,
            self.to_vision(temporal) if self.counts[2] else None,
        )


class VisionLanguageFusion(nn.Module):
    """Stage ②, after extraction: dual propagation — the words gather the clip's visual context,
    then every visual token gathers the updated words — and fusion of each token with the
    sentence: its features, their product with the sentence feature and their cosine similarity
    in CLIP's aligned space, projected to the model width."""

    def __init__(self, dim: int, out_dim: int, heads: int):
        super().__init__()
        self.words_from_video = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.video_from_words = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_words = nn.LayerNorm(dim)
        self.norm_video = nn.LayerNorm(dim)
        self.fuse = nn.Linear(2 * dim + 1, out_dim)
        self.norm = nn.LayerNorm(out_dim)

    def forward(
        self, visual: Tensor, words: Tensor, padding: Tensor, sentence: Tensor, frames: int
    ) -> Tensor:
        """visual (N·T, D, h, w), words (N, L, D), padding (N, L), sentence (N, D) in the joint
        space → (N·T, out_dim, h, w)."""
        h, w = visual.shape[-2:]
        video = clip_tokens(visual, frames)  # (N, T·h·w, D)
        attended = self.words_from_video(words, video, video, need_weights=False)[0]
        words = self.norm_words(words + attended)
        attended = self.video_from_words(
            video, words, words, key_padding_mask=padding, need_weights=False
        )[0]
        updated = self.norm_video(video + attended)
        similarity = F.cosine_similarity(video, sentence[:, None], dim=-1)[..., None]
        fused = torch.cat((updated, updated * sentence[:, None], similarity), -1)
        return clip_maps(self.norm(self.fuse(fused)), frames, h, w)


class CubeFrameAttention(nn.Module):
    """Cube attention, then frame attention, each a pre-norm residual.

    Cube: the clip's (T, h, w) tokens split into cubes of all T frames × cube × cube positions
    (the grid padded up to whole cubes, padding masked); a token attends to its cube — local
    spatial-temporal context, where motion is seen. Frame: a token attends to every token of
    its own frame — global spatial context. Together: T·c² + h·w keys per token instead of the
    T·h·w of full spatial-temporal attention.
    """

    def __init__(self, dim: int, heads: int, cube: int, dropout: float = 0.0):
        super().__init__()
        self.cube = cube
        self.cube_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.frame_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_cube = nn.LayerNorm(dim)
        self.norm_frame = nn.LayerNorm(dim)

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        """x (N, T, h, w, C), pos (h, w, C) positions added to queries and keys → same shape."""
        x = x + self.attend_cubes(self.norm_cube(x), pos)
        return x + self.attend_frames(self.norm_frame(x), pos)

    def attend_frames(self, x: Tensor, pos: Tensor) -> Tensor:
        n, t, h, w, c = x.shape
        tokens = x.reshape(n * t, h * w, c)
        q = tokens + pos.reshape(1, h * w, c)
        return self.frame_attn(q, q, tokens, need_weights=False)[0].view(n, t, h, w, c)

    def attend_cubes(self, x: Tensor, pos: Tensor) -> Tensor:
        n, t, h, w, c = x.shape
        s = self.cube
        pad = (0, 0, 0, -w % s, 0, -h % s)  # the grid up to whole cubes
        q = _cubes(F.pad(x + pos, pad), s)  # (N·cubes, T·s·s, C)
        outside = torch.ones(h + pad[-1], w + pad[-3], dtype=torch.bool, device=x.device)
        outside[:h, :w] = False
        mask = _cubes(outside[None, None, ..., None].expand(n, t, -1, -1, -1), s)[..., 0]
        v = _cubes(F.pad(x, pad), s)
        out = self.cube_attn(q, q, v, key_padding_mask=mask, need_weights=False)[0]
        return _uncubes(out, n, t, *outside.shape, s)[:, :, :h, :w]


def _cubes(x: Tensor, s: int) -> Tensor:
    """(N, T, H, W, C), H and W multiples of s → (N·H/s·W/s, T·s·s, C), one row per cube."""
    n, t, h, w, c = x.shape
    x = x.reshape(n, t, h // s, s, w // s, s, c).permute(0, 2, 4, 1, 3, 5, 6)
    return x.reshape(n * (h // s) * (w // s), t * s * s, c)


def _uncubes(x: Tensor, n: int, t: int, h: int, w: int, s: int) -> Tensor:
    """The inverse of `_cubes`."""
    x = x.reshape(n, h // s, w // s, t, s, s, -1).permute(0, 3, 1, 4, 2, 5, 6)
    return x.reshape(n, t, h, w, -1)


class ReasoningLayer(nn.Module):
    """A spatial-temporal encoder layer: cube-frame attention and a feed-forward layer."""

    def __init__(self, dim: int, heads: int, cube: int, ffn: int, dropout: float):
        super().__init__()
        self.attn = CubeFrameAttention(dim, heads, cube, dropout)
        self.norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, dim)
        )

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        x = self.attn(x, pos)
        return x + self.ffn(self.norm(x))


class WordDecoderLayer(nn.Module):
    """Visual tokens (queries) cross-attend to the words, then a feed-forward layer."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, dim)
        )

    def forward(self, x: Tensor, words: Tensor, padding: Tensor) -> Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, words, words, key_padding_mask=padding, need_weights=False)[0]
        return x + self.ffn(self.norm2(x))


class SpatialTemporalReasoning(nn.Module):
    """Layers of cube-frame attention over the fused clip, plus stage ③: a decoder in which
    shallow visual features (an early vision layer's, finer in detail) attend to the words;
    the two outputs are summed."""

    def __init__(
        self,
        dim: int,
        shallow_dim: int,
        word_dim: int,
        *,
        heads: int,
        layers: int,
        cube: int,
        ffn: int,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.encoder = nn.ModuleList(
            ReasoningLayer(dim, heads, cube, ffn, dropout) for _ in range(layers)
        )
        self.shallow_proj = nn.Conv2d(shallow_dim, dim, 1)
        self.word_proj = nn.Linear(word_dim, dim)
        self.decoder = nn.ModuleList(
            WordDecoderLayer(dim, heads, ffn, dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, fused: Tensor, shallow: Tensor, words: Tensor, padding: Tensor, frames: int
    ) -> Tensor:
        """fused (N·T, dim, h, w), shallow (N·T, shallow_dim, h, w), words (N, L, word_dim),
        padding (N, L) → (N·T, dim, h, w)."""
        nt, c, h, w = fused.shape
        pos = sine_2d(h, w, c, fused.device).to(fused.dtype).permute(1, 2, 0)  # (h, w, C)
        x = fused.permute(0, 2, 3, 1).reshape(nt // frames, frames, h, w, c)
        for layer in self.encoder:
            x = layer(x, pos)
        query = clip_tokens(self.shallow_proj(shallow), frames)  # (N, T·h·w, C)
        words = self.word_proj(words)
        for layer in self.decoder:
            query = layer(query, words, padding)
        out = x.reshape(nt // frames, frames * h * w, c) + query
        return clip_maps(self.norm(out), frames, h, w)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of (N, C, H, W) maps, as ViTDet's pyramid uses."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's pyramid from one stride-16 map: strides 4 (two 2×2 deconvolutions), 8 (one),
    16 (as is) and 32 (2×2 max-pooling), each then a 1×1 and a 3×3 convolution with norm."""

    strides = (4, 8, 16, 32)

    def __init__(self, dim: int):
        super().__init__()
        half, quarter = dim // 2, dim // 4
        self.scales = nn.ModuleList(
            [
                nn.Sequential(
                    nn.ConvTranspose2d(dim, half, 2, 2),
                    LayerNorm2d(half),
                    nn.GELU(),
                    nn.ConvTranspose2d(half, quarter, 2, 2),
                ),
                nn.ConvTranspose2d(dim, half, 2, 2),
                nn.Identity(),
                nn.MaxPool2d(2),
            ]
        )
        self.outputs = nn.ModuleList(
            nn.Sequential(ConvNorm(c, dim, 1, relu=False), ConvNorm(dim, dim, 3, relu=False))
            for c in (quarter, half, dim, dim)
        )
        self.channels = (dim,) * 4

    def forward(self, x: Tensor) -> list[Tensor]:
        """(N, dim, H/16, W/16) → [(N, dim, H/s, W/s) for s in 4, 8, 16, 32]."""
        return [out(scale(x)) for scale, out in zip(self.scales, self.outputs, strict=True)]


class VlpBackbone(nn.Module):
    """CLIP's prompted ViT (`vit`) and the pyramid made from its reasoned output; the
    model runs the vision-language stages between the two."""

    def __init__(self, vit: ClipVision, pyramid: SimpleFeaturePyramid):
        super().__init__()
        self.vit = vit
        self.pyramid = pyramid
        self.channels = pyramid.channels


class VlpRvos(ReferFormer):
    """ReferFormer's head over VLP-RVOS's encoder: the sentence is read by the vision encoder
    itself, so the clip is encoded once per sentence."""

    def __init__(
        self,
        backbone: VlpBackbone,
        text_encoder: ClipText,
        transformer: nn.Module,
        *,
        prompts: PromptEncoder | None,
        fusion: VisionLanguageFusion,
        reasoning: SpatialTemporalReasoning,
        **head,
    ):
        super().__init__(backbone, text_encoder, transformer, **head)
        self.prompts = prompts
        self.fusion = fusion
        self.reasoning = reasoning

    def _encode(self, frames: Tensor, texts: list[str]) -> tuple[list[Tensor], TextFeatures]:
        b, t = frames.shape[:2]
        k = sentences_per_clip(b, texts)
        language, vision, temporal = self.prompts() if self.prompts else (None, None, None)
        text = self.text_encoder(texts, language)
        clips = frames.repeat_interleave(k, 0).flatten(0, 1)  # (B·K·T, 3, H, W)
        visual, shallow = self.backbone.vit(clips, t, text.words, text.padding, vision, temporal)
        fused = self.fusion(visual, text.words, text.padding, text.sentence, t)
        reasoned = self.reasoning(fused, shallow, text.words, text.padding, t)
        return self.backbone.pyramid(reasoned), text


def build_vlp_rvos(cfg, load_weights: bool = True) -> tuple[nn.Module, nn.Module]:
    """Model and criterion from a ModelConfig: `model.vlp_rvos` for CLIP and the method's
    modules, `model.referformer` for the head."""
    vc, rf = cfg.vlp_rvos, cfg.referformer
    clip = build_clip(vc, load_weights)
    d = rf.hidden_dim
    embed = clip.visual.output_dim
    if embed % rf.nheads or d % rf.nheads:
        raise ConfigError(
            f"params.yaml: model.referformer.nheads = {rf.nheads}: must divide CLIP's joint "
            f"width ({embed}) and model.referformer.hidden_dim ({d})"
        )
    if vc.cube_size < 1:
        raise ConfigError(f"params.yaml: model.vlp_rvos.cube_size = {vc.cube_size}: expected >= 1")
    vit = ClipVision(
        clip.visual,
        clip.text.output_dim,
        cross_attention_dim=vc.cross_attention_dim,
        temporal_capture=vc.temporal_capture,
        shallow_layer=vc.shallow_layer,
    )
    counts = (vc.language_prompts, vc.vision_prompts, vc.temporal_prompts)
    prompts = None
    if any(counts):
        prompts = PromptEncoder(counts, vc.prompt_dim, clip.text.width, vit.width, vc.prompt_layers)
    reasoning = SpatialTemporalReasoning(
        d,
        vit.width,
        embed,
        heads=rf.nheads,
        layers=vc.reasoning_layers,
        cube=vc.cube_size,
        ffn=rf.dim_feedforward,
        dropout=rf.dropout,
    )
    return build_referformer(
        cfg,
        load_weights,
        VlpRvos,
        backbone=VlpBackbone(vit, SimpleFeaturePyramid(d)),
        text_encoder=ClipText(clip.text, clip.model, vc.language_prompts),
        prompts=prompts,
        fusion=VisionLanguageFusion(embed, d, rf.nheads),
        reasoning=reasoning,
    )


def clip_vision_name(cfg) -> str:
    """The CLIP vision tower as results tables name it: its architecture, and its narrowed
    width and depth where `model.vlp_rvos` overrides them (the demo's CPU-sized CLIP)."""
    vlp = cfg.vlp_rvos
    changes = [
        f"{label} {value}"
        for label, value in (("width", vlp.vision_width), ("layers", vlp.vision_layers))
        if value is not None
    ]
    return vlp.clip_model + (f" ({', '.join(changes)})" if changes else "")
