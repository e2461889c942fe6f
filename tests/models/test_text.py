import json

import open_clip
import pytest
import torch
from open_clip.model import convert_to_custom_text_state_dict
from tokenizers import ByteLevelBPETokenizer
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertModel,
    RobertaConfig,
    RobertaModel,
    RobertaTokenizerFast,
)

from rvos.config import TextEncoderConfig
from rvos.errors import CheckpointError, ConfigError
from rvos.models.text import (
    OpenClipTextEncoder,
    TransformersTextEncoder,
    build_text_encoder,
    shipped_minilm,
)

SENTENCES = ["the dog", "a cat jumping over the fence", "the red square moving left"]
TINY = {"hidden_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2}
TINY_CLIP = "rvos-tiny-clip"


def test_shipped_minilm_gives_real_embeddings():
    encoder = build_text_encoder(TextEncoderConfig())
    assert encoder.dim == encoder.sentence_dim == 384
    emb = encoder(["a red square", "a red box", "the weather is cold today"]).sentence
    sim = torch.nn.functional.cosine_similarity
    assert sim(emb[0], emb[1], dim=0) > sim(emb[0], emb[2], dim=0)


@pytest.fixture(scope="module")
def local_bert(tmp_path_factory):
    """A tiny BERT directory written like save_pretrained output, made offline."""
    directory = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(shipped_minilm(), local_files_only=True)
    tokenizer.save_pretrained(directory)
    config = BertConfig(vocab_size=tokenizer.vocab_size, intermediate_size=32, **TINY)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def local_roberta(tmp_path_factory):
    """A tiny RoBERTa directory with a byte-level BPE vocabulary trained here."""
    vocabulary = tmp_path_factory.mktemp("bpe")
    bpe = ByteLevelBPETokenizer()
    corpus = SENTENCES + ["a small blue star", "the man in a red shirt", "the lowest object"]
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(corpus, vocab_size=300, min_frequency=1, special_tokens=specials)
    bpe.save_model(str(vocabulary))
    tokenizer = RobertaTokenizerFast(
        vocab=str(vocabulary / "vocab.json"), merges=str(vocabulary / "merges.txt")
    )
    directory = tmp_path_factory.mktemp("tiny-roberta")
    tokenizer.save_pretrained(directory)
    config = RobertaConfig(
        vocab_size=tokenizer.vocab_size,
        intermediate_size=32,
        max_position_embeddings=40,
        pad_token_id=tokenizer.pad_token_id,
        **TINY,
    )
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("family", ["local_bert", "local_roberta"])
@pytest.mark.parametrize("pooling", ["cls", "mean", "pooler"])
def test_local_directory_every_pooling(request, family, pooling):
    directory = request.getfixturevalue(family)
    encoder = TransformersTextEncoder(directory, trainable=True, pooling=pooling)
    assert encoder.dim == encoder.word_dim == encoder.sentence_dim == 24
    tokens = encoder.tokenizer(SENTENCES, padding="longest", return_tensors="pt")
    out = encoder(SENTENCES)
    assert out.words.shape == (3, tokens["input_ids"].shape[1], 24)
    assert torch.equal(out.padding, tokens["attention_mask"] == 0)
    assert out.padding[0].any() and not out.padding[1].any()  # padded to the longest
    assert out.sentence.shape == (3, 24) and out.sentence.requires_grad
    assert (out.words[out.padding] == 0).all()
    if pooling == "mean":
        alone = encoder(SENTENCES[:1])  # no padding at all
        torch.testing.assert_close(out.sentence[0], alone.sentence[0], rtol=1e-5, atol=1e-5)
    (out.sentence.sum() + out.words.sum()).backward()
    assert encoder.language_model.embeddings.word_embeddings.weight.grad is not None


def test_max_length_truncates(local_bert):
    encoder = TransformersTextEncoder(local_bert, max_length=5)
    assert encoder(["a very long sentence about many different things"]).words.shape[1] == 5


def test_frozen_encoder_has_no_gradients_and_stays_in_eval(local_bert):
    encoder = TransformersTextEncoder(local_bert)
    encoder.train()
    assert not encoder.training and not encoder.language_model.training
    assert not any(p.requires_grad for p in encoder.parameters())
    out = encoder(SENTENCES)
    assert not out.words.requires_grad and not out.sentence.requires_grad


def test_cache_returns_the_features_of_a_fresh_encode(local_bert):
    encoder = TransformersTextEncoder(local_bert, pooling="cls")
    texts = [SENTENCES[1], SENTENCES[0], SENTENCES[1]]
    first = encoder(texts)
    assert len(encoder._cache) == 2
    cached = encoder(texts)
    with torch.no_grad():
        fresh = encoder.encode(texts)
    for features in (first, cached):
        assert torch.equal(features.padding, fresh.padding)
        torch.testing.assert_close(features.words, fresh.words, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(features.sentence, fresh.sentence, rtol=1e-5, atol=1e-5)
    encoder.double()
    assert not encoder._cache and encoder(texts).words.dtype == torch.float64


def test_pooler_missing_from_the_checkpoint_starts_at_random_with_a_warning(
    tmp_path, local_bert, caplog
):
    AutoTokenizer.from_pretrained(local_bert).save_pretrained(tmp_path)
    config = BertConfig(vocab_size=30, intermediate_size=32, **TINY)
    BertModel(config, add_pooling_layer=False).save_pretrained(tmp_path)
    with caplog.at_level("WARNING", logger="rvos.models.text"):
        encoder = TransformersTextEncoder(tmp_path, pooling="pooler")
    assert "has no trained pooler: it starts at random" in caplog.text
    assert encoder.language_model.pooler is not None


def test_missing_files_name_the_key_and_the_file(tmp_path, local_bert):
    key = r"model\.text_encoder\.weights = "
    with pytest.raises(ConfigError, match=key + ".*roberta-base'.*directory not found"):
        TransformersTextEncoder(tmp_path / "roberta-base")
    with pytest.raises(ConfigError, match=key + ".*no config.json there"):
        TransformersTextEncoder(tmp_path)
    (tmp_path / "config.json").write_text((local_bert / "config.json").read_text())
    with pytest.raises(ConfigError, match=key + ".*no weights file there.*model.safetensors"):
        TransformersTextEncoder(tmp_path)
    (tmp_path / "model.safetensors").write_bytes((local_bert / "model.safetensors").read_bytes())
    with pytest.raises(ConfigError, match="no tokenizer files there.*tokenizer.json or vocab.txt"):
        TransformersTextEncoder(tmp_path)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny open_clip architecture registered from a JSON file, and its checkpoint."""
    directory = tmp_path_factory.mktemp("tiny-clip")
    config = {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": 32,
            "patch_size": 16,
            "layers": 1,
            "width": 16,
            "head_width": 8,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 2,
        },
    }
    (directory / f"{TINY_CLIP}.json").write_text(json.dumps(config))
    open_clip.add_model_config(directory / f"{TINY_CLIP}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_CLIP).eval()
    torch.save(model.state_dict(), directory / "tiny-clip.pt")
    return model, directory / "tiny-clip.pt"


def test_open_clip_matches_encode_text(tiny_clip):
    model, checkpoint = tiny_clip
    cfg = TextEncoderConfig(kind="open_clip", model=TINY_CLIP, weights=str(checkpoint))
    encoder = build_text_encoder(cfg)
    assert isinstance(encoder, OpenClipTextEncoder)
    assert not any(name.startswith("visual") for name, _ in encoder.named_parameters())
    assert (encoder.dim, encoder.word_dim, encoder.sentence_dim) == (32, 32, 16)
    tokens = open_clip.get_tokenizer(TINY_CLIP)(SENTENCES)
    out = encoder(SENTENCES)
    with torch.no_grad():
        torch.testing.assert_close(out.sentence, model.encode_text(tokens))
        embedded = model.token_embedding(tokens) + model.positional_embedding
        last = model.ln_final(model.transformer(embedded, attn_mask=model.attn_mask))
    ends = tokens.argmax(-1)
    for i, end in enumerate(ends):
        torch.testing.assert_close(out.words[i, : end + 1], last[i, : end + 1])
    assert out.words.shape == (3, int(ends.max()) + 1, 32)
    lengths = (~out.padding).sum(1)
    assert torch.equal(lengths, ends + 1)  # start, the words, end-of-text
    assert (out.words[out.padding] == 0).all()


def test_open_clip_custom_text_layout_loads_the_same_weights(tiny_clip, tmp_path):
    model, checkpoint = tiny_clip
    custom = open_clip.create_model(TINY_CLIP, force_custom_text=True)
    custom.load_state_dict(convert_to_custom_text_state_dict(model.state_dict()))
    torch.save(custom.state_dict(), tmp_path / "custom.pt")
    flat = OpenClipTextEncoder(TINY_CLIP, checkpoint)(SENTENCES)
    prefixed = OpenClipTextEncoder(TINY_CLIP, tmp_path / "custom.pt")(SENTENCES)
    assert torch.equal(flat.words, prefixed.words)
    assert torch.equal(flat.sentence, prefixed.sentence)


def test_open_clip_trainable_and_random_init(tiny_clip, caplog):
    cfg = TextEncoderConfig(kind="open_clip", model=TINY_CLIP, trainable=True)
    encoder = build_text_encoder(cfg)
    assert "initialised at random" in caplog.text
    out = encoder(SENTENCES)
    (out.sentence.sum() + out.words.sum()).backward()
    assert encoder.text.token_embedding.weight.grad is not None


def test_open_clip_errors(tiny_clip, tmp_path):
    with pytest.raises(ConfigError, match=r"model\.text_encoder\.model: missing"):
        build_text_encoder(TextEncoderConfig(kind="open_clip"))
    with pytest.raises(ConfigError, match="unknown open_clip architecture.*ViT-B-32"):
        build_text_encoder(TextEncoderConfig(kind="open_clip", model="ViT-Q-99"))
    with pytest.raises(ConfigError, match="not CLIP's transformer.*ViT-B-32"):
        build_text_encoder(TextEncoderConfig(kind="open_clip", model="ViT-B-16-SigLIP"))
    missing = TextEncoderConfig(kind="open_clip", model=TINY_CLIP, weights=str(tmp_path / "x.pt"))
    with pytest.raises(ConfigError, match=r"weights = .*x\.pt'.*file not found"):
        build_text_encoder(missing)
    torch.save({"visual.proj": torch.zeros(1)}, tmp_path / "vision.pt")
    with pytest.raises(CheckpointError, match="not an open_clip rvos-tiny-clip checkpoint"):
        OpenClipTextEncoder(TINY_CLIP, tmp_path / "vision.pt")
    with pytest.raises(ConfigError, match="only used with kind 'open_clip'"):
        build_text_encoder(TextEncoderConfig(model="ViT-B-32"))
