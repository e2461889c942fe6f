"""Resolve a weights spec from params into something a constructor can load offline.

A spec is null (random init), a path to a state-dict file, or a torchvision enum name
("ResNet101_Weights.IMAGENET1K_V1") whose file must already be in the torch hub cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models import WeightsEnum

from rvos.errors import CheckpointError, ConfigError


def resolve_weights(spec: str | None, key: str) -> WeightsEnum | Path | None:
    """None, an existing file, or a cached torchvision weights enum; else a ConfigError."""
    if spec is None:
        return None
    path = Path(spec)
    if path.is_file():
        return path
    try:
        weights = torchvision.models.get_weight(spec)
    except (ValueError, AttributeError, KeyError):
        raise ConfigError(
            f"params.yaml: {key} = {spec!r}: expected null, an existing state-dict file, or a "
            "torchvision weights name such as 'ResNet101_Weights.IMAGENET1K_V1'"
        ) from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if not cached.is_file():
        raise ConfigError(
            f"params.yaml: {key} = {spec!r}: not in the local cache and rvos never downloads; "
            f"put the file from {weights.url} at {cached}"
        )
    return weights


def load_state_file(module: nn.Module, path: Path) -> None:
    """Load backbone weights from a state-dict file; keys the module lacks (classifier heads,
    layers a truncated backbone drops) are ignored, missing or misshapen ones are errors."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or unsafe files
        reason = f"{type(err).__name__}: {str(err).splitlines()[0]}"
        raise CheckpointError(f"{path}: cannot load weights ({reason})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise CheckpointError(f"{path}: {len(missing)} weights missing (first: {missing[0]})")
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise CheckpointError(
                f"{path}: {key} has shape {tuple(state[key].shape)}, expected {tuple(tensor.shape)}"
            )
    module.load_state_dict({k: state[k] for k in expected})
