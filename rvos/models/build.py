"""Method registry: `model.method` → builder of (model, criterion) and its postprocess.

Every method's forward takes frames (B, T, 3, H, W) and a list of B·K sentences, K per clip
(clip b's are texts[b*K:(b+1)*K]), and returns a dict of per-sentence outputs; its criterion
returns unweighted losses with a `weight_dict`; its `candidates` turn the outputs into candidate
objects (rvos.models.postprocess), from which `probabilities` picks the referred one: per-frame
foreground probabilities (B·K, T, H, W) at the input size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from rvos.config import ModelConfig
from rvos.models.bifit import build_bifit
from rvos.models.convert import load_official, load_official_bifit
from rvos.models.dmformer import build_dmformer
from rvos.models.postprocess import Candidates, clip_probabilities
from rvos.models.referformer import build_referformer, referformer_candidates
from rvos.models.refvos import build_refvos, refvos_candidates
from rvos.models.vlp_rvos import build_vlp_rvos, clip_vision_name


@dataclass(frozen=True)
class Method:
    build: Callable[[ModelConfig, bool], tuple[nn.Module, nn.Module]]  # (cfg, load_weights)
    candidates: Callable[[dict], Candidates]
    mask_stride: int  # input size / candidate mask size
    # Released checkpoints of the method: (file, model, cfg) → the model's state dict.
    convert_official: Callable[[str, nn.Module, ModelConfig], dict] | None = None
    # The vision backbone as results tables name it.
    backbone_name: Callable[[ModelConfig], str] = lambda cfg: cfg.backbone.name

    def probabilities(self, outputs: dict) -> torch.Tensor:
        """(B·K, T, H, W): the query with the best clip score, as probabilities."""
        candidates = self.candidates(outputs)
        h, w = candidates.masks.shape[-2:]
        return clip_probabilities(candidates, (h * self.mask_stride, w * self.mask_stride))


METHODS: dict[str, Method] = {
    "refvos": Method(build_refvos, refvos_candidates, mask_stride=1),
    "referformer": Method(
        build_referformer, referformer_candidates, mask_stride=4, convert_official=load_official
    ),
    "bifit": Method(
        build_bifit, referformer_candidates, mask_stride=4, convert_official=load_official_bifit
    ),
    "dmformer": Method(build_dmformer, referformer_candidates, mask_stride=4),
    "vlp_rvos": Method(
        build_vlp_rvos, referformer_candidates, mask_stride=4, backbone_name=clip_vision_name
    ),
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(METHODS)}")
    return METHODS[name]


def build_model(cfg: ModelConfig, load_weights: bool = True) -> tuple[nn.Module, nn.Module]:
    """load_weights False builds the architecture alone: no backbone or text weights are read
    (only the text encoder's config.json), e.g. to count parameters on the meta device."""
    return get_method(cfg.method).build(cfg, load_weights)


def backbone_name(cfg: ModelConfig) -> str:
    return get_method(cfg.method).backbone_name(cfg)
