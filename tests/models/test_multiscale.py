import pytest
import torch
from torchvision.models import resnet50
from torchvision.models.video import swin3d_t
from torchvision.ops import FrozenBatchNorm2d

from rvos.errors import CheckpointError, ConfigError
from rvos.models import multiscale
from rvos.models.multiscale import MULTISCALE_BACKBONES, multiscale_backbone

CHANNELS = {
    "resnet18": (64, 128, 256, 512),
    "resnet34": (64, 128, 256, 512),
    "resnet50": (256, 512, 1024, 2048),
    "resnet101": (256, 512, 1024, 2048),
    "swin_t": (96, 192, 384, 768),
    "swin_s": (96, 192, 384, 768),
    "swin_b": (128, 256, 512, 1024),
    "swin_l": (192, 384, 768, 1536),
    "video_swin_t": (96, 192, 384, 768),
    "video_swin_s": (96, 192, 384, 768),
    "video_swin_b": (128, 256, 512, 1024),
    "video_swin_mini": (48, 96, 192, 384),
    "video_mc3_mini": (64, 128, 256, 512),
}
SMALL = ("resnet50", "swin_t", "video_swin_t")


def inputs(net, size=64):
    """Two frames, or one clip of three (odd, so no temporal padding can hide)."""
    generator = torch.Generator().manual_seed(0)
    shape = (1, 3, 3, size, size) if net.video else (2, 3, size, size)
    return torch.randn(shape, generator=generator)


