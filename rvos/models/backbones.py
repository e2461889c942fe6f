"""Vision backbones from torchvision, built offline from a weights spec.

`deeplab_backbone` gives the dilated feature extractors DeepLabv3 uses: ResNet-50/101
with output stride 8 (the RefVOS paper's setting), or MobileNetV3-Large with output
stride 16, light enough to train the demo on a CPU.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn
from torchvision.models import mobilenet_v3_large, resnet50, resnet101
from torchvision.models._utils import IntermediateLayerGetter

from rvos.models.weights import load_state_file, resolve_weights

_RESNETS = {"resnet50": resnet50, "resnet101": resnet101}


def deeplab_backbone(name: str, weights: str | None = None) -> tuple[nn.Module, int]:
    """A module mapping (N, 3, H, W) to {"out": (N, C, H/s, W/s)}, and C."""
    key = "model.backbone.weights"
    resolved = resolve_weights(weights, key)
    enum = None if resolved is None or isinstance(resolved, Path) else resolved
    if name in _RESNETS:
        net = _RESNETS[name](weights=enum, replace_stride_with_dilation=[False, True, True])
        if isinstance(resolved, Path):
            load_state_file(net, resolved)
        return IntermediateLayerGetter(net, return_layers={"layer4": "out"}), 2048
    if name == "mobilenet_v3_large":
        net = mobilenet_v3_large(weights=enum, dilated=True)
        if isinstance(resolved, Path):
            load_state_file(net, resolved)
        features = net.features
        last = len(features) - 1
        channels = features[last].out_channels
        return IntermediateLayerGetter(features, return_layers={str(last): "out"}), channels
    raise ValueError(f"unknown backbone {name!r}; expected resnet50, resnet101, mobilenet_v3_large")
