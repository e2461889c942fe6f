"""CLIP's two towers (open_clip) with VLP-RVOS's prompts, as its vision-language backbone.

Both towers come from one open_clip architecture and one checkpoint file, so the visual and
the text features stay in CLIP's aligned space. `ClipText` runs the text transformer with
language prompt tokens after the start token (causal attention lets every word read them);
`ClipVision` runs the ViT on frames with vision and temporal prompt tokens, lets every layer's
tokens also cross-attend to the words (reference-guided encoding), and after every layer lets
the temporal prompts of all the clip's frames attend to each other with that layer's own
pretrained attention (parameter-reusing temporal capture): the only path between frames.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rvos.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from rvos.errors import CheckpointError, ConfigError
from rvos.models.text import TextFeatures, _has_clip_text_tower, read_open_clip_state

log = logging.getLogger(__name__)

KEY = "model.vlp_rvos"
FEATURE_STRIDE = 16  # the patch grid is (H/16, W/16) whatever the patch size
# Architecture overrides: VlpRvosConfig field → (tower, open_clip config key)
OVERRIDES = {
    "vision_width": ("vision_cfg", "width"),
    "vision_layers": ("vision_cfg", "layers"),
    "vision_head_width": ("vision_cfg", "head_width"),
    "patch_size": ("vision_cfg", "patch_size"),
    "text_width": ("text_cfg", "width"),
    "text_layers": ("text_cfg", "layers"),
    "text_heads": ("text_cfg", "heads"),
}


@dataclass
class Clip:
    """The two towers of one CLIP and its tokenizer settings."""

    visual: nn.Module  # open_clip VisionTransformer
    text: nn.Module  # open_clip TextTransformer
    model: str  # the architecture's name, for its tokenizer


def clip_config(vc) -> dict:
    """The open_clip config of `vc.clip_model` with `vc`'s overrides; a plain ViT and CLIP's own
    text transformer are required."""
    import open_clip

    known = open_clip.list_models()
    if vc.clip_model not in known:
        raise ConfigError(
            f"params.yaml: {KEY}.clip_model = {vc.clip_model!r}: unknown open_clip architecture "
            f"(expected one of {', '.join(known)})"
        )
    config = open_clip.get_model_config(vc.clip_model)
    config = {
        **config,
        "vision_cfg": dict(config["vision_cfg"]),
        "text_cfg": dict(config["text_cfg"]),
    }
    for name, (tower, key) in OVERRIDES.items():
        if getattr(vc, name) is not None:
            config[tower][key] = getattr(vc, name)
    if vc.embed_dim is not None:
        config["embed_dim"] = vc.embed_dim
    vision = config["vision_cfg"]
    plain = not any(vision.get(k) for k in ("timm_model_name", "attentional_pool", "no_ln_pre"))
    plain = plain and isinstance(vision["layers"], int) and vision.get("pool_type", "tok") == "tok"
    if not plain or not _has_clip_text_tower(config):
        raise ConfigError(
            f"params.yaml: {KEY}.clip_model = {vc.clip_model!r}: expected a CLIP ViT (plain "
            "vision transformer, class-token pooling) with CLIP's text transformer, such as "
            "'ViT-B-16-quickgelu' or 'ViT-L-14-quickgelu'"
        )
    return config


def build_clip(vc, load_weights: bool = True) -> Clip:
    """Both towers of `vc.clip_model` (open_clip's own constructors), with the weights of
    `vc.weights` unless load_weights is False; frozen if `vc.freeze_clip`."""
    from open_clip.model import _build_text_tower, _build_vision_tower
    from open_clip.transformer import ResidualAttentionBlock

    config = clip_config(vc)
    quick_gelu = config.get("quick_gelu", False)
    visual = _build_vision_tower(config["embed_dim"], config["vision_cfg"], quick_gelu)
    text = _build_text_tower(config["embed_dim"], config["text_cfg"], quick_gelu)
    if not all(type(b) is ResidualAttentionBlock for b in visual.transformer.resblocks):
        raise ConfigError(
            f"params.yaml: {KEY}.clip_model = {vc.clip_model!r}: its vision blocks are not "
            "open_clip's standard residual attention blocks"
        )
    if vc.weights is None:
        log.warning("%s.weights is null: CLIP %s initialised at random", KEY, vc.clip_model)
    elif load_weights:
        load_clip(visual, text, Path(vc.weights), vc.clip_model)
    if vc.freeze_clip:
        visual.requires_grad_(False)
        text.requires_grad_(False)
    return Clip(visual, text, vc.clip_model)


def load_clip(visual: nn.Module, text: nn.Module, path: Path, model: str) -> None:
    """Both towers' weights from one open_clip checkpoint, in either of its layouts (CLIP's
    flat text keys or CustomTextCLIP's `text.` prefix); what is missing is named."""
    if not path.is_file():
        raise ConfigError(
            f"params.yaml: {KEY}.weights = {str(path)!r}: file not found (expected an open_clip "
            f"checkpoint file of {model} holding both towers)"
        )
    state = read_open_clip_state(path)
    for prefix, tower, name in (("visual.", visual, "vision"), ("text.", text, "text")):
        weights = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        for key, expected in tower.state_dict().items():
            if key not in weights:
                raise CheckpointError(
                    f"{path}: not an open_clip {model} checkpoint holding both towers "
                    f"(the {name} tower's {prefix}{key} is missing)"
                )
            if weights[key].shape != expected.shape:
                raise CheckpointError(
                    f"{path}: not an open_clip {model} checkpoint ({prefix}{key} has shape "
                    f"{tuple(weights[key].shape)}, expected {tuple(expected.shape)})"
                )
        tower.load_state_dict({key: weights[key] for key in tower.state_dict()})


class WordAttention(nn.Module):
    """Tokens (queries) attend to the words (keys and values) in an inner width of `dim`/64
    heads. The output projection starts at zero, so that the pretrained encoder it is added to
    starts unchanged."""

    def __init__(self, width: int, word_dim: int, dim: int):
        super().__init__()
        self.heads = max(1, dim // 64)
        self.q = nn.Linear(width, dim)
        self.k = nn.Linear(word_dim, dim)
        self.v = nn.Linear(word_dim, dim)
        self.out = nn.Linear(dim, width)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, words: Tensor, padding: Tensor) -> Tensor:
        """x (N, S, width), words (N, L, word_dim), padding (N, L) True at padding → (N, S,
        width)."""
        q, k, v = (
            proj(y).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (N, heads, ·, dim/heads)
            for proj, y in ((self.q, x), (self.k, words), (self.v, words))
        )
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=~padding[:, None, None])
        return self.out(attended.transpose(1, 2).flatten(2))