@pytest.mark.parametrize("name", MULTISCALE_BACKBONES)
def test_four_maps_per_frame_at_strides_4_to_32(name):
    net = multiscale_backbone(name).eval()
    x = inputs(net)
    with torch.no_grad():
        maps = net(x)
    frames = 3 if net.video else 2
    assert net.channels == CHANNELS[name] and net.strides == (4, 8, 16, 32)
    assert net.video == name.startswith("video_")
    assert [m.shape for m in maps] == [
        (frames, c, 64 // s, 64 // s) for c, s in zip(CHANNELS[name], net.strides, strict=True)
    ]


def test_resnet_batchnorm_is_frozen_and_the_classifier_dropped():
    net = multiscale_backbone("resnet50")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert isinstance(net.bn1, FrozenBatchNorm2d) and not list(net.bn1.parameters())
    assert "fc.weight" not in net.state_dict()


@pytest.mark.parametrize(
    ("name", "frozen_stages", "frozen"),
    [
        ("resnet50", None, ("conv1", "layer1")),  # ReferFormer's defaults
        ("swin_t", None, ()),
        ("video_swin_t", 2, ("patch_embed", "features.0", "features.1", "features.2")),
        ("video_mc3_mini", 1, ("stem", "layer1")),
    ],
)
def test_gradients_reach_exactly_the_trainable_parameters(name, frozen_stages, frozen):
    net = multiscale_backbone(name, frozen_stages=frozen_stages).train()
    for paths in net.family.stages[: net.frozen_stages + 1]:
        assert not any(net.get_submodule(path).training for path in paths)
    net.eval()  # no stochastic depth, so every trainable parameter gets a gradient
    sum(m.square().mean() for m in net(inputs(net, size=32))).backward()
    for param_name, p in net.named_parameters():
        assert p.requires_grad != param_name.startswith(frozen), param_name
        assert (p.grad is not None) == p.requires_grad, param_name
        assert p.grad is None or p.grad.abs().sum() > 0, param_name


@pytest.mark.parametrize("name", SMALL)
def test_checkpointing_gives_identical_outputs_and_gradients(name, monkeypatch):
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return torch.utils.checkpoint.checkpoint(*args, **kwargs)

    monkeypatch.setattr(multiscale, "checkpoint", spy)
    net = multiscale_backbone(name).train()  # train mode: stochastic depth must replay too
    results = []
    for checkpointing in (False, True):
        net.checkpointing = checkpointing
        net.zero_grad()
        torch.manual_seed(0)
        maps = net(inputs(net, size=32))
        sum(m.square().mean() for m in maps).backward()
        grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.requires_grad}
        results.append((maps, grads))
    assert len(calls) == 4
    (plain, plain_grads), (ckpt, ckpt_grads) = results
    for a, b in zip(plain, ckpt, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert plain_grads.keys() == ckpt_grads.keys()
    for key, grad in plain_grads.items():
        torch.testing.assert_close(grad, ckpt_grads[key], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["resnet50", "swin_t", "video_mc3_mini"])
def test_state_dict_file_round_trip(tmp_path, name):
    torch.manual_seed(1)
    source = multiscale_backbone(name).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(2)
    loaded = multiscale_backbone(name, str(path)).eval()
    x = inputs(source, size=32)
    with torch.no_grad():
        for a, b in zip(source(x), loaded(x), strict=True):
            assert torch.equal(a, b)


def test_resnet_loads_a_torchvision_file_with_batchnorm_and_classifier(tmp_path):
    torch.manual_seed(1)
    source = resnet50()
    path = tmp_path / "resnet50.pth"
    torch.save(source.state_dict(), path)
    net = multiscale_backbone("resnet50", str(path))
    assert torch.equal(net.layer4[2].bn3.running_var, source.layer4[2].bn3.running_var)


def test_video_swin_file_gets_per_frame_patches_that_keep_still_clips(tmp_path):
    torch.manual_seed(1)
    source = swin3d_t().eval()
    path = tmp_path / "swin3d_t.pth"
    torch.save(source.state_dict(), path)
    net = multiscale_backbone("video_swin_t", str(path)).eval()
    assert net.patch_embed.proj.kernel_size == (1, 4, 4)
    assert torch.equal(net.features[6][1].mlp[0].weight, source.features[6][1].mlp[0].weight)
    frame = torch.randn(1, 3, 1, 32, 32)
    with torch.no_grad():
        still = source.patch_embed(frame.repeat(1, 1, 2, 1, 1))
        torch.testing.assert_close(net.patch_embed(frame), still, rtol=1e-5, atol=1e-5)


def test_video_swin_rejects_its_own_per_frame_state_dict(tmp_path):
    path = tmp_path / "video.pth"
    torch.save(multiscale_backbone("video_swin_t").state_dict(), path)
    with pytest.raises(CheckpointError, match="patch_embed.proj.weight has shape"):
        multiscale_backbone("video_swin_t", str(path))


def test_unknown_names_list_the_supported_ones():
    with pytest.raises(ValueError, match="unknown multi-scale backbone 'resnet152'") as err:
        multiscale_backbone("resnet152")
    assert all(supported in str(err.value) for supported in MULTISCALE_BACKBONES)


def test_image_swin_maps_are_layer_normalised_per_level():
    net = multiscale_backbone("swin_t").eval()
    with torch.no_grad():
        for norm in net.out_norms:
            norm.weight.fill_(2.0)
            norm.bias.fill_(3.0)
        maps = net(inputs(net, size=32))
    for level in maps:  # LayerNorm over channels: mean = bias, std = weight
        torch.testing.assert_close(level.mean(1), torch.full_like(level[:, 0], 3.0))
        torch.testing.assert_close(
            level.std(1, unbiased=False), torch.full_like(level[:, 0], 2.0), rtol=1e-3, atol=1e-3
        )
    assert not hasattr(multiscale_backbone("video_swin_t"), "out_norms")


def test_uncached_torchvision_weights_are_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ConfigError, match="never downloads"):
        multiscale_backbone("swin_t", "Swin_T_Weights.IMAGENET1K_V1")


def test_weights_of_another_architecture(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "resnet101-63fe2227.pth").touch()
    with pytest.raises(ConfigError, match="does not fit 'resnet50'"):
        multiscale_backbone("resnet50", "ResNet101_Weights.IMAGENET1K_V1")
    (tmp_path / "checkpoints" / "swin3d_t-7615ae03.pth").touch()
    with pytest.raises(ConfigError, match="does not fit 'video_swin_mini'"):
        multiscale_backbone("video_swin_mini", "Swin3D_T_Weights.KINETICS400_V1")


def test_bad_input_rank_and_frozen_stages():
    with pytest.raises(ValueError, match=r"expected input \(N, T, 3, H, W\)"):
        multiscale_backbone("video_swin_t")(torch.randn(2, 3, 64, 64))
    with pytest.raises(ValueError, match=r"frozen_stages must be in \[-1, 4\]"):
        multiscale_backbone("resnet50", frozen_stages=5)
