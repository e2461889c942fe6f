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
from rvos.models.postprocess import Candidates, clip_probabilities
from rvos.models.referformer import build_referformer, referformer_candidates
from rvos.models.refvos import build_refvos, refvos_candidates


@dataclass(frozen=True)
class Method:
    build: Callable[[ModelConfig, bool], tuple[nn.Module, nn.Module]]  # (cfg, load_weights)
    candidates: Callable[[dict], Candidates]
    mask_stride: int  # input size / candidate mask size

    def probabilities(self, outputs: dict) -> torch.Tensor:
        """(B·K, T, H, W): the query with the best clip score, as probabilities."""
        candidates = self.candidates(outputs)
        h, w = candidates.masks.shape[-2:]
        return clip_probabilities(candidates, (h * self.mask_stride, w * self.mask_stride))


METHODS: dict[str, Method] = {
    "refvos": Method(build_refvos, refvos_candidates, mask_stride=1),
    "referformer": Method(build_referformer, referformer_candidates, mask_stride=4),
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(METHODS)}")
    return METHODS[name]


def build_model(cfg: ModelConfig, load_weights: bool = True) -> tuple[nn.Module, nn.Module]:
    """load_weights False builds the architecture alone: no backbone or text weights are read
    (only the text encoder's config.json), e.g. to count parameters on the meta device."""
    return get_method(cfg.method).build(cfg, load_weights)
