"""RefVOS (Bellver et al., 2020): DeepLabv3 features gated by a sentence embedding.

The ASPP output (N, C, h, w) is multiplied element-wise by a linear projection of the
sentence embedding (N, C), and a small convolutional head predicts one mask per frame.
Frames are independent: the model has no temporal component, by design of the paper.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from rvos.models.backbones import deeplab_backbone
from rvos.models.losses import MaskLoss
from rvos.models.postprocess import Candidates
from rvos.models.text import TextEncoder, build_text_encoder

FOREGROUND_PRIOR = 0.05


class RefVOS(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        backbone_channels: int,
        text_encoder: TextEncoder,
        fusion_dim: int = 256,
        atrous_rates: tuple[int, int, int] = (12, 24, 36),
    ):
        super().__init__()
        self.backbone = backbone
        self.aspp = ASPP(backbone_channels, list(atrous_rates), fusion_dim)
        self.text_encoder = text_encoder
        self.text_proj = nn.Linear(text_encoder.sentence_dim, fusion_dim)
        self.head = nn.Sequential(
            nn.Conv2d(fusion_dim, fusion_dim, 3, padding=1, bias=False),
            nn.BatchNorm2d(fusion_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(fusion_dim, 1, 1),
        )
        # Start from a 5% foreground prior instead of 50%: referred objects cover a small
        # part of the frame, and the first steps should not be spent learning that.
        nn.init.constant_(self.head[-1].bias, -math.log((1 - FOREGROUND_PRIOR) / FOREGROUND_PRIOR))

    def forward(self, frames: torch.Tensor, texts: list[str]) -> dict:
        """frames (B, T, 3, H, W) and K sentences per clip (texts[b*K:(b+1)*K] are clip b's)
        → {"pred_masks": (B·K, T, H, W) logits}. The visual features are computed once."""
        b, t, _, h, w = frames.shape
        k = sentences_per_clip(b, texts)
        visual = self.aspp(self.backbone(frames.flatten(0, 1))["out"])  # (B*T, C, h', w')
        visual = visual.unflatten(0, (b, 1, t)).expand(-1, k, -1, -1, -1, -1).flatten(0, 2)
        sentence = self.text_proj(self.text_encoder(texts).sentence)  # (B*K, C)
        fused = visual * sentence.repeat_interleave(t, dim=0)[:, :, None, None]
        logits = self.head(fused)  # (B*K*T, 1, h', w')
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return {"pred_masks": logits.view(b * k, t, h, w)}


def sentences_per_clip(clips: int, texts: list[str]) -> int:
    """K such that len(texts) == clips × K, or a ValueError."""
    if not texts or len(texts) % clips:
        raise ValueError(f"{len(texts)} sentences for {clips} clips: expected K per clip, K >= 1")
    return len(texts) // clips


def refvos_candidates(outputs: dict) -> Candidates:
    """One candidate per sentence: its mask, scored in each frame by its most confident pixel."""
    masks = outputs["pred_masks"][:, :, None]  # (B·K, T, 1, H, W)
    scores = masks.flatten(-2).max(-1).values.sigmoid()[..., None]  # (B·K, T, 1, 1)
    return Candidates(scores, masks)


def build_refvos(cfg, load_weights: bool = True) -> tuple[nn.Module, nn.Module]:
    """Model and criterion from a ModelConfig."""
    backbone_weights = cfg.backbone.weights if load_weights else None
    backbone, channels = deeplab_backbone(cfg.backbone.name, backbone_weights)
    encoder = build_text_encoder(cfg.text_encoder, load_weights)
    model = RefVOS(
        backbone, channels, encoder, fusion_dim=cfg.fusion_dim, atrous_rates=cfg.atrous_rates
    )
    return model, MaskLoss()
