import pytest
import torch

from rvos.config import BackboneConfig, ModelConfig
from rvos.models.build import METHODS, build_model, get_method
from rvos.models.losses import MaskLoss, dice_loss


@pytest.fixture(scope="module")
def refvos():
    torch.manual_seed(0)
    cfg = ModelConfig(
        backbone=BackboneConfig(name="resnet18"), fusion_dim=32, atrous_rates=(1, 2, 3)
    )
    return build_model(cfg)


def test_forward_shapes_and_probabilities(refvos):
    model, _ = refvos
    model.eval()
    frames = torch.randn(2, 3, 3, 64, 96)
    with torch.no_grad():
        out = model(frames, ["the red square", "the circle moving left"])
    assert out["pred_masks"].shape == (2, 3, 64, 96)
    probs = get_method("refvos").probabilities(out)
    assert ((probs >= 0) & (probs <= 1)).all()


def test_several_sentences_per_clip_equal_one_clip_per_sentence(refvos):
    model, _ = refvos
    model.eval()
    frames = torch.randn(2, 2, 3, 64, 96)
    texts = ["the red square", "a star", "the circle moving left", "the lowest object"]
    with torch.no_grad():
        shared = model(frames, texts)["pred_masks"]
        alone = [
            model(frames[i // 2 : i // 2 + 1], [text])["pred_masks"][0]
            for i, text in enumerate(texts)
        ]
    assert shared.shape == (4, 2, 64, 96)
    for k in range(4):
        torch.testing.assert_close(shared[k], alone[k], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="3 sentences for 2 clips"):
        model(frames, texts[:3])


def test_every_trainable_parameter_gets_a_gradient(refvos):
    model, criterion = refvos
    model.train()
    frames = torch.randn(2, 2, 3, 64, 96)
    masks = (torch.rand(2, 2, 64, 96) > 0.7).float()
    losses = criterion(model(frames, ["a", "b"]), masks)
    assert set(losses) == set(criterion.weight_dict)
    sum(criterion.weight_dict[k] * v for k, v in losses.items()).backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("text_encoder.") for n in trainable)
    for name, param in trainable.items():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    model.zero_grad()


def test_sentence_changes_the_mask(refvos):
    model, _ = refvos
    model.eval()
    frames = torch.randn(1, 1, 3, 64, 96)
    with torch.no_grad():
        a = model(frames, ["the red square"])["pred_masks"]
        b = model(frames, ["the small blue star moving up"])["pred_masks"]
    assert not torch.allclose(a, b)


def test_frozen_text_encoder_caches_deterministically(refvos):
    encoder = refvos[0].text_encoder
    encoder.train()
    first = encoder(["the red square", "a star"]).sentence
    second = encoder(["a star", "the red square"]).sentence
    assert torch.equal(first[0], second[1]) and not first.requires_grad


def test_dice_and_mask_loss():
    target = torch.zeros(1, 8, 8)
    target[:, 2:6, 2:6] = 1
    perfect = (target * 2 - 1) * 50
    assert dice_loss(perfect, target) < 1e-3
    assert dice_loss(-perfect, target) > 0.9
    losses = MaskLoss()({"pred_masks": perfect[None]}, target[None])
    assert losses["loss_bce"] < 1e-3


def test_registry_names_unknown_method():
    assert "refvos" in METHODS
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        get_method("nope")


def test_mask_loss_leaves_out_frames_without_a_target():
    logits = torch.randn(2, 3, 8, 8)
    masks = (torch.rand(2, 3, 8, 8) > 0.5).float()
    valid = torch.tensor([[False, True, False], [True, True, False]])
    criterion = MaskLoss()
    kept = criterion({"pred_masks": logits}, masks, valid)
    garbage = masks.clone()
    garbage[~valid] = 1 - garbage[~valid]  # whatever the unannotated frames hold
    assert kept == criterion({"pred_masks": logits}, garbage, valid)
    expected = criterion({"pred_masks": logits[valid][:, None]}, masks[valid][:, None])
    for name in kept:
        torch.testing.assert_close(kept[name], expected[name])
    everything = criterion({"pred_masks": logits}, masks, torch.ones(2, 3, dtype=torch.bool))
    assert everything == criterion({"pred_masks": logits}, masks)
