import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from rvos.errors import ConfigError
from rvos.models.text import TextEncoder, shipped_minilm


def test_shipped_minilm_gives_real_embeddings():
    encoder = TextEncoder()
    assert encoder.dim == 384
    emb = encoder(["a red square", "a red box", "the weather is cold today"])
    sim = torch.nn.functional.cosine_similarity
    assert sim(emb[0], emb[1], dim=0) > sim(emb[0], emb[2], dim=0)


@pytest.fixture(scope="module")
def local_bert(tmp_path_factory):
    """A tiny BERT directory written like save_pretrained output, made offline."""
    directory = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(shipped_minilm(), local_files_only=True)
    tokenizer.save_pretrained(directory)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=24,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_local_bert_directory(local_bert, pooling):
    encoder = TextEncoder(local_bert, trainable=True, pooling=pooling)
    assert encoder.dim == 24
    out = encoder(["the dog", "a cat jumping over the fence"])
    assert out.shape == (2, 24) and out.requires_grad
    out.sum().backward()
    assert encoder.language_model.embeddings.word_embeddings.weight.grad is not None


def test_missing_directory_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.text_encoder\.weights = .*no config\.json"):
        TextEncoder(tmp_path / "roberta-base")
