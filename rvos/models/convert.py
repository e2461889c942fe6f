"""Released ReferFormer checkpoints → rvos ReferFormer state dicts.

rvos keeps ReferFormer's module names except where it uses a library's module instead of a
copy: torchvision's backbones (so their own names), the text model inside a `TextEncoder`
(`language_model`), the mask controller inside the `DynamicMaskHead`. The decoder's alias of
the box heads (`transformer.decoder.bbox_embed`) is dropped after checking it equals
`bbox_embed`. Relative-position index buffers are recomputed by the model, not read.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from rvos.errors import CheckpointError

OFFICIAL_MARKER = "backbone.0.body."
# Entries a model recomputes or a profiler left behind (thop's counters), never weights.
DERIVED_KEYS = ("relative_position_index", "embeddings.position_ids", "total_params", "total_ops")


def is_official(state: dict) -> bool:
    """Whether a state dict uses the official ReferFormer names."""
    return any(k.startswith(OFFICIAL_MARKER) for k in state)


def read_official(path: str | Path) -> dict[str, Tensor]:
    """The model state dict of an official checkpoint file (`{"model": ..., "args": ...}` as
    its training script saves it), read weights-only; `argparse.Namespace`, which holds the
    training arguments, is the one class allowed besides tensors and plain data."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated or unsafe files raise many types
        reason = f"{type(err).__name__}: {str(err).splitlines()[0]}"
        raise CheckpointError(f"{path}: cannot load the checkpoint ({reason})") from None
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not is_official(state):
        raise CheckpointError(
            f"{path}: not a ReferFormer checkpoint (expected a state dict with "
            f"'{OFFICIAL_MARKER}*' keys, or one under 'model')"
        )
    return state


def _resnet(rest: str) -> str:
    return rest


def _swin(rest: str) -> str:
    rest = re.sub(r"^patch_embed\.proj\.", "features.0.0.", rest)
    rest = re.sub(r"^patch_embed\.norm\.", "features.0.2.", rest)
    rest = re.sub(r"^layers\.(\d+)\.blocks\.", lambda m: f"features.{2 * int(m[1]) + 1}.", rest)
    rest = re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"features.{2 * int(m[1]) + 2}.", rest)
    rest = re.sub(r"^norm(\d)\.", r"out_norms.\1.", rest)
    return _swin_mlp(rest)


def _video_swin(rest: str) -> str:
    rest = re.sub(r"^layers\.(\d+)\.blocks\.", lambda m: f"features.{2 * int(m[1])}.", rest)
    rest = re.sub(r"^downsamples\.(\d+)\.", lambda m: f"features.{2 * int(m[1]) + 1}.", rest)
    return _swin_mlp(rest)


def _swin_mlp(rest: str) -> str:
    return rest.replace(".mlp.fc1.", ".mlp.0.").replace(".mlp.fc2.", ".mlp.3.")


def _backbone_renamer(name: str) -> Callable[[str], str]:
    if name.startswith("resnet"):
        return _resnet
    if name.startswith("video_swin"):
        return _video_swin
    if name.startswith("swin"):
        return _swin
    raise CheckpointError(f"no ReferFormer conversion for backbone {name!r}")


def convert_referformer(
    official: dict[str, Tensor], model: nn.Module, backbone: str
) -> dict[str, Tensor]:
    """Rename an official state dict for `model` (an rvos ReferFormer with `backbone`).

    The result loads strictly: buffers the model derives itself (Swin's relative-position
    indices) come from `model`.
    """
    rename_backbone = _backbone_renamer(backbone)
    converted: dict[str, Tensor] = {}
    for key, value in official.items():
        if key.startswith("transformer.decoder.bbox_embed."):
            twin = key.removeprefix("transformer.decoder.")
            if twin not in official or not torch.equal(official[twin], value):
                raise CheckpointError(f"{key} differs from {twin}; the checkpoint is inconsistent")
            continue
        if key.endswith(DERIVED_KEYS):
            continue
        converted[_rename(key, rename_backbone)] = value
    expected = model.state_dict()
    for key, value in expected.items():
        if key.endswith("relative_position_index"):
            converted[key] = value
    return converted


def _rename(key: str, rename_backbone: Callable[[str], str]) -> str:
    if key.startswith(OFFICIAL_MARKER):
        return "backbone." + rename_backbone(key.removeprefix(OFFICIAL_MARKER))
    if key.startswith("text_encoder."):
        return "text_encoder.language_model." + key.removeprefix("text_encoder.")
    if key.startswith("controller."):
        return "mask_head." + key
    return key
