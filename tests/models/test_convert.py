import argparse
import json
from pathlib import Path

import pytest
import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

from rvos.config import BackboneConfig, ModelConfig, ReferFormerConfig, TextEncoderConfig
from rvos.engine.checkpoint import load_model_state
from rvos.errors import CheckpointError
from rvos.models.build import build_model
from rvos.models.convert import convert_referformer, is_official, read_official

# Names and shapes of the official ReferFormer state dict (resnet50, --with_box_refine --binary,
# RoBERTa-base text encoder), in state-dict order.
KEYS = Path(__file__).parent / "fixtures" / "referformer_r50_keys.json"
TWIN = "transformer.decoder.bbox_embed."  # the decoder's alias of the box heads
TEXT = "text_encoder."
SENTENCES = ["a red car on the left", "the dog jumping over the fence", "the small brown dog"]


@pytest.fixture(scope="module")
def shapes():
    return json.loads(KEYS.read_text())


@pytest.fixture(scope="module")
def roberta(tmp_path_factory, shapes):
    """A RoBERTa directory whose weights have the checkpoint's text-encoder shapes; its
    byte-level BPE vocabulary is trained here (the token ids only need to fit the embedding)."""
    directory = tmp_path_factory.mktemp("roberta")
    bpe = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(SENTENCES, vocab_size=300, min_frequency=1, special_tokens=specials)
    bpe.save_model(str(directory))
    tokenizer = RobertaTokenizerFast(
        vocab=str(directory / "vocab.json"), merges=str(directory / "merges.txt")
    )
    tokenizer.save_pretrained(directory)
    vocab, hidden = shapes[f"{TEXT}embeddings.word_embeddings.weight"]
    layers = {k.split(".")[3] for k in shapes if k.startswith(f"{TEXT}encoder.layer.")}
    config = RobertaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=len(layers),
        num_attention_heads=hidden // 64,
        intermediate_size=shapes[f"{TEXT}encoder.layer.0.intermediate.dense.weight"][0],
        max_position_embeddings=shapes[f"{TEXT}embeddings.position_embeddings.weight"][0],
        type_vocab_size=shapes[f"{TEXT}embeddings.token_type_embeddings.weight"][0],
        pad_token_id=tokenizer.pad_token_id,
    )
    RobertaModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def official(shapes):
    """Random tensors under the official names; the decoder's box heads are the same tensors
    as the top-level ones, as in a checkpoint saved with box refinement."""
    g = torch.Generator().manual_seed(0)
    state = {
        k: torch.randn(shape, generator=g) for k, shape in shapes.items() if not k.startswith(TWIN)
    }
    for key in shapes:
        if key.startswith(TWIN):
            state[key] = state[key.removeprefix("transformer.decoder.")]
    return {key: state[key] for key in shapes}


@pytest.fixture(scope="module")
def model(roberta):
    cfg = ModelConfig(
        method="referformer",
        backbone=BackboneConfig(name="resnet50"),
        text_encoder=TextEncoderConfig(weights=str(roberta), pooling="pooler"),
        referformer=ReferFormerConfig(),
    )
    return build_model(cfg)[0]


def test_fixture_is_the_official_layout(shapes):
    assert len(shapes) == 804 and is_official(shapes)
    assert sum(k.startswith(TWIN) for k in shapes) == 4 * 3 * 2
    assert shapes["controller.layers.2.weight"] == [2153, 256]
    assert shapes[f"{TEXT}embeddings.word_embeddings.weight"] == [50265, 768]


