"""Method registry: `model.method` → builder of (model, criterion) and its postprocess.

Every method's forward takes frames (B, T, 3, H, W) and a list of B·K sentences, K per clip
(clip b's are texts[b*K:(b+1)*K]), and returns a dict of per-sentence outputs; its criterion
returns unweighted losses with a `weight_dict`; its postprocess turns the outputs into
per-frame foreground probabilities (B·K, T, H, W).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from rvos.config import ModelConfig
from rvos.models.refvos import build_refvos, refvos_probabilities


@dataclass(frozen=True)
class Method:
    build: Callable[[ModelConfig], tuple[nn.Module, nn.Module]]
    probabilities: Callable[[dict], torch.Tensor]


METHODS: dict[str, Method] = {
    "refvos": Method(build_refvos, refvos_probabilities),
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(METHODS)}")
    return METHODS[name]


def build_model(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    return get_method(cfg.method).build(cfg)
