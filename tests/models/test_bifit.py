import argparse
import json
from pathlib import Path

import pytest
import torch

from rvos.config import (
    BackboneConfig,
    BifitConfig,
    ModelConfig,
    ReferFormerConfig,
    TextEncoderConfig,
)
from rvos.engine.checkpoint import load_trained_model
from rvos.errors import CheckpointError, ConfigError
from rvos.models.bifit import Bifit, InterFrameInteraction
from rvos.models.build import build_model
from rvos.models.convert import convert_bifit, convert_referformer
from rvos.models.transformer import inverse_sigmoid

TINY = ReferFormerConfig(hidden_dim=32, enc_layers=1, dec_layers=2, dim_feedforward=64,
                         mask_dim=16, num_queries=3)  # fmt: skip
TEXTS = ["the red square", "a star", "the circle moving left", "the lowest object"]
OUTPUTS = ("pred_logits", "pred_boxes", "pred_masks")
# Names and shapes of the official BIFIT state dict (resnet50, --with_box_refine --binary,
# RoBERTa-base text encoder, --query_enc_layers 1), in state-dict order.
KEYS = Path(__file__).parent / "fixtures" / "bifit_r50_keys.json"
ROBERTA_CONFIG = Path(__file__).parents[2] / "configs" / "roberta-base"


def tiny_config(text_dir, **bifit):
    return ModelConfig(
        method="bifit",
        backbone=BackboneConfig(name="resnet18"),
        text_encoder=TextEncoderConfig(weights=str(text_dir), pooling="cls"),
        referformer=TINY,
        bifit=BifitConfig(**bifit),
        input_size=(64, 96),
    )


def build(text_dir, **bifit):
    torch.manual_seed(0)
    model, criterion = build_model(tiny_config(text_dir, **bifit))
    g = torch.Generator().manual_seed(1)  # off the zero inits, as in test_referformer.py
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model.eval(), criterion


@pytest.fixture(scope="module")
def bifit(tiny_bert):
    return build(tiny_bert)


def frames_for(b, t, seed=0):
    return torch.randn(b, t, 3, 64, 96, generator=torch.Generator().manual_seed(seed))


def test_interframe_mixes_the_frames_of_a_clip_both_ways_and_never_across_clips():
    torch.manual_seed(0)
    module = InterFrameInteraction(32, 4, 64, dropout=0.0).eval()
    queries = torch.randn(2 * 3, 4, 32)  # 2 clips x 3 frames, 4 queries
    with torch.no_grad():
        out = module(queries, frames=3)
        for changed in (0, 2):  # the first frame (forwards in time), the last (backwards)
            other = queries.clone()
            other[changed] += 1.0
            moved = (module(other, frames=3) - out).abs().amax((1, 2))  # per frame
            assert all(moved[f] > 1e-3 for f in range(3)), moved  # every frame of clip 0
            assert (moved[3:] == 0).all()  # clip 1 untouched


def test_interframe_is_equivariant_to_the_order_of_frames():
    torch.manual_seed(0)
    module = InterFrameInteraction(32, 4, 64, dropout=0.0, num_layers=2).eval()
    queries = torch.randn(2 * 4, 3, 32)
    order = torch.tensor([2, 0, 3, 1])
    permuted = queries.view(2, 4, 3, 32)[:, order].reshape(8, 3, 32)
    with torch.no_grad():
        out = module(queries, frames=4).view(2, 4, 3, 32)
        out_permuted = module(permuted, frames=4).view(2, 4, 3, 32)
    torch.testing.assert_close(out_permuted, out[:, order], rtol=1e-5, atol=1e-5)


