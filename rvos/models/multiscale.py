"""Multi-scale vision backbones for ReferFormer-family models.

ReferFormer reads four feature maps per frame: C2 at stride 4 for its mask features and
C3, C4, C5 at strides 8, 16 and 32 for its deformable transformer. `multiscale_backbone` cuts
them out of torchvision's ResNet and Swin image models and out of its video models (Video Swin,
and a small mixed-convolution video ResNet for CPUs), whose clips give per-frame maps.
Submodules keep torchvision's names, so torchvision state dicts load as they are (classifier
keys ignored). Image Swin maps pass through one LayerNorm per level (`out_norms`), as in
ReferFormer's Swin; ResNet and video maps are raw stage outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from torchvision.models import (
    get_model_weights,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    swin_b,
    swin_s,
    swin_t,
)
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.video import swin3d_b, swin3d_s, swin3d_t
from torchvision.models.video.resnet import (
    BasicBlock,
    Conv3DNoTemporal,
    Conv3DSimple,
    VideoResNet,
)
from torchvision.models.video.swin_transformer import SwinTransformer3d
from torchvision.ops import FrozenBatchNorm2d

from rvos.errors import ConfigError
from rvos.models.weights import load_state_file, resolve_weights

WEIGHTS_KEY = "model.backbone.weights"


@dataclass(frozen=True)
class _Family:
    """How a torchvision network splits into a stem and four stages (module paths), the layout
    its features travel in, ReferFormer's default number of frozen stages, and whether each
    output map gets a LayerNorm of its own."""

    stages: tuple[tuple[str, ...], ...]
    layout: str  # "nchw" (CNN), "nhwc" (Swin), "nthwc" (Video Swin), "ncthw" (video CNN)
    frozen_stages: int
    norm_layer: type[nn.Module] | None = None
    out_norms: bool = False


# Deformable-DETR and ReferFormer freeze BatchNorm, the stem and layer1 of ResNets.
_RESNET = _Family(
    stages=(("conv1", "bn1", "relu", "maxpool"), *((f"layer{i}",) for i in range(1, 5))),
    layout="nchw",
    frozen_stages=1,
    norm_layer=FrozenBatchNorm2d,
)
# Swin stages 2-4 start with the patch merging that halves the resolution.
_SWIN = _Family(
    stages=(
        ("features.0",),
        ("features.1",),
        ("features.2", "features.3"),
        ("features.4", "features.5"),
        ("features.6", "features.7"),
    ),
    layout="nhwc",
    frozen_stages=-1,
    out_norms=True,
)
_VIDEO_SWIN = _Family(
    stages=(
        ("patch_embed", "pos_drop"),
        ("features.0",),
        ("features.1", "features.2"),
        ("features.3", "features.4"),
        ("features.5", "features.6"),
    ),
    layout="nthwc",
    frozen_stages=-1,
)
_VIDEO_RESNET = _Family(
    stages=(("stem",), ("layer1",), ("layer2",), ("layer3",), ("layer4",)),
    layout="ncthw",
    frozen_stages=-1,
)
_VIDEO_LAYOUTS = ("nthwc", "ncthw")


def swin_l(*, weights: None = None, **kwargs) -> SwinTransformer:
    """Swin-L (ImageNet-22k's largest Swin, ReferFormer's strongest image backbone), which
    torchvision does not build: its architecture with torchvision's modules, weights from a
    file only."""
    return SwinTransformer(
        patch_size=[4, 4],
        embed_dim=192,
        depths=[2, 2, 18, 2],
        num_heads=[6, 12, 24, 48],
        window_size=[7, 7],
        stochastic_depth_prob=0.3,
        **kwargs,
    )


def video_swin_mini(*, weights: None = None, **kwargs) -> SwinTransformer3d:
    """Video Swin-T at half width (48 channels) and depths (1, 1, 2, 1): a video backbone
    small enough to train from scratch on a CPU, for the demo. Random init or a file only."""
    return SwinTransformer3d(
        patch_size=[2, 4, 4],
        embed_dim=48,
        depths=[1, 1, 2, 1],
        num_heads=[2, 4, 8, 16],
        window_size=[8, 7, 7],
        stochastic_depth_prob=0.1,
        **kwargs,
    )


def video_mc3_mini(*, weights: None = None, **kwargs) -> VideoResNet:
    """MC3 (Tran et al., CVPR 2018: 3-D convolutions in the stem and first stage, 2-D after)
    at ResNet-18 width with one block per stage, and ResNet's stride-4 stem (a max pool after
    the stride-2 convolution) for strides 4-32. Time is never downsampled, so every frame keeps
    its own maps. Its 3x3x3 kernels see where an object was in the neighbouring frames: it
    learns an object's heading from scratch in a few hundred steps, which Video Swin's
    attention does not. CPU-sized, for the demo; random init or a file only."""
    return VideoResNet(BasicBlock, [Conv3DSimple] + [Conv3DNoTemporal] * 3, [1, 1, 1, 1], _mc3_stem)


def _mc3_stem() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(3, 64, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
        nn.BatchNorm3d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
    )


_MODELS: dict[str, tuple[Callable[..., nn.Module], _Family, tuple[int, ...]]] = {
    "resnet18": (resnet18, _RESNET, (64, 128, 256, 512)),
    "resnet34": (resnet34, _RESNET, (64, 128, 256, 512)),
    "resnet50": (resnet50, _RESNET, (256, 512, 1024, 2048)),
    "resnet101": (resnet101, _RESNET, (256, 512, 1024, 2048)),
    "swin_t": (swin_t, _SWIN, (96, 192, 384, 768)),
    "swin_s": (swin_s, _SWIN, (96, 192, 384, 768)),
    "swin_b": (swin_b, _SWIN, (128, 256, 512, 1024)),
    "swin_l": (swin_l, _SWIN, (192, 384, 768, 1536)),
    "video_swin_t": (swin3d_t, _VIDEO_SWIN, (96, 192, 384, 768)),
    "video_swin_s": (swin3d_s, _VIDEO_SWIN, (96, 192, 384, 768)),
    "video_swin_b": (swin3d_b, _VIDEO_SWIN, (128, 256, 512, 1024)),
    "video_swin_mini": (video_swin_mini, _VIDEO_SWIN, (48, 96, 192, 384)),
    "video_mc3_mini": (video_mc3_mini, _VIDEO_RESNET, (64, 128, 256, 512)),
}
MULTISCALE_BACKBONES = tuple(_MODELS)


class MultiScaleBackbone(nn.Module):
    """Runs a torchvision network stage by stage and returns [C2, C3, C4, C5] as (N·T, C, H, W).

    Image backbones take frames (N, 3, H, W), video ones (`video` True) clips (N, T, 3, H, W).
    """

    strides = (4, 8, 16, 32)

    def __init__(
        self,
        net: nn.Module,
        family: _Family,
        channels: tuple[int, ...],
        *,
        state_file: Path | None,
        frozen_stages: int,
        checkpointing: bool,
    ) -> None:
        super().__init__()
        if not -1 <= frozen_stages < len(family.stages):
            raise ValueError(f"frozen_stages must be in [-1, {len(family.stages) - 1}]")
        for name in dict.fromkeys(path.split(".")[0] for s in family.stages for path in s):
            self.add_module(name, getattr(net, name))
        self.family, self.channels, self.checkpointing = family, channels, checkpointing
        self.frozen_stages = frozen_stages
        self.video = family.layout in _VIDEO_LAYOUTS
        if family.out_norms:
            self.out_norms = nn.ModuleList(nn.LayerNorm(c) for c in channels)
        if state_file is not None:
            load_state_file(self, state_file)
        if family is _VIDEO_SWIN:
            _per_frame_patches(self.patch_embed)
        for module in self._frozen_modules():
            module.requires_grad_(False)
        self.train()

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self._enter(x)
        maps = []
        for index, paths in enumerate(self.family.stages):
            modules = [self.get_submodule(path) for path in paths]
            if self.checkpointing and index > 0:
                x = checkpoint(_run, modules, x, use_reentrant=False)
            else:
                x = _run(modules, x)
            if index >= 1:
                level = x if not self.family.out_norms else self.out_norms[index - 1](x)
                maps.append(self._frames(level))
        return maps

    def train(self, mode: bool = True) -> MultiScaleBackbone:
        """Keep frozen stages in eval mode so their dropout and stochastic depth stay off."""
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    def _frozen_modules(self) -> Iterator[nn.Module]:
        for paths in self.family.stages[: self.frozen_stages + 1]:
            yield from (self.get_submodule(path) for path in paths)

    def _enter(self, x: Tensor) -> Tensor:
        """Check the input rank and give video models their (N, 3, T, H, W) layout."""
        rank, shape = (5, "(N, T, 3, H, W)") if self.video else (4, "(N, 3, H, W)")
        if x.dim() != rank:
            raise ValueError(f"expected input {shape}, got shape {tuple(x.shape)}")
        return x.transpose(1, 2) if self.video else x

    def _frames(self, x: Tensor) -> Tensor:
        """A stage output in the (N·T, C, H, W) layout the transformer reads."""
        if self.family.layout == "ncthw":
            x = x.transpose(1, 2)
        if self.video:
            x = x.flatten(0, 1)
        return x if self.family.layout in ("nchw", "ncthw") else x.permute(0, 3, 1, 2)


def _run(modules: list[nn.Module], x: Tensor) -> Tensor:
    for module in modules:
        x = module(x)
    return x


def _per_frame_patches(embed: nn.Module) -> None:
    """Shrink Video Swin's temporal patch size from 2 to 1, as ReferFormer does, so that
    time is never downsampled and every frame keeps its own maps. The pretrained kernel is
    summed over its two frames, which leaves the embedding of a still clip unchanged."""
    old = embed.proj
    size, stride = (1, *old.kernel_size[1:]), (1, *old.stride[1:])
    proj = nn.Conv3d(old.in_channels, old.out_channels, kernel_size=size, stride=stride)
    with torch.no_grad():
        proj.weight.copy_(old.weight.sum(dim=2, keepdim=True))
        proj.bias.copy_(old.bias)
    embed.proj = proj.to(old.weight.device, old.weight.dtype)
    embed.tuple_patch_size = size


def _unknown(name: str) -> str:
    supported = ", ".join(MULTISCALE_BACKBONES)
    return f"unknown multi-scale backbone {name!r}; supported: {supported}"


def multiscale_backbone(
    name: str,
    weights: str | None = None,
    *,
    frozen_stages: int | None = None,
    checkpointing: bool = False,
) -> MultiScaleBackbone:
    """Build a backbone named in MULTISCALE_BACKBONES, offline.

    weights: null (random init), a cached torchvision enum name, or a state-dict file in
    torchvision's layout (for Video Swin that is the Kinetics one, temporal patch size 2).
    frozen_stages: -1 trains everything, k >= 0 freezes the stem and stages 1..k; None takes
    ReferFormer's choice (1 for ResNet, -1 for Swin). checkpointing recomputes stages 1-4 in
    the backward pass (ReferFormer's --use_checkpoint) to save activation memory.
    """
    if name not in _MODELS:
        raise ValueError(_unknown(name))
    builder, family, channels = _MODELS[name]
    resolved = resolve_weights(weights, WEIGHTS_KEY)
    enum = None if resolved is None or isinstance(resolved, Path) else resolved
    file_only = builder in (swin_l, video_swin_mini, video_mc3_mini)  # no torchvision weights exist
    if enum is not None and (file_only or not isinstance(enum, get_model_weights(builder))):
        raise ConfigError(f"params.yaml: {WEIGHTS_KEY} = {weights!r} does not fit {name!r}")
    extra = {} if family.norm_layer is None else {"norm_layer": family.norm_layer}
    return MultiScaleBackbone(
        builder(weights=enum, **extra),
        family,
        channels,
        state_file=resolved if isinstance(resolved, Path) else None,
        frozen_stages=family.frozen_stages if frozen_stages is None else frozen_stages,
        checkpointing=checkpointing,
    )