class ClipVision(nn.Module):
    """CLIP's ViT (`visual`) on frames with prompt tokens, word cross-attention in every layer
    (`cross_attn`, new; none when cross_attention_dim is None) and temporal capture between
    frames (no new parameters).

    Frames arrive normalised with ImageNet's statistics and are renormalised with CLIP's; they
    are resized so that the patch grid is (H/16, W/16) for any patch size (14 for ViT-L/14), and
    the positional embedding is interpolated to that grid.
    """

    def __init__(
        self,
        visual: nn.Module,
        word_dim: int,
        *,
        cross_attention_dim: int | None = 512,
        temporal_capture: bool = True,
        shallow_layer: int = 3,
    ):
        super().__init__()
        self.visual = visual
        blocks = visual.transformer.resblocks
        self.width, self.embed_dim = visual.transformer.width, visual.output_dim
        self.patch_size = visual.conv1.kernel_size[0]
        if not 0 <= shallow_layer < len(blocks):
            raise ConfigError(
                f"params.yaml: {KEY}.shallow_layer = {shallow_layer}: expected a vision layer "
                f"index in [0, {len(blocks) - 1}]"
            )
        self.shallow_layer = shallow_layer
        self.temporal_capture = temporal_capture
        if cross_attention_dim:
            self.cross_attn = nn.ModuleList(
                WordAttention(self.width, word_dim, cross_attention_dim) for _ in blocks
            )
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        # x_clip = x_imagenet * scale + shift, per channel
        scale = torch.tensor(IMAGENET_STD) / torch.tensor(OPENAI_DATASET_STD)
        shift = (torch.tensor(IMAGENET_MEAN) - torch.tensor(OPENAI_DATASET_MEAN)) / torch.tensor(
            OPENAI_DATASET_STD
        )
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)

    def forward(
        self,
        frames: Tensor,
        clip_frames: int,
        words: Tensor,
        padding: Tensor,
        vision_prompts: Tensor | None = None,
        temporal_prompts: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """frames (N·T, 3, H, W), T = clip_frames consecutive frames per clip; words (N, L, D)
        and padding (N, L) of each clip's sentence; prompts (P, width) → the last layer's patch
        features in the joint space (N·T, embed_dim, H/16, W/16) and layer `shallow_layer`'s
        (N·T, width, H/16, W/16)."""
        v, t = self.visual, clip_frames
        grid = (frames.shape[-2] // FEATURE_STRIDE, frames.shape[-1] // FEATURE_STRIDE)
        x = frames * self.scale + self.shift
        size = (grid[0] * self.patch_size, grid[1] * self.patch_size)
        if x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        x = v.conv1(x).flatten(2).transpose(1, 2)  # (N·T, h·w, width)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = v.ln_pre(torch.cat((cls, x), 1) + self._positions(grid).to(x.dtype))
        prompts = [p for p in (vision_prompts, temporal_prompts) if p is not None]
        if prompts:
            x = torch.cat((x, torch.cat(prompts).to(x.dtype).expand(x.shape[0], -1, -1)), 1)
        temporal = 0 if temporal_prompts is None else len(temporal_prompts)
        words, padding = words.repeat_interleave(t, 0), padding.repeat_interleave(t, 0)
        patches = slice(1, 1 + grid[0] * grid[1])
        blocks = v.transformer.resblocks
        for index, block in enumerate(blocks):
            y = block.ln_1(x)
            update = block.attention(y)
            if hasattr(self, "cross_attn"):
                update = update + self.cross_attn[index](y, words, padding)
            x = x + block.ls_1(update)
            x = x + block.ls_2(block.mlp(block.ln_2(x)))
            if self.temporal_capture and temporal and index < len(blocks) - 1:
                x = self._capture(block, x, t, temporal)
            if index == self.shallow_layer:
                shallow = x[:, patches]
        last = v.ln_post(x[:, patches])
        if v.proj is not None:
            last = last @ v.proj
        return _grid_maps(last, grid), _grid_maps(shallow, grid)

    def _capture(self, block: nn.Module, x: Tensor, frames: int, count: int) -> Tensor:
        """The last `count` tokens of every frame (its temporal prompts) attend to those of all
        the clip's frames with `block`'s own attention, a residual update."""
        n, s, c = x.shape
        prompts = x[:, s - count :].reshape(n // frames, frames * count, c)  # (N, T·P, C)
        prompts = prompts + block.ls_1(block.attention(block.ln_1(prompts)))
        return torch.cat((x[:, : s - count], prompts.reshape(n, count, c)), 1)

    def _positions(self, grid: tuple[int, int]) -> Tensor:
        """(1 + h·w, width): the class position and the patch positions resized (bicubic) from
        the pretrained square grid to `grid`."""
        pos = self.visual.positional_embedding
        side = round((pos.shape[0] - 1) ** 0.5)
        if (side, side) == grid:
            return pos
        patches = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, size=grid, mode="bicubic", align_corners=False)
        return torch.cat((pos[:1], patches.flatten(2)[0].t()))


def _grid_maps(tokens: Tensor, grid: tuple[int, int]) -> Tensor:
    """(N, h·w, C) → (N, C, h, w)."""
    return tokens.transpose(1, 2).unflatten(2, grid)


class ClipText(nn.Module):
    """CLIP's text transformer (`text`) with language prompt tokens after the start token.

    Sentences are tokenized with CLIP's BPE into the context length less the prompts. words:
    every word and the end-of-text token, after ln_final and CLIP's text projection, so in the
    joint space (`word_dim` = `sentence_dim` = the joint width); sentence: the end-of-text one,
    what CLIP's encode_text returns when there are no prompts.
    """

    def __init__(self, text: nn.Module, model: str, prompts: int = 0):
        super().__init__()
        import open_clip

        context = text.positional_embedding.shape[0]
        if prompts >= context - 2:
            raise ConfigError(
                f"params.yaml: {KEY}.language_prompts = {prompts}: expected fewer than "
                f"{context - 2} (CLIP's context holds {context} tokens with start and end)"
            )
        self.text = text
        self.prompts = prompts
        self.tokenizer = open_clip.get_tokenizer(model, context_length=context - prompts)
        self.word_dim = self.sentence_dim = text.output_dim
        self.width = text.width

    def forward(self, texts: list[str], prompts: Tensor | None = None) -> TextFeatures:
        """prompts (P, width), P = the constructor's `prompts`, or None when it is 0."""
        text, p = self.text, self.prompts
        if (0 if prompts is None else len(prompts)) != p:
            raise ValueError(f"expected {p} language prompts")
        tokens = self.tokenizer(texts).to(text.positional_embedding.device)  # (N, context - P)
        ends = tokens.argmax(-1)  # CLIP's end-of-text token has the largest id
        # Causal attention: the padding after the longest sentence changes nothing before it.
        tokens = tokens[:, : int(ends.max()) + 1]
        x = text.token_embedding(tokens)
        if p:
            prompts = prompts.to(x.dtype).expand(len(texts), -1, -1)
            x = torch.cat((x[:, :1], prompts, x[:, 1:]), 1)
        length = x.shape[1]
        x = x + text.positional_embedding[:length].to(x.dtype)
        mask = None if text.attn_mask is None else text.attn_mask[:length, :length]
        x = text.ln_final(text.transformer(x, attn_mask=mask))
        projection = text.text_projection
        x = projection(x) if isinstance(projection, nn.Linear) else x @ projection
        end = ends + p
        sentence = x[torch.arange(len(texts), device=x.device), end]
        words = x[:, 1 + p :]  # the words and the end token
        padding = torch.arange(words.shape[1], device=x.device)[None] > (end - 1 - p)[:, None]
        return TextFeatures(words.masked_fill(padding[..., None], 0.0), padding, sentence)