def test_every_decoder_layer_output_and_box_come_after_the_interaction(bifit):
    model, _ = bifit
    calls, hs = [], []
    hooks = [
        model.interframe.register_forward_hook(lambda m, i, o: calls.append(o)),
        model.transformer.register_forward_hook(lambda m, i, o: hs.append(o[0])),
    ]
    with torch.no_grad():
        out = model(frames_for(1, 3), TEXTS[:2])
    for hook in hooks:
        hook.remove()
    assert len(calls) == TINY.dec_layers  # one shared module, after every layer
    for layer in range(TINY.dec_layers):
        assert torch.equal(calls[layer], hs[0][layer])
    queries = calls[-1].unflatten(0, (2, 3))  # (B·K, T, Q, C)
    previous = out["aux_outputs"][-1]["pred_boxes"]
    box = (model.bbox_embed[-1](queries) + inverse_sigmoid(previous)).sigmoid()
    torch.testing.assert_close(out["pred_boxes"], box)
    assert torch.equal(out["pred_logits"], model.class_embed[-1](queries))


def test_the_sentence_reads_the_clip_and_the_visual_fusion_the_encoders_words(bifit):
    model, _ = bifit
    refined, pooled, fused_words = [], [], []
    hooks = [
        model.text_fusion_module.register_forward_hook(lambda m, i, o: refined.append(o)),
        model.poolout_module.register_forward_hook(lambda m, i, o: pooled.append(i[0])),
        model.fusion_module.register_forward_hook(lambda m, i, o: fused_words.append(i[1])),
    ]
    with torch.no_grad():
        model(frames_for(1, 2, seed=1), TEXTS[:1])
        model(frames_for(1, 2, seed=2), TEXTS[:1])
        words = model.resizer(model.text_encoder(TEXTS[:1]).words)
    for hook in hooks:
        hook.remove()
    levels = len(model.input_proj)
    assert len(refined) == len(fused_words) == 2 * levels  # one step per level
    # the words after the first level, for the same text and two clips
    first, other = refined[0], refined[levels]
    assert (first - other).abs().max() > 1e-3 * first.abs().max()
    assert torch.equal(pooled[0], refined[levels - 1])  # the sentence: the refined words
    assert all(torch.equal(w, words) for w in fused_words)  # the early fusion: the encoder's


