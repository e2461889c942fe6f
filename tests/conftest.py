"""Shared fixtures: tiny demo datasets generated once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="session")
def tiny_ytvos(tmp_path_factory) -> Path:
    from rvos.data.demo import write_ytvos

    root = tmp_path_factory.mktemp("demo") / "ytvos"
    write_ytvos(
        root,
        seed=3,
        train_videos=4,
        valid_videos=2,
        test_videos=1,
        frames=4,
        height=48,
        width=64,
        progress=False,
    )
    return root


@pytest.fixture(scope="session")
def tiny_refcoco(tmp_path_factory) -> Path:
    from rvos.data.demo import write_refcoco

    root = tmp_path_factory.mktemp("demo") / "refcoco"
    write_refcoco(root, seed=3, images=12, height=48, width=64, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A tiny BERT directory (MiniLM's tokenizer, random weights), made offline."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from rvos.models.text import shipped_minilm

    directory = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(shipped_minilm(), local_files_only=True)
    tokenizer.save_pretrained(directory)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=24, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32)  # fmt: skip
    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)
    return directory
