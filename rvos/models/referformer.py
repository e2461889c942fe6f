"""ReferFormer (Wu et al., CVPR 2022): language as queries for referring video segmentation.

The sentence becomes the decoder's N object queries in every frame; the deformable
transformer finds the objects, a dynamic mask head turns each query into a mask over
cross-modal stride-4 features, and at inference the query whose score is highest over the
clip is the referred object. Query i is the same candidate object in every frame, so one
query's masks over time form its track.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import Tensor, nn

from rvos.errors import ConfigError
from rvos.models.criterion import SetCriterion
from rvos.models.fpn import CrossModalFPN, VisionLanguageFusion, clip_maps, clip_tokens
from rvos.models.heads import DynamicMaskHead, FeatureResizer
from rvos.models.matcher import ClipMatcher
from rvos.models.multiscale import multiscale_backbone
from rvos.models.position import sine_1d, sine_2d
from rvos.models.postprocess import Candidates
from rvos.models.refvos import sentences_per_clip
from rvos.models.text import TextEncoder, TextFeatures, build_text_encoder
from rvos.models.transformer import MLP, DeformableTransformer

CLASS_PRIOR = 0.01  # initial probability that a query is the referred object


class ReferFormer(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        text_encoder: TextEncoder,
        transformer: DeformableTransformer,
        *,
        num_queries: int = 5,
        num_classes: int = 1,
        num_feature_levels: int = 4,
        mask_dim: int = 256,
        dim_feedforward: int = 2048,
        controller_layers: int = 3,
        dynamic_mask_channels: int = 8,
        rel_coord: bool = True,
        aux_loss: bool = True,
    ):
        super().__init__()
        d = transformer.d_model
        self.backbone = backbone
        self.text_encoder = text_encoder
        self.transformer = transformer
        self.num_queries = num_queries
        self.aux_loss = aux_loss
        layers = transformer.decoder.num_layers
        self.class_embed = nn.ModuleList(nn.Linear(d, num_classes) for _ in range(layers))
        self.bbox_embed = nn.ModuleList(MLP(d, d, 4, 3) for _ in range(layers))
        self.query_embed = nn.Embedding(num_queries, d)
        channels = backbone.channels
        levels = [nn.Sequential(nn.Conv2d(c, d, 1), nn.GroupNorm(32, d)) for c in channels[-3:]]
        in_channels = channels[-1]
        for _ in range(num_feature_levels - 3):  # extra levels: stride-2 convs on C5
            levels.append(nn.Sequential(nn.Conv2d(in_channels, d, 3, 2, 1), nn.GroupNorm(32, d)))
            in_channels = d
        self.input_proj = nn.ModuleList(levels)
        self.resizer = FeatureResizer(text_encoder.word_dim, d, transformer.dropout)
        if text_encoder.sentence_dim != text_encoder.word_dim:  # CLIP's projected sentence
            self.sentence_resizer = FeatureResizer(
                text_encoder.sentence_dim, d, transformer.dropout
            )
        self.fusion_module = VisionLanguageFusion(d, nhead=8)
        self.pixel_decoder = CrossModalFPN(
            [channels[0]] + [d] * 3, d, mask_dim, dim_feedforward, dropout=transformer.dropout
        )
        self.mask_head = DynamicMaskHead(
            d, mask_dim, dynamic_mask_channels, controller_layers, rel_coord
        )
        self._reset_heads()

    def _reset_heads(self) -> None:
        bias = -math.log((1 - CLASS_PRIOR) / CLASS_PRIOR)
        for head in self.class_embed:
            nn.init.constant_(head.bias, bias)
        for head in self.bbox_embed:
            nn.init.zeros_(head.layers[-1].weight)
            nn.init.zeros_(head.layers[-1].bias)
        nn.init.constant_(self.bbox_embed[0].layers[-1].bias[2:], -2.0)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight)
            nn.init.zeros_(proj[0].bias)

    def forward(self, frames: Tensor, texts: list[str]) -> dict:
        """frames (B, T, 3, H, W), K sentences per clip → per sentence and frame:
        pred_logits (B·K, T, Q, classes), pred_boxes (B·K, T, Q, 4) as (cx, cy, w, h) in [0, 1],
        pred_masks (B·K, T, Q, H/4, W/4) logits; aux_outputs holds the earlier decoder layers'."""
        t, h, w = frames.shape[1], *frames.shape[-2:]
        maps, text = self._encode(frames, texts)
        words, padding = self.resizer(text.words), text.padding
        word_pos = sine_1d(padding, words.shape[-1])
        projected, srcs, poses = [], [], []
        for level, proj in enumerate(self.input_proj):
            source = maps[level + 1] if level < 3 else (maps[-1] if level == 3 else srcs[-1])
            src = proj(source)
            projected.append(src)
            srcs.append(self._fuse(src, words, word_pos, padding, t))
            poses.append(_positions(src, src.shape[1]))
        sentence = self._sentence(text, words, projected, poses, t)
        tgt = sentence.repeat_interleave(t, 0)[:, None].expand(-1, self.num_queries, -1)
        hs, reference, boxes, memory = self.transformer(
            srcs,
            poses,
            tgt.contiguous(),
            self.query_embed.weight,
            self.bbox_embed,
            self._interaction(t),
        )
        return self._predict(
            hs,
            reference,
            boxes,
            maps[0],
            memory,
            poses,
            (words, word_pos, padding),
            (h, w),
        )

    def _predict(
        self,
        hs: Tensor,
        reference: Tensor,
        boxes: Tensor,
        stride4: Tensor,
        memory: list[Tensor],
        poses: list[Tensor],
        text: tuple[Tensor, Tensor, Tensor],
        size: tuple[int, int],
    ) -> dict:
        """The output dict from the decoder's hs (layers, B·K·T, Q, C), initial reference
        points and boxes: the cross-modal pyramid over the backbone's `stride4` map (B·K·T, C,
        H/4, W/4) and the encoder's `memory` maps (with their `poses`), attending to the `text`
        (words, word_pos, padding), gives the mask features, from which each layer's queries
        make their masks; `size` is the input's (H, W)."""
        words, word_pos, padding = text
        n, t = words.shape[0], stride4.shape[0] // words.shape[0]
        features = self.pixel_decoder(
            [stride4, *memory],
            [_positions(stride4, words.shape[-1]), *poses[:3]],
            words,
            word_pos,
            padding,
            t,
        )
        features = features.unflatten(0, (n, t))
        layers = []
        for lvl in range(len(hs)):
            queries = hs[lvl].unflatten(0, (n, t))
            layer_boxes = boxes[lvl].unflatten(0, (n, t))
            layers.append(
                {
                    "pred_logits": self.class_embed[lvl](queries),
                    "pred_boxes": layer_boxes,
                    "pred_masks": self.mask_head(
                        queries, features, layer_boxes[..., :2].detach(), size
                    ),
                }
            )
        out = dict(layers[-1])
        if self.aux_loss:
            out["aux_outputs"] = layers[:-1]
        out["init_reference"] = reference.unflatten(0, (n, t))
        return out

    def _encode(self, frames: Tensor, texts: list[str]) -> tuple[list[Tensor], TextFeatures]:
        """Backbone maps [C2, C3, C4, C5] per sentence and frame, (B·K·T, C, h, w), and the
        sentences' features. Here each clip is seen once, apart from its sentences; methods
        whose backbone reads the sentence compute both together."""
        b, t = frames.shape[:2]
        k = sentences_per_clip(b, texts)
        inputs = frames if getattr(self.backbone, "video", False) else frames.flatten(0, 1)
        maps = [_per_sentence(m, b, k, t) for m in self.backbone(inputs)]
        return maps, self.text_encoder(texts)

    def _sentence(
        self,
        text: TextFeatures,
        words: Tensor,
        levels: list[Tensor],
        poses: list[Tensor],
        frames: int,
    ) -> Tensor:
        """(B·K, C): the sentence feature that becomes every frame's queries. Here the text
        encoder's; `levels` (the projected maps before the early fusion, with their `poses`) are
        for methods whose sentence also reads the clip."""
        return getattr(self, "sentence_resizer", self.resizer)(text.sentence)

    def _interaction(self, frames: int) -> Callable[[Tensor], Tensor] | None:
        """The decoder's per-layer query interaction (`Decoder.forward`'s `interact`): none
        here, each frame's queries are decoded apart."""
        return None

    def _fuse(
        self, src: Tensor, words: Tensor, word_pos: Tensor, padding: Tensor, frames: int
    ) -> Tensor:
        """Early fusion of one level: every pixel of the clip gated by its attention to words."""
        fused = self.fusion_module(clip_tokens(src, frames), words, word_pos, padding)
        return clip_maps(fused, frames, *src.shape[-2:])


