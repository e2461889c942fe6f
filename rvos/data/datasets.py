"""Torch datasets over prepared indexes: video clips and single images.

Every item is {"frames": (T, 3, H, W), "masks": (K, T, H, W), "texts": [K sentences]}: K
sentences about one clip, so image pretraining (T = 1) and video finetuning share one model
interface, and a model can compute a clip's visual features once for all its sentences.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset

from rvos.config import TrainConfig
from rvos.data.frame_samples import FrameWindowDataset, load_frame_index
from rvos.data.index import Expression, VideoIndex, load_index
from rvos.data.media import load_image
from rvos.data.transforms import ClipTransform
from rvos.errors import DataError


class ClipDataset(Dataset):
    """`num_frames` frames in time order (see `sample_frames`), with `sentences` expressions
    of the video.

    With one sentence per clip there is an item per expression. With more, there is an item
    per video, holding that many of its expressions (drawn without replacement while the
    video has enough): each clip then teaches the model to tell its objects apart by the
    words alone, for the cost of one pass over its frames.
    """

    def __init__(
        self,
        index: VideoIndex,
        num_frames: int,
        transform: ClipTransform,
        sentences: int = 1,
        interval: int = 0,
    ):
        if not index.has_masks:
            raise DataError(f"{index.dataset}/{index.split}: cannot train on a split without masks")
        if sentences < 1:
            raise ValueError(f"sentences per clip = {sentences}: expected at least 1")
        self.index = index
        self.num_frames = num_frames
        self.interval = interval
        self.transform = transform
        self.sentences = sentences
        by_video: dict[str, list[Expression]] = {}
        for expression in index.expressions:
            by_video.setdefault(expression.video, []).append(expression)
        self.groups = (
            [[e] for e in index.expressions] if sentences == 1 else list(by_video.values())
        )

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> dict:
        expressions = draw(self.groups[i], self.sentences)
        video = expressions[0].video
        frames = self.index.videos[video].frames
        names = [frames[p] for p in sample_frames(len(frames), self.num_frames, self.interval)]
        images = [self.index.load_frame(video, f) for f in names]
        per_frame = [self.index.targets(expressions, f) for f in names]
        masks = [list(per_sentence) for per_sentence in zip(*per_frame, strict=True)]
        clip, targets, texts = self.transform.many(images, masks, [e.text for e in expressions])
        return {"frames": clip, "masks": targets, "texts": texts}


def draw(group: list, count: int) -> list:
    """`count` members of `group` in random order, repeating only once all were drawn."""
    picks = torch.randperm(len(group)).tolist()
    while len(picks) < count:
        picks += torch.randperm(len(group)).tolist()
    return [group[p] for p in picks[:count]]


def sample_frames(length: int, count: int, interval: int = 0) -> list[int]:
    """`count` sorted frame positions of a `length`-frame video.

    interval 0: drawn anywhere, without replacement (with it if too few). interval k > 0:
    ReferFormer's sampling, a random centre frame with one neighbour 1..k frames before and one
    1..k after (clamped to the video), and the rest outside those three; close neighbours show how
    objects move between frames at a consistent scale, which spread-out frames do not.
    """
    if interval < 0:
        raise ValueError(f"frame sampling interval = {interval}: expected 0 or more")
    if interval == 0 or count == 1:
        if length >= count:
            return sorted(torch.randperm(length)[:count].tolist())
        return sorted(torch.randint(length, (count,)).tolist())
    centre = int(torch.randint(length, ()))
    before, after = (int(s) for s in torch.randint(1, interval + 1, (2,)))
    neighbours = [max(centre - before, 0), min(centre + after, length - 1)]
    local = [centre, *neighbours][:count]
    rest = [p for p in range(length) if p < min(local) or p > max(local)]
    extra = count - len(local)
    if len(rest) >= extra:
        chosen = [rest[p] for p in torch.randperm(len(rest))[:extra].tolist()]
    else:
        chosen = torch.randint(length, (extra,)).tolist()
    return sorted(local + chosen)


class ImageDataset(Dataset):
    """Sentences of per-sentence COCO-style files (see data.refcoco.convert) as 1-frame clips.

    With one sentence per clip there is an item per sentence; with more, an item per image
    holding that many of its sentences, as ClipDataset does per video.
    """

    def __init__(
        self,
        coco_files: list[Path],
        images_dir: Path,
        transform: ClipTransform,
        sentences: int = 1,
    ):
        if sentences < 1:
            raise ValueError(f"sentences per clip = {sentences}: expected at least 1")
        self.images_dir = Path(images_dir)
        self.transform = transform
        self.sentences = sentences
        self.items: list[tuple[dict, dict]] = []
        for path in coco_files:
            try:
                coco = json.loads(Path(path).read_text())
                anns = {a["image_id"]: a for a in coco["annotations"]}
                self.items += [(img, anns[img["id"]]) for img in coco["images"]]
            except FileNotFoundError:
                raise DataError(f"{path}: file not found (run the prepare stage)") from None
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise DataError(f"{path}: not a per-sentence COCO file ({err!r})") from None

        by_image: dict[str, list[tuple[dict, dict]]] = {}
        for image_info, ann in self.items:
            by_image.setdefault(image_info["file_name"], []).append((image_info, ann))
        self.groups = [[item] for item in self.items] if sentences == 1 else list(by_image.values())

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> dict:
        chosen = draw(self.groups[i], self.sentences)
        info = chosen[0][0]
        image = load_image(self.images_dir / info["file_name"], "RGB")
        masks = [
            [polygons_to_mask(ann["segmentation"], info["height"], info["width"])]
            for _, ann in chosen
        ]
        texts = [image_info["caption"] for image_info, _ in chosen]
        clip, targets, texts = self.transform.many([image], masks, texts)
        return {"frames": clip, "masks": targets, "texts": texts}


def polygons_to_mask(polygons: list, height: int, width: int) -> np.ndarray:
    """Union of COCO polygons rasterised at (height, width), as a boolean array."""
    rles = mask_utils.frPyObjects(polygons, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def collate(batch: list[dict]) -> dict:
    """frames (B, T, 3, H, W); masks (B·K, T, H, W), valid (B·K, T) and texts [B·K], clip b's
    K in a row. `valid` marks the frames that have a target (all, unless an item says)."""
    valid = [
        b.get("valid", torch.ones(b["masks"].shape[1], dtype=torch.bool))
        .expand(len(b["texts"]), -1)
        for b in batch
    ]
    return {
        "frames": torch.stack([b["frames"] for b in batch]),
        "masks": torch.cat([b["masks"] for b in batch]),
        "valid": torch.cat(valid),
        "texts": [text for b in batch for text in b["texts"]],
    }


def training_dataset(
    name: str, prepared: Path, phase: TrainConfig, transform: ClipTransform
) -> Dataset:
    """The finetuning set of a prepared video dataset: clips of its videos (Ref-YouTube-VOS,
    MeViS) or windows around annotated frames (A2D-Sentences)."""
    if name == "a2d":
        index = load_frame_index(prepared / "train.json")
        return FrameWindowDataset(index, phase.num_frames, transform)
    if name in ("ytvos", "mevis"):
        index = load_index(prepared / "train.json")
        return ClipDataset(
            index, phase.num_frames, transform, phase.sentences_per_clip, phase.sample_interval
        )
    raise ValueError(f"no training set for dataset {name!r}; expected a2d, mevis or ytvos")
