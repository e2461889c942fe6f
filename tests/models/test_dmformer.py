import pytest
import torch

from rvos.config import (
    BackboneConfig,
    DmformerConfig,
    ModelConfig,
    ReferFormerConfig,
    TextEncoderConfig,
)
from rvos.models.build import build_model, get_method
from rvos.models.dmformer import (
    DMFormer,
    InteractionBranch,
    SubjectPerceptron,
    WeightedFusion,
    uniform_log_weights,
    weighted_mean,
)
from rvos.models.fpn import VisionLanguageFusion
from rvos.models.position import sine_1d
from rvos.models.transformer import DeformableTransformer

D, HEADS = 32, 4
TINY = ReferFormerConfig(hidden_dim=D, nheads=HEADS, enc_layers=1, dec_layers=2,
                         dim_feedforward=64, mask_dim=16, num_queries=3)  # fmt: skip
TEXTS = ["the red square moving left", "a star", "the circle", "the lowest object"]


def perturb(module, seed=1, scale=0.05):
    """Move the weights off their zero initialisations (the perceptron's scorer, sampling
    offsets), which would hide what a part reads."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * scale)
    return module


def one_hot_log_weights(length: int, index: int, padding: torch.Tensor) -> torch.Tensor:
    scores = torch.full((1, length), -1e4)
    scores[0, index] = 0.0
    return scores.masked_fill(padding, float("-inf")).log_softmax(-1)


@pytest.fixture(scope="module")
def dmformer(tiny_bert):
    cfg = ModelConfig(
        method="dmformer",
        backbone=BackboneConfig(name="resnet18"),
        text_encoder=TextEncoderConfig(weights=str(tiny_bert), pooling="cls"),
        referformer=TINY,
        dmformer=DmformerConfig(interactions=2, language_ffn=48),
        input_size=(64, 96),
    )
    torch.manual_seed(0)
    model, criterion = build_model(cfg)
    return perturb(model, scale=0.02), criterion


def frames_for(b, t, seed=0):
    return torch.randn(b, t, 3, 64, 96, generator=torch.Generator().manual_seed(seed))


def test_subject_weights_sum_to_one_over_the_words_and_ignore_padding():
    torch.manual_seed(0)
    perceptron = perturb(SubjectPerceptron(D, HEADS, 48, dropout=0.0)).eval()
    words = torch.randn(2, 6, D)
    padding = torch.zeros(2, 6, dtype=torch.bool)
    padding[1, 4:] = True
    weights = perceptron(words, padding).exp()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))
    assert (weights[1, 4:] == 0).all() and (weights[~padding] > 0).all()
    assert weights[0].std() > 1e-3  # a learned score, not a uniform average
    garbage = words.clone()
    garbage[1, 4:] = 100 * torch.randn(2, D)  # what padding holds must not matter
    torch.testing.assert_close(perceptron(garbage, padding).exp(), weights)
    alone = perceptron(words[1:, :4], padding[1:, :4]).exp()  # nor how far it is padded
    torch.testing.assert_close(alone[0], weights[1, :4])


def test_uniform_weights_are_referformers_fusion_and_zero_weights_are_never_read():
    torch.manual_seed(0)
    fusion, plain = WeightedFusion(D, HEADS).eval(), VisionLanguageFusion(D, HEADS).eval()
    plain.load_state_dict(fusion.state_dict())
    visual, words = torch.randn(2, 9, D), torch.randn(2, 5, D)
    padding = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    word_pos = sine_1d(padding, D)
    uniform = uniform_log_weights(padding, words.dtype)
    torch.testing.assert_close(
        fusion(visual, words, word_pos, uniform), plain(visual, words, word_pos, padding)
    )
    subject = one_hot_log_weights(5, 1, padding[:1])
    other = words.clone()
    other[0, [0, 2, 3, 4]] = torch.randn(4, D)
    one = fusion(visual[:1], words[:1], word_pos[:1], subject)
    torch.testing.assert_close(one, fusion(visual[:1], other[:1], word_pos[:1], subject))
    other[0, 1] = torch.randn(D)
    assert not torch.allclose(one, fusion(visual[:1], other[:1], word_pos[:1], subject))


def branch_inputs(frames=2, levels=((4, 6), (2, 3)), length=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(levels)
    starts = torch.cat((shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]))
    tokens = int(shapes.prod(1).sum())
    src = torch.randn(frames, tokens, D, generator=g)
    pos = torch.randn(frames, tokens, D, generator=g)
    words = torch.randn(1, length, D, generator=g)
    return src, pos, shapes, starts, words


def test_subject_branch_reads_only_the_subject_and_context_branch_every_word():
    """With the subject fixed (a one-hot weight on word 2), rewording the rest of the
    expression leaves the subject branch's output unchanged and changes the context one's."""
    torch.manual_seed(0)
    block = dict(d_model=D, nhead=HEADS, dim_feedforward=64, language_ffn=48, dropout=0.0,
                 levels=2, n_points=2)  # fmt: skip
    branch = perturb(InteractionBranch(2, **block)).eval()
    src, pos, shapes, starts, words = branch_inputs()
    padding = torch.tensor([[False] * 5 + [True]])
    word_pos = sine_1d(padding, D)
    subject = one_hot_log_weights(6, 2, padding)
    context = uniform_log_weights(padding, words.dtype)
    reworded = words.clone()
    reworded[0, [0, 1, 3, 4]] = torch.randn(4, D)

    def run(w, weights):
        out, out_words = branch(src, pos, shapes, starts, w, word_pos, weights, frames=2)
        return out, weighted_mean(out_words, weights)

    for a, b in zip(run(words, subject), run(reworded, subject), strict=True):
        torch.testing.assert_close(a, b)
    for a, b in zip(run(words, context), run(reworded, context), strict=True):
        assert not torch.allclose(a, b, atol=1e-4)
    changed = words.clone()
    changed[0, 2] = torch.randn(D)  # another subject does change it
    assert not torch.allclose(run(words, subject)[0], run(changed, subject)[0], atol=1e-4)


def test_forward_outputs_and_subject_weights(dmformer):
    model, _ = dmformer
    assert isinstance(model, DMFormer) and not hasattr(model, "fusion_module")
    assert len(model.transformer.encoder.layers) == 0  # the branches are the encoder
    assert len(model.context_branch.blocks) == len(model.subject_branch.blocks) == 2
    model.eval()
    with torch.no_grad():
        out = model(frames_for(2, 3), TEXTS)
    assert out["pred_logits"].shape == (4, 3, TINY.num_queries, 1)
    assert out["pred_masks"].shape == (4, 3, TINY.num_queries, 16, 24)
    assert len(out["aux_outputs"]) == TINY.dec_layers - 1
    weights = out["subject_weights"]
    padding = model.text_encoder(TEXTS).padding
    assert weights.shape == padding.shape
    torch.testing.assert_close(weights.sum(-1), torch.ones(4))
    assert (weights[padding] == 0).all()
    probs = get_method("dmformer").probabilities(out)
    assert probs.shape == (4, 3, 64, 96) and ((probs >= 0) & (probs <= 1)).all()
    with torch.no_grad():  # sentence 3 alone with its clip gives the same as in the batch
        alone = model(frames_for(2, 3)[1:], TEXTS[3:])
    torch.testing.assert_close(out["pred_masks"][3], alone["pred_masks"][0], atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("branch", ["context", "subject"])
def test_each_branch_and_the_subject_weights_shape_the_output(dmformer, branch):
    model, _ = dmformer
    model.eval()
    frames, texts = frames_for(1, 2, seed=1), TEXTS[:2]
    with torch.no_grad():
        full = model(frames, texts)["pred_masks"]
        saved = {k: v.clone() for k, v in model.state_dict().items()}
        for part in ("visual", "text"):  # the branch's halves of memory and queries → 0
            norm = getattr(model, f"{branch}_{part}").layer_norm
            norm.weight.zero_()
            norm.bias.zero_()
        without = model(frames, texts)["pred_masks"]
        model.load_state_dict(saved)
        model.subject_perceptron.score.weight.normal_(0, 1.0)  # other subject weights
        reweighted = model(frames, texts)["pred_masks"]
        model.load_state_dict(saved)
        torch.testing.assert_close(model(frames, texts)["pred_masks"], full)
    assert not torch.allclose(full, without, atol=1e-4)
    assert not torch.allclose(full, reweighted, atol=1e-4)


def test_the_subject_perceptron_learns_from_the_segmentation_losses(dmformer):
    model, criterion = dmformer
    model.train()
    torch.manual_seed(2)
    out = model(frames_for(1, 2, seed=2), TEXTS[:2])
    masks = torch.zeros(2, 2, 64, 96)
    masks[:, :, 10:40, 20:60] = 1
    losses = criterion(out, masks)
    sum(criterion.weight_dict[k] * v for k, v in losses.items()).backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    model.zero_grad(set_to_none=True)


def test_transformer_without_encoder_is_required(tiny_bert, dmformer):
    model, _ = dmformer
    with_encoder = DeformableTransformer(d_model=D, nhead=HEADS, num_encoder_layers=1,
                                         num_decoder_layers=2, dim_feedforward=64)  # fmt: skip
    with pytest.raises(ValueError, match="num_encoder_layers=0"):
        DMFormer(model.backbone, model.text_encoder, with_encoder, nheads=HEADS)
