"""Torch datasets over prepared indexes: video clips and single images.

Every item is {"frames": (T, 3, H, W), "masks": (T, H, W), "text": str}, so image
pretraining (T = 1) and video finetuning share one model interface.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset

from rvos.data.index import VideoIndex
from rvos.data.transforms import ClipTransform
from rvos.errors import DataError


class ClipDataset(Dataset):
    """One item per expression: `num_frames` frames sampled in time order."""

    def __init__(self, index: VideoIndex, num_frames: int, transform: ClipTransform):
        if not index.has_masks:
            raise DataError(f"{index.dataset}/{index.split}: cannot train on a split without masks")
        self.index = index
        self.num_frames = num_frames
        self.transform = transform

    def __len__(self) -> int:
        return len(self.index.expressions)

    def __getitem__(self, i: int) -> dict:
        expression = self.index.expressions[i]
        frames = self.index.videos[expression.video].frames
        picks = sample_frames(len(frames), self.num_frames)
        names = [frames[p] for p in picks]
        images = [self.index.load_frame(expression.video, f) for f in names]
        masks = [self.index.target(expression, f) for f in names]
        clip, target, text = self.transform(images, masks, expression.text)
        return {"frames": clip, "masks": target, "text": text}


def sample_frames(length: int, count: int) -> list[int]:
    """`count` sorted frame positions drawn without replacement (with it if too few)."""
    if length >= count:
        return sorted(torch.randperm(length)[:count].tolist())
    return sorted(torch.randint(length, (count,)).tolist())


class ImageDataset(Dataset):
    """One item per sentence of a per-sentence COCO-style file (see data.refcoco.convert)."""

    def __init__(self, coco_files: list[Path], images_dir: Path, transform: ClipTransform):
        self.images_dir = Path(images_dir)
        self.transform = transform
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

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        image_info, ann = self.items[i]
        image = Image.open(self.images_dir / image_info["file_name"]).convert("RGB")
        mask = polygons_to_mask(ann["segmentation"], image_info["height"], image_info["width"])
        clip, target, text = self.transform([image], [mask], image_info["caption"])
        return {"frames": clip, "masks": target, "text": text}


def polygons_to_mask(polygons: list, height: int, width: int) -> np.ndarray:
    """Union of COCO polygons rasterised at (height, width), as a boolean array."""
    rles = mask_utils.frPyObjects(polygons, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def collate(batch: list[dict]) -> dict:
    """Stack items: frames (B, T, 3, H, W), masks (B, T, H, W), texts list[str]."""
    return {
        "frames": torch.stack([b["frames"] for b in batch]),
        "masks": torch.stack([b["masks"] for b in batch]),
        "texts": [b["text"] for b in batch],
    }
