import pytest
import torch
from torchvision.models import mobilenet_v3_large, resnet18

from rvos.errors import CheckpointError, ConfigError
from rvos.models.backbones import BACKBONES, deeplab_backbone


@pytest.mark.parametrize(
    ("name", "stride", "channels"),
    [("resnet18", 8, 128), ("resnet50", 8, 2048), ("mobilenet_v3_large", 16, 960)],
)
def test_output_stride_and_channels(name, stride, channels):
    net, c = deeplab_backbone(name)
    with torch.no_grad():
        out = net.eval()(torch.randn(1, 3, 64, 96))["out"]
    assert c == channels and out.shape == (1, channels, 64 // stride, 96 // stride)


@pytest.mark.parametrize(
    ("name", "builder", "first"),
    [("resnet18", resnet18, "conv1.weight"), ("mobilenet_v3_large", mobilenet_v3_large, None)],
)
def test_weights_from_a_torchvision_state_dict_file(tmp_path, name, builder, first):
    torch.manual_seed(1)
    source = builder()
    path = tmp_path / f"{name}.pth"
    torch.save(source.state_dict(), path)  # includes the ImageNet classifier, which is ignored
    net, _ = deeplab_backbone(name, str(path))
    key = first or "features.0.0.weight"
    assert torch.equal(net.state_dict()[key], source.state_dict()[key])


def test_weights_file_of_another_architecture(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="weights missing"):
        deeplab_backbone("resnet18", str(path))


def test_uncached_torchvision_weights_say_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ConfigError) as err:
        deeplab_backbone("resnet101", "ResNet101_Weights.IMAGENET1K_V1")
    message = str(err.value)
    assert "model.backbone.weights" in message and "never downloads" in message
    assert str(tmp_path / "checkpoints" / "resnet101-63fe2227.pth") in message


def test_unknown_weights_name():
    with pytest.raises(ConfigError, match="expected null, an existing state-dict file"):
        deeplab_backbone("resnet18", "imagenet")


def test_backbone_names_match_config():
    """The config accepts exactly the names some method can build."""
    import typing

    from rvos.config import BackboneConfig
    from rvos.models.multiscale import MULTISCALE_BACKBONES

    hint = typing.get_type_hints(BackboneConfig)["name"]
    assert set(typing.get_args(hint)) == set(BACKBONES) | set(MULTISCALE_BACKBONES)