def test_converted_checkpoint_loads_strictly_with_the_same_tensors(model, official):
    state = convert_referformer(official, model, "resnet50")
    assert len(state) == len(official) - 24  # the aliases are dropped
    assert {id(v) for v in state.values()} == {
        id(v) for k, v in official.items() if not k.startswith(TWIN)
    }  # every tensor kept once, none made up
    load_model_state(model, state, "official.pth")
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    renamed = {
        "backbone.0.body.conv1.weight": "backbone.conv1.weight",
        "backbone.0.body.layer3.5.bn2.running_var": "backbone.layer3.5.bn2.running_var",
        "backbone.0.body.layer4.0.downsample.0.weight": "backbone.layer4.0.downsample.0.weight",
        f"{TEXT}embeddings.word_embeddings.weight":
            "text_encoder.language_model.embeddings.word_embeddings.weight",
        f"{TEXT}encoder.layer.11.output.dense.weight":
            "text_encoder.language_model.encoder.layer.11.output.dense.weight",
        f"{TEXT}pooler.dense.bias": "text_encoder.language_model.pooler.dense.bias",
        "controller.layers.0.weight": "mask_head.controller.layers.0.weight",
        "controller.layers.2.bias": "mask_head.controller.layers.2.bias",
        "bbox_embed.3.layers.2.bias": "bbox_embed.3.layers.2.bias",
        f"{TWIN}1.layers.0.weight": "bbox_embed.1.layers.0.weight",
        "class_embed.2.weight": "class_embed.2.weight",
        "input_proj.3.0.weight": "input_proj.3.0.weight",
        "transformer.decoder.layers.3.cross_attn.sampling_offsets.weight":
            "transformer.decoder.layers.3.cross_attn.sampling_offsets.weight",
        "pixel_decoder.cross_attn_1.self_attn.in_proj_weight":
            "pixel_decoder.cross_attn_1.self_attn.in_proj_weight",
    }  # fmt: skip
    for old, new in renamed.items():
        assert torch.equal(loaded[new], official[old]), (old, new)


def test_position_ids_of_older_transformers_are_dropped(model, official):
    older = {**official, f"{TEXT}embeddings.position_ids": torch.arange(514)[None]}
    state = convert_referformer(older, model, "resnet50")
    assert not any(k.endswith("position_ids") for k in state)
    load_model_state(model, state, "older.pth")


def test_inconsistent_decoder_box_heads_are_rejected(model, official):
    key = f"{TWIN}2.layers.0.weight"
    changed = {**official, key: official[key] + 1e-3}
    with pytest.raises(CheckpointError, match=f"{key} differs from bbox_embed.2.layers.0.weight"):
        convert_referformer(changed, model, "resnet50")
    orphan = {k: v for k, v in official.items() if k != "bbox_embed.2.layers.0.weight"}
    with pytest.raises(CheckpointError, match="inconsistent"):
        convert_referformer(orphan, model, "resnet50")
    with pytest.raises(CheckpointError, match="no ReferFormer conversion for backbone 'vgg16'"):
        convert_referformer(official, model, "vgg16")


def test_read_official_reads_the_training_script_format(tmp_path):
    state = {
        "backbone.0.body.conv1.weight": torch.randn(4, 3, 7, 7),
        "query_embed.weight": torch.ones(5, 2),
    }
    args = argparse.Namespace(backbone="resnet50", lr=1e-4, binary=True, lr_drop=[3, 5])
    layer = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-4)
    layer(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, [3, 5])  # milestones: a Counter
    checkpoint = {
        "model": state,
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": schedule.state_dict(),
        "epoch": 5,
        "args": args,
    }
    torch.save(checkpoint, tmp_path / "checkpoint.pth")
    read = read_official(tmp_path / "checkpoint.pth")
    assert read.keys() == state.keys() and all(torch.equal(read[k], state[k]) for k in state)
    torch.save(state, tmp_path / "bare.pth")  # a bare state dict is read as it is
    assert read_official(tmp_path / "bare.pth").keys() == state.keys()


def test_read_official_rejects_other_checkpoints(tmp_path):
    torch.save({"model": {"layer.weight": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a ReferFormer checkpoint"):
        read_official(tmp_path / "other.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(CheckpointError, match="not a ReferFormer checkpoint"):
        read_official(tmp_path / "tensor.pth")
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot load the checkpoint"):
        read_official(tmp_path / "broken.pth")


class _OpensAFile:
    """Unpickling this object calls open(marker, "w")."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_read_official_never_runs_code_from_the_file(tmp_path):
    marker = tmp_path / "marker"
    state = {"backbone.0.body.conv1.weight": torch.zeros(1), "hook": _OpensAFile(marker)}
    torch.save({"model": state, "args": argparse.Namespace(lr=1.0)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="cannot load the checkpoint"):
        read_official(tmp_path / "evil.pth")
    assert not marker.exists()
    torch.load(tmp_path / "evil.pth", weights_only=False)  # what an unrestricted load would do
    assert marker.exists()
