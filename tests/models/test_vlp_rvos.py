import json
from pathlib import Path

import open_clip
import pytest
import torch
from open_clip.model import convert_to_custom_text_state_dict

from rvos.cli import build_architecture, read_model_config
from rvos.config import ModelConfig, ReferFormerConfig, VlpRvosConfig
from rvos.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from rvos.errors import CheckpointError, ConfigError
from rvos.models.build import build_model
from rvos.models.clip_vit import ClipText, ClipVision, build_clip
from rvos.models.vlp_rvos import CubeFrameAttention, VlpRvos

TINY_CLIP = "rvos-vlp-tiny-clip"
HEAD = ReferFormerConfig(hidden_dim=32, nheads=4, enc_layers=1, dec_layers=2, dim_feedforward=64,
                         mask_dim=16, num_queries=3)  # fmt: skip
TEXTS = ["the red square", "a star", "the circle moving left", "the lowest object"]
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "vlp_rvos"


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny open_clip CLIP registered from a JSON config, and its checkpoint file."""
    directory = tmp_path_factory.mktemp("vlp-clip")
    config = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "patch_size": 16, "layers": 2, "width": 32,
                       "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                     "layers": 1},
    }  # fmt: skip
    (directory / f"{TINY_CLIP}.json").write_text(json.dumps(config))
    open_clip.add_model_config(directory / f"{TINY_CLIP}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_CLIP).eval()
    torch.save(model.state_dict(), directory / "clip.pt")
    return model, directory / "clip.pt"


def settings(weights=None, **overrides) -> VlpRvosConfig:
    values = dict(clip_model=TINY_CLIP, weights=weights and str(weights), language_prompts=2,
                  vision_prompts=2, temporal_prompts=2, prompt_dim=16, cross_attention_dim=16,
                  reasoning_layers=1, cube_size=2, shallow_layer=0)  # fmt: skip
    return VlpRvosConfig(**{**values, **overrides})


def build(weights=None, **overrides):
    cfg = ModelConfig(method="vlp_rvos", vlp_rvos=settings(weights, **overrides),
                      referformer=HEAD, input_size=(64, 96))  # fmt: skip
    torch.manual_seed(0)
    model, criterion = build_model(cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # off the zero initialisations (cross-attention outputs, offsets)
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model, criterion


def frames_for(b, t, h=64, w=96, seed=0):
    return torch.randn(b, t, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_one_checkpoint_file_loads_both_towers_frozen(tiny_clip):
    model, path = tiny_clip
    clip = build_clip(settings(path))
    saved = convert_to_custom_text_state_dict(model.state_dict())
    for prefix, tower in (("visual.", clip.visual), ("text.", clip.text)):
        for key, value in tower.state_dict().items():
            torch.testing.assert_close(value, saved[prefix + key], rtol=0, atol=0)
        assert not any(p.requires_grad for p in tower.parameters())
    assert all(p.requires_grad for p in build_clip(settings(freeze_clip=False)).text.parameters())


def test_without_prompts_or_new_modules_the_towers_are_clips(tiny_clip):
    model, path = tiny_clip
    clip = build_clip(settings(path))
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    clip_mean, clip_std = (torch.tensor(v).view(1, 3, 1, 1) for v in (
        open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD))  # fmt: skip
    vit = ClipVision(
        clip.visual, 16, cross_attention_dim=None, temporal_capture=False, shallow_layer=0
    )
    words, padding = torch.zeros(3, 1, 16), torch.zeros(3, 1, dtype=torch.bool)
    with torch.no_grad():
        last, _ = vit((images - mean) / std, 1, words, padding)
        model.visual.output_tokens = True
        _, tokens = model.visual((images - clip_mean) / clip_std)
    expected = (tokens @ model.visual.proj).transpose(1, 2).unflatten(2, (2, 2))
    torch.testing.assert_close(last, expected, rtol=1e-4, atol=1e-5)
    text = ClipText(clip.text, TINY_CLIP)
    with torch.no_grad():
        features = text(TEXTS)
        expected = model.encode_text(open_clip.get_tokenizer(TINY_CLIP)(TEXTS))
    torch.testing.assert_close(features.sentence, expected, rtol=1e-4, atol=1e-5)
    ends = (~features.padding).sum(1) - 1  # the end token closes every sentence's words
    torch.testing.assert_close(features.words[torch.arange(4), ends], features.sentence)


def test_language_prompts_precede_the_words_and_change_them(tiny_clip):
    clip = build_clip(settings(tiny_clip[1]))
    plain = ClipText(clip.text, TINY_CLIP)(TEXTS)
    prompts = torch.randn(3, 32, generator=torch.Generator().manual_seed(0))
    prompted = ClipText(clip.text, TINY_CLIP, prompts=3)(TEXTS, prompts)
    assert torch.equal(prompted.padding, plain.padding)
    assert not torch.allclose(prompted.words, plain.words)
    with pytest.raises(ValueError, match="expected 3 language prompts"):
        ClipText(clip.text, TINY_CLIP, prompts=3)(TEXTS)


@pytest.mark.parametrize("capture", [True, False])
def test_temporal_prompts_are_the_only_path_between_frames(tiny_clip, capture):
    clip = build_clip(settings(tiny_clip[1]))
    vit = ClipVision(
        clip.visual, 16, cross_attention_dim=16, temporal_capture=capture, shallow_layer=0
    )
    with torch.no_grad():
        for p in vit.cross_attn.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(2)) * 0.1)
    g = torch.Generator().manual_seed(3)
    vision, temporal = torch.randn(2, 32, generator=g), torch.randn(2, 32, generator=g)
    words, padding = torch.randn(2, 4, 16, generator=g), torch.zeros(2, 4, dtype=torch.bool)
    clips = frames_for(2, 3).flatten(0, 1)  # two clips of three frames
    changed = clips.clone()
    changed[2] += 1.0  # the last frame of clip 0

    def run(x, prompts=temporal):
        with torch.no_grad():
            return torch.cat(vit(x, 3, words, padding, vision, prompts), 1)

    before, after = run(clips), run(changed)
    assert not torch.allclose(before[2], after[2])
    assert torch.equal(before[3:], after[3:])  # clips never mix
    assert torch.equal(before[0], after[0]) != capture  # other frames: only through capture
    assert torch.equal(run(clips, None)[:2], run(changed, None)[:2])  # no temporal prompts


def test_cube_attention_sees_its_cube_and_frame_attention_its_frame():
    torch.manual_seed(0)
    layer = CubeFrameAttention(8, 2, cube=2).eval()
    x = torch.randn(1, 3, 5, 4, 8)  # 3 frames of 5 x 4: the last row of cubes is padded
    pos = torch.randn(5, 4, 8)
    changed = x.clone()
    changed[0, 2, 4, 3] += torch.randn(8)  # frame 2, the padded bottom-right cube

    def delta(fn):
        with torch.no_grad():
            return (fn(changed, pos) - fn(x, pos)).abs().sum(-1)[0]  # (T, h, w)

    cube = delta(layer.attend_cubes)
    assert (cube[:, 4:, 2:] > 0).all()  # its cube in every frame
    assert (cube[:, :4] == 0).all() and (cube[:, :, :2] == 0).all()  # nothing outside it
    frame = delta(layer.attend_frames)
    assert (frame[2] > 0).all() and (frame[:2] == 0).all()  # its whole frame, no other frame
    both = delta(layer)
    assert (both > 0).all()  # one layer reaches every position of every frame


def test_freeze_policy_trains_prompts_and_new_modules_only(tiny_clip):
    model, criterion = build(tiny_clip[1])
    assert isinstance(model, VlpRvos)
    model.train()
    masks = torch.zeros(4, 2, 64, 96)
    masks[:, :, 10:40, 20:60] = 1
    out = model(frames_for(2, 2), TEXTS)
    losses = criterion(out, masks)
    sum(criterion.weight_dict[k] * v for k, v in losses.items()).backward()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    clip = {f"backbone.vit.visual.{n}" for n, _ in model.backbone.vit.visual.named_parameters()}
    clip |= {f"text_encoder.text.{n}" for n, _ in model.text_encoder.text.named_parameters()}
    assert frozen == clip
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name
    for new in ("prompts.", "backbone.vit.cross_attn.", "fusion.", "reasoning.", "backbone.pyr"):
        assert any(n.startswith(new) for n, p in model.named_parameters() if p.requires_grad)
    unfrozen, _ = build(freeze_clip=False)
    assert all(p.requires_grad for p in unfrozen.parameters())


@pytest.mark.parametrize("patch_size", [16, 14])
def test_k_sentences_equal_the_clip_repeated_once_per_sentence(tiny_clip, patch_size):
    model, _ = build(tiny_clip[1] if patch_size == 16 else None, patch_size=patch_size)
    model.eval()
    frames = frames_for(2, 2, seed=1)
    with torch.no_grad():
        shared = model(frames, TEXTS)
        repeated = model(frames.repeat_interleave(2, 0), TEXTS)
    assert shared["pred_masks"].shape == (4, 2, HEAD.num_queries, 16, 24)
    for key in ("pred_logits", "pred_boxes", "pred_masks"):
        torch.testing.assert_close(shared[key], repeated[key], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(shared["pred_masks"][0], shared["pred_masks"][1])  # the sentence


def test_configuration_and_checkpoint_errors(tiny_clip, tmp_path):
    model, path = tiny_clip
    with pytest.raises(ConfigError, match=r"model\.vlp_rvos\.clip_model = 'ViT-Q-99'.*ViT-B-16"):
        build_clip(settings(clip_model="ViT-Q-99"))
    with pytest.raises(ConfigError, match=r"model\.vlp_rvos\.clip_model = 'RN50'.*CLIP ViT"):
        build_clip(settings(clip_model="RN50"))
    missing = tmp_path / "none.pt"
    with pytest.raises(ConfigError, match=rf"model\.vlp_rvos\.weights = '{missing}': file not"):
        build_clip(settings(missing))
    visual_only = {k: v for k, v in model.state_dict().items() if k.startswith("visual.")}
    torch.save(visual_only, tmp_path / "visual.pt")
    with pytest.raises(CheckpointError, match=r"visual\.pt: .*text tower's text\.\S+ is missing"):
        build_clip(settings(tmp_path / "visual.pt"))
    with pytest.raises(CheckpointError, match=r"clip\.pt: .*has shape"):
        build_clip(settings(path, vision_width=64))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt: cannot load weights"):
        build_clip(settings(tmp_path / "bad.pt"))
    with pytest.raises(ConfigError, match=r"model\.vlp_rvos\.shallow_layer = 2"):
        build(shallow_layer=2)
    with pytest.raises(ConfigError, match=r"model\.vlp_rvos\.language_prompts = 80"):
        build(language_prompts=80)


def test_paper_configuration_builds_without_weights():
    cfg = read_model_config(CONFIGS / "vit_b16.yaml")
    model = build_architecture(cfg)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    clip = sum(p.numel() for p in model.backbone.vit.visual.parameters())
    clip += sum(p.numel() for p in model.text_encoder.text.parameters())
    assert clip > 140e6  # CLIP ViT-B/16: 86M vision, 63M text, frozen
    assert sum(p.numel() for p in model.parameters()) == clip + trainable