def _per_sentence(maps: Tensor, clips: int, k: int, t: int) -> Tensor:
    """(B·T, ...) backbone maps → (B·K·T, ...): each clip's maps repeated for its K sentences."""
    if k == 1:
        return maps
    return maps.unflatten(0, (clips, 1, t)).expand(-1, k, *[-1] * (maps.dim())).flatten(0, 2)


def _positions(maps: Tensor, channels: int) -> Tensor:
    """(N, channels, H, W) sine encoding of (N, C, H, W) maps' pixels."""
    n, _, h, w = maps.shape
    return sine_2d(h, w, channels, maps.device).to(maps.dtype)[None].expand(n, -1, -1, -1)


def referformer_candidates(outputs: dict) -> Candidates:
    """Every query is a candidate object: its class probabilities and masks (at 1/4 of the
    input size) in each frame."""
    return Candidates(outputs["pred_logits"].sigmoid(), outputs["pred_masks"])


def build_referformer(
    cfg,
    load_weights: bool = True,
    model_class: type[ReferFormer] = ReferFormer,
    *,
    backbone: nn.Module | None = None,
    text_encoder: nn.Module | None = None,
    **extra,
) -> tuple[nn.Module, nn.Module]:
    """Model and criterion from a ModelConfig (`model.referformer` holds the method's part).
    Methods built on ReferFormer pass their subclass and its own constructor arguments, and
    their own backbone (with `channels` of its four maps) or text encoder, if they have one,
    in place of `model.backbone` and `model.text_encoder`'s."""
    rf = cfg.referformer
    if any(side % 32 for side in cfg.input_size):
        raise ConfigError(
            f"params.yaml: model.input_size = {list(cfg.input_size)}: ReferFormer needs both "
            "sides divisible by 32 (its coarsest feature stride), e.g. [96, 160] or [352, 640]"
        )
    if backbone is None:
        backbone = multiscale_backbone(
            cfg.backbone.name,
            cfg.backbone.weights if load_weights else None,
            frozen_stages=cfg.backbone.frozen_stages,
            checkpointing=cfg.backbone.checkpointing,
        )
    if text_encoder is None:
        text_encoder = build_text_encoder(cfg.text_encoder, load_weights)
    transformer = DeformableTransformer(
        d_model=rf.hidden_dim,
        nhead=rf.nheads,
        num_encoder_layers=rf.enc_layers,
        num_decoder_layers=rf.dec_layers,
        dim_feedforward=rf.dim_feedforward,
        dropout=rf.dropout,
        num_feature_levels=rf.num_feature_levels,
        enc_n_points=rf.enc_n_points,
        dec_n_points=rf.dec_n_points,
    )
    model = model_class(
        backbone,
        text_encoder,
        transformer,
        num_queries=rf.num_queries,
        num_feature_levels=rf.num_feature_levels,
        mask_dim=rf.mask_dim,
        dim_feedforward=rf.dim_feedforward,
        controller_layers=rf.controller_layers,
        dynamic_mask_channels=rf.dynamic_mask_channels,
        rel_coord=rf.rel_coord,
        aux_loss=rf.aux_loss,
        **extra,
    )
    matcher = ClipMatcher(
        cost_class=rf.set_cost_class,
        cost_bbox=rf.set_cost_bbox,
        cost_giou=rf.set_cost_giou,
        cost_mask=rf.set_cost_mask,
        cost_dice=rf.set_cost_dice,
    )
    weights = {
        "loss_ce": rf.cls_loss_coef,
        "loss_bbox": rf.bbox_loss_coef,
        "loss_giou": rf.giou_loss_coef,
        "loss_mask": rf.mask_loss_coef,
        "loss_dice": rf.dice_loss_coef,
    }
    aux_layers = rf.dec_layers - 1 if rf.aux_loss else 0
    criterion = SetCriterion(matcher, weights, aux_layers)
    return model, criterion
