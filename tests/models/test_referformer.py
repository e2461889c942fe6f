import pytest
import torch

from rvos.config import BackboneConfig, ModelConfig, ReferFormerConfig, TextEncoderConfig
from rvos.models.build import build_model, get_method
from rvos.models.referformer import ReferFormer

TINY = ReferFormerConfig(hidden_dim=32, enc_layers=1, dec_layers=2, dim_feedforward=64,
                         mask_dim=16, num_queries=3)  # fmt: skip
TEXTS = ["the red square", "a star", "the circle moving left", "the lowest object"]
OUTPUTS = ("pred_logits", "pred_boxes", "pred_masks")


def build(backbone, text_dir):
    cfg = ModelConfig(
        method="referformer",
        backbone=BackboneConfig(name=backbone),
        text_encoder=TextEncoderConfig(weights=str(text_dir), pooling="cls"),
        referformer=TINY,
    )
    torch.manual_seed(0)
    model, criterion = build_model(cfg)
    # Move the weights off ReferFormer's initialisation, whose zeros (sampling offsets,
    # attention weights, the last box layer) leave some parameters with zero gradients.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model, criterion


@pytest.fixture(scope="module")
def referformer(tiny_bert):
    return build("resnet18", tiny_bert)


def frames_for(b, t, h=64, w=96, seed=0):
    return torch.randn(b, t, 3, h, w, generator=torch.Generator().manual_seed(seed))


