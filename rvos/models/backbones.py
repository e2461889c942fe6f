"""Vision backbones from torchvision, built offline from a weights spec.

`deeplab_backbone` gives the feature extractors DeepLabv3 uses: ResNet-50/101 dilated to
output stride 8 (the RefVOS paper's setting), MobileNetV3-Large at output stride 16
(torchvision's light DeepLabv3), and ResNet-18 up to layer2 (output stride 8, 128
channels) — small enough to train the demo from scratch on a CPU in minutes.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn
from torchvision.models import mobilenet_v3_large, resnet18, resnet50, resnet101
from torchvision.models._utils import IntermediateLayerGetter

from rvos.models.weights import load_state_file, resolve_weights

_RESNETS = {"resnet50": resnet50, "resnet101": resnet101}
BACKBONES = ("resnet18", "resnet50", "resnet101", "mobilenet_v3_large")


def deeplab_backbone(name: str, weights: str | None = None) -> tuple[nn.Module, int]:
    """A module mapping (N, 3, H, W) to {"out": (N, C, H/s, W/s)}, and C."""
    key = "model.backbone.weights"
    resolved = resolve_weights(weights, key)
    enum = None if resolved is None or isinstance(resolved, Path) else resolved
    if name in _RESNETS:
        net = _RESNETS[name](weights=enum, replace_stride_with_dilation=[False, True, True])
        extractor, channels = IntermediateLayerGetter(net, return_layers={"layer4": "out"}), 2048
    elif name == "resnet18":
        # torchvision's BasicBlock cannot dilate, so output stride 8 means stopping at layer2.
        net = resnet18(weights=enum)
        extractor, channels = IntermediateLayerGetter(net, return_layers={"layer2": "out"}), 128
    elif name == "mobilenet_v3_large":
        net = mobilenet_v3_large(weights=enum, dilated=True)
        extractor = IntermediateLayerGetter(net, return_layers={"features": "out"})
        channels = net.features[-1].out_channels
    else:
        raise ValueError(f"unknown backbone {name!r}; expected {BACKBONES}")
    if isinstance(resolved, Path):
        load_state_file(extractor, resolved)
    return extractor, channels
