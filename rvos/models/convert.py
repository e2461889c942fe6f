"""Released ReferFormer checkpoints → rvos ReferFormer state dicts (and BIFIT's, a fork).

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
# BIFIT renames ReferFormer's decoder layers and adds inter-frame layers inside the decoder,
# which rvos keeps beside it (as `interframe`). Its first code version refined the text with a
# pre-norm attention + MLP block instead of ReferFormer's fusion module; the released code
# cannot build that model and neither can rvos.
BIFIT_DECODER = "transformer.decoder.decoder_layers."
BIFIT_INTERFRAME = "transformer.decoder.query_encoder_layers."
BIFIT_EARLY_TEXT_FUSION = ("text_fusion_module.ln_1.", "text_fusion_module.mlp.")
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
    if any(key.startswith(BIFIT_DECODER) for key in official):
        raise CheckpointError(
            f"a BIFIT checkpoint ({BIFIT_DECODER}* keys), not a ReferFormer one: load it with "
            "model.method: bifit"
        )
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


def _load_converted(path: str | Path, model: nn.Module, backbone: str, convert) -> dict:
    """An official checkpoint file through `convert`, its errors naming the file."""
    state = read_official(path)
    try:
        return convert(state, model, backbone)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None


def load_official(path: str | Path, model: nn.Module, cfg) -> dict[str, Tensor]:
    """An official ReferFormer checkpoint file as a state dict of `model` (built from `cfg`)."""
    return _load_converted(path, model, cfg.backbone.name, convert_referformer)


def convert_bifit(
    official: dict[str, Tensor], model: nn.Module, backbone: str
) -> dict[str, Tensor]:
    """Rename an official BIFIT state dict for `model` (an rvos Bifit with `backbone`):
    ReferFormer's renames, the decoder layers back to ReferFormer's names and the inter-frame
    layers to `interframe.layers`. Its text-fusion and pooling modules keep their names."""
    if not any(key.startswith(BIFIT_DECODER) for key in official):
        raise CheckpointError(
            f"not a BIFIT checkpoint (no {BIFIT_DECODER}* keys; a ReferFormer checkpoint loads "
            "with model.method: referformer)"
        )
    if any(key.startswith(BIFIT_EARLY_TEXT_FUSION) for key in official):
        raise CheckpointError(
            "a checkpoint of BIFIT's first code version (text_fusion_module has ln_1/mlp "
            "weights): the released BIFIT, which rvos implements, uses ReferFormer's fusion "
            "module there"
        )
    renamed = {}
    for key, value in official.items():
        if key.startswith(BIFIT_DECODER):
            key = "transformer.decoder.layers." + key.removeprefix(BIFIT_DECODER)
        elif key.startswith(BIFIT_INTERFRAME):
            key = "interframe.layers." + key.removeprefix(BIFIT_INTERFRAME)
        renamed[key] = value
    return convert_referformer(renamed, model, backbone)


def load_official_bifit(path: str | Path, model: nn.Module, cfg) -> dict[str, Tensor]:
    """An official BIFIT checkpoint file as a state dict of `model` (built from `cfg`)."""
    return _load_converted(path, model, cfg.backbone.name, convert_bifit)