def check_outputs(out, n, t, q, h, w, layers):
    assert out["pred_logits"].shape == (n, t, q, 1)
    assert out["pred_boxes"].shape == (n, t, q, 4)
    assert out["pred_masks"].shape == (n, t, q, h // 4, w // 4)
    assert len(out["aux_outputs"]) == layers - 1
    for layer in [out, *out["aux_outputs"]]:
        for key in OUTPUTS:
            assert layer[key].shape == out[key].shape, key
            assert torch.isfinite(layer[key]).all(), key
        boxes = layer["pred_boxes"]
        assert ((boxes >= 0) & (boxes <= 1)).all()


def test_forward_shapes_for_k_sentences_per_clip(referformer):
    model, _ = referformer
    assert isinstance(model, ReferFormer)
    model.eval()
    with torch.no_grad():
        out = model(frames_for(2, 3), TEXTS)  # 2 clips x 2 sentences
    check_outputs(out, 4, 3, TINY.num_queries, 64, 96, TINY.dec_layers)
    probs = get_method("referformer").probabilities(out)
    assert probs.shape == (4, 3, 64, 96)
    assert ((probs >= 0) & (probs <= 1)).all()
    with pytest.raises(ValueError, match="3 sentences for 2 clips"):
        model(frames_for(2, 1), TEXTS[:3])


def test_k_sentences_equal_the_clip_repeated_once_per_sentence(referformer):
    model, _ = referformer
    model.eval()
    frames = frames_for(2, 2, seed=1)
    with torch.no_grad():
        shared = model(frames, TEXTS)  # clip 0 with sentences 0, 1; clip 1 with 2, 3
        repeated = model(frames.repeat_interleave(2, 0), TEXTS)  # four clips, one sentence each
        alone = model(frames[1:], TEXTS[3:])
    for key in OUTPUTS:
        for a, b in ((shared, repeated), (shared["aux_outputs"][0], repeated["aux_outputs"][0])):
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(shared[key][3], alone[key][0], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(shared["pred_masks"][0], shared["pred_masks"][1])  # text matters
    assert not torch.allclose(shared["pred_masks"][1], shared["pred_masks"][2])  # and the clip


def test_every_trainable_parameter_gets_a_gradient_and_the_text_encoder_none(referformer):
    model, criterion = referformer
    model.train()
    torch.manual_seed(2)
    frames = frames_for(2, 2, seed=2)
    masks = torch.zeros(4, 2, 64, 96)
    masks[:, :, 10:40, 20:60] = 1
    masks[1, 1] = 0  # absent in one frame
    out = model(frames, TEXTS)
    check_outputs(out, 4, 2, TINY.num_queries, 64, 96, TINY.dec_layers)
    losses = criterion(out, masks)
    assert set(losses) == set(criterion.weight_dict)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(criterion.weight_dict[k] * v for k, v in losses.items()).backward()
    text = dict(model.text_encoder.named_parameters())
    assert text and all(not p.requires_grad and p.grad is None for p in text.values())
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    stem = frozen - {f"text_encoder.{n}" for n in text}  # ResNet's stem and layer1 stay frozen
    assert stem and all(n.startswith(("backbone.conv1.", "backbone.layer1.")) for n in stem)
    for name, param in trainable.items():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    model.zero_grad(set_to_none=True)


def hand_outputs():
    """Two sentences, 3 frames, 4 queries, 4 x 6 mask logits; query q's masks are q - 1.5
    everywhere, except that the expected pick's masks are +5 on the left half, -5 on the right.

    Sentence 0: query 1 has the best clip mean of sigmoid scores, yet is the best in no frame.
    Sentence 1: query 2 beats query 0 on mean probability (0.731 against 0.666) although
    query 0's mean logit is higher (2 against 1).
    """
    logits = torch.tensor(
        [
            [[4.0, 0.5, -4.0, -4.0], [-4.0, 0.5, 4.0, -4.0], [-4.0, 0.5, -4.0, 4.0]],
            [[6.0, -3.0, 1.0, -2.0], [6.0, -3.0, 1.0, -2.0], [-6.0, -3.0, 1.0, -2.0]],
        ]
    )[..., None]
    masks = (torch.arange(4.0) - 1.5).view(1, 1, 4, 1, 1).repeat(2, 3, 1, 4, 6)
    halves = torch.tensor([5.0] * 3 + [-5.0] * 3).expand(3, 4, 6)
    masks[0, :, 1], masks[1, :, 2] = halves, halves
    return {"pred_logits": logits, "pred_boxes": torch.rand(2, 3, 4, 4), "pred_masks": masks}


def test_probabilities_take_the_query_with_the_best_clip_mean_score():
    outputs = hand_outputs()
    probs = get_method("referformer").probabilities(outputs)
    assert probs.shape == (2, 3, 16, 24)
    assert ((probs >= 0) & (probs <= 1)).all()
    left = probs[..., :12] > 0.5
    assert left.all() and not (probs[..., 12:] > 0.5).any()  # the +5 / -5 halves, upsampled x4
    # bilinear, half-pixel centres: output column j reads input x = (j + 0.5) / 4 - 0.5
    near = torch.tensor([5 - 10 * 0.375, 5 - 10 * 0.875]).sigmoid()  # x = 2.375 and 2.875
    torch.testing.assert_close(probs[:, :, :, [11, 13]], near.expand(2, 3, 16, 2))
    torch.testing.assert_close(probs[..., 0], torch.full((2, 3, 16), torch.tensor(5.0).sigmoid()))
    outputs["pred_logits"][0, :, 3] = 3.0  # now query 3 wins sentence 0: masks 1.5 everywhere
    probs = get_method("referformer").probabilities(outputs)
    torch.testing.assert_close(probs[0], torch.full((3, 16, 24), torch.tensor(1.5).sigmoid()))


@pytest.mark.parametrize("backbone", ["video_swin_t", "video_mc3_mini"])
def test_video_backbone_forward_and_backward(tiny_bert, backbone):
    model, criterion = build(backbone, tiny_bert)
    assert model.backbone.video
    model.train()
    torch.manual_seed(3)
    out = model(frames_for(1, 2, 64, 64, seed=3), TEXTS[:2])
    check_outputs(out, 2, 2, TINY.num_queries, 64, 64, TINY.dec_layers)
    masks = torch.zeros(2, 2, 64, 64)
    masks[:, :, 8:40, 16:48] = 1
    losses = criterion(out, masks)
    sum(criterion.weight_dict[k] * v for k, v in losses.items()).backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith(("backbone.patch_embed.", "backbone.stem.")) for n in trainable)
    for name, param in trainable.items():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    model.eval()
    frames = frames_for(1, 2, 64, 64, seed=4)
    with torch.no_grad():
        two, one = model(frames, TEXTS[:2]), model(frames, TEXTS[1:2])
    for key in OUTPUTS:  # mask logits reach ~8 here; float32 sums differ by ~5e-4 between
        # batch shapes (in float64 the two agree to 1e-12)
        torch.testing.assert_close(two[key][1], one[key][0], rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize("video_backbone", ["video_swin_t", "video_mc3_mini"])
def test_only_a_video_backbone_sees_which_frame_came_first(referformer, tiny_bert, video_backbone):
    """ReferFormer's position encodings are 2-D and its pyramid attends over the clip's frames
    as a set, so with an image backbone a reversed clip gives the reversed outputs: "moving
    left" and "moving right" look alike. Video Swin's relative position bias is signed in time,
    and so are MC3's 3-D kernels."""
    frames = frames_for(1, 3, seed=5)
    video_model, _ = build(video_backbone, tiny_bert)
    for model in (referformer[0], video_model):
        model.eval()
    with torch.no_grad():
        image = referformer[0](frames, TEXTS[:1]), referformer[0](frames.flip(1), TEXTS[:1])
        video = video_model(frames, TEXTS[:1]), video_model(frames.flip(1), TEXTS[:1])
    for key in OUTPUTS:
        forward, backward = image
        torch.testing.assert_close(forward[key], backward[key].flip(1), rtol=1e-4, atol=1e-4)
    forward, backward = video  # the image backbone's differences are ~4e-6
    assert (forward["pred_masks"] - backward["pred_masks"].flip(1)).abs().max() > 1e-3