def test_k_sentences_of_different_lengths_equal_each_alone(bifit):
    model, _ = bifit
    frames = frames_for(2, 3, seed=3)
    with torch.no_grad():
        shared = model(frames, TEXTS)  # the padded words of short sentences change nothing
        alone = [model(frames[i // 2 : i // 2 + 1], TEXTS[i : i + 1]) for i in (1, 2)]
    for key in OUTPUTS:
        torch.testing.assert_close(shared[key][1], alone[0][key][0], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(shared[key][2], alone[1][key][0], rtol=1e-4, atol=1e-4)


def test_every_trainable_parameter_gets_a_gradient(bifit):
    model, criterion = bifit
    assert isinstance(model, Bifit) and not hasattr(model, "sentence_resizer")
    model.train()
    torch.manual_seed(2)
    masks = torch.zeros(4, 3, 64, 96)
    masks[:, :, 10:40, 20:60] = 1
    out = model(frames_for(2, 3, seed=4), TEXTS)
    losses = criterion(out, masks)
    sum(criterion.weight_dict[k] * v for k, v in losses.items()).backward()
    model.eval()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    own = [n for n in trainable if n.startswith(("interframe.", "text_fusion_", "poolout_"))]
    assert len(own) == 12 + 4 + 2
    for name, param in trainable.items():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    model.zero_grad(set_to_none=True)


def test_interframe_layers_setting(tiny_bert):
    model, _ = build_model(tiny_config(tiny_bert, interframe_layers=0))
    assert len(model.interframe.layers) == 0 and model._interaction(3) is None
    with pytest.raises(ConfigError, match="model.bifit.interframe_layers = -1"):
        build_model(tiny_config(tiny_bert, interframe_layers=-1))


def zeros_like_official(shapes):
    """The official state dict as zero tensors that take no memory; the decoder's box heads
    are the same tensors as the top-level ones, as box refinement saves them."""
    state = {k: torch.zeros(()).expand(shape) for k, shape in shapes.items()}
    for key in shapes:
        if key.startswith("transformer.decoder.bbox_embed."):
            state[key] = state[key.removeprefix("transformer.decoder.")]
    return state


def test_the_official_resnet50_layout_converts_to_the_paper_configuration():
    shapes = json.loads(KEYS.read_text())
    cfg = ModelConfig(
        method="bifit",
        backbone=BackboneConfig(name="resnet50"),
        text_encoder=TextEncoderConfig(weights=str(ROBERTA_CONFIG)),
        referformer=ReferFormerConfig(),
    )
    with torch.device("meta"):
        model, _ = build_model(cfg, load_weights=False)
    official = zeros_like_official(shapes)
    state = convert_bifit(official, model, "resnet50")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in state.items()} == expected  # a strict load
    assert len(state) == len(shapes) - 24  # only the decoder's alias of the box heads goes
    renamed = {
        "transformer.decoder.decoder_layers.3.cross_attn.value_proj.weight":
            "transformer.decoder.layers.3.cross_attn.value_proj.weight",
        "transformer.decoder.query_encoder_layers.0.self_attn.in_proj_weight":
            "interframe.layers.0.self_attn.in_proj_weight",
        "transformer.decoder.query_encoder_layers.0.norm2.bias": "interframe.layers.0.norm2.bias",
        "text_fusion_module.multihead_attn.out_proj.weight":
            "text_fusion_module.multihead_attn.out_proj.weight",
        "poolout_module.dense.weight": "poolout_module.dense.weight",
        "text_encoder.pooler.dense.weight": "text_encoder.language_model.pooler.dense.weight",
    }  # fmt: skip
    for old, new in renamed.items():
        assert state[new] is official[old], (old, new)
    with pytest.raises(CheckpointError, match="a BIFIT checkpoint .* model.method: bifit"):
        convert_referformer(official, model, "resnet50")
    referformer = {
        k.replace("decoder.decoder_layers.", "decoder.layers."): v
        for k, v in official.items()
        if not k.startswith(("transformer.decoder.query_", "text_fusion_", "poolout_"))
    }
    with pytest.raises(CheckpointError, match="not a BIFIT checkpoint"):
        convert_bifit(referformer, model, "resnet50")
    early = {**official, "text_fusion_module.ln_1.weight": torch.zeros(256)}
    with pytest.raises(CheckpointError, match="first code version"):
        convert_bifit(early, model, "resnet50")


def official_names(state: dict) -> dict:
    """An rvos (ResNet) Bifit state dict under the official code's names."""
    prefixes = {
        "backbone.": "backbone.0.body.",
        "text_encoder.language_model.": "text_encoder.",
        "mask_head.controller.": "controller.",
        "transformer.decoder.layers.": "transformer.decoder.decoder_layers.",
        "interframe.layers.": "transformer.decoder.query_encoder_layers.",
    }
    official = {}
    for key, value in state.items():
        for ours, theirs in prefixes.items():
            if key.startswith(ours):
                key = theirs + key.removeprefix(ours)
                break
        official[key] = value
        if key.startswith("bbox_embed."):
            official["transformer.decoder." + key] = value
    return official


def test_a_released_checkpoint_file_loads_through_the_registry(bifit, tiny_bert, tmp_path):
    model, _ = bifit
    path = tmp_path / "checkpoint.pth"
    args = argparse.Namespace(backbone="resnet18", query_enc_layers=1)
    torch.save({"model": official_names(model.state_dict()), "args": args}, path)
    loaded, _ = load_trained_model(path, tiny_config(tiny_bert))
    frames = frames_for(1, 2, seed=5)
    with torch.no_grad():
        ours, theirs = model(frames, TEXTS[:1]), loaded.eval()(frames, TEXTS[:1])
    for key in OUTPUTS:
        assert torch.equal(ours[key], theirs[key]), key
    torch.save({"model": {"backbone.0.body.conv1.weight": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match=f"{path}: not a BIFIT checkpoint"):
        load_trained_model(path, tiny_config(tiny_bert))
