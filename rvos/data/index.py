"""The prepared sample index: one JSON per dataset split, written by `prepare`.

A video index says where frames and masks live and lists one entry per referring
expression, so training and evaluation never re-parse the dataset's own files:

    {"dataset": "ytvos", "split": "train", "root": "data/demo/ytvos",
     "frames_dir": "train/JPEGImages", "masks_dir": "train/Annotations" | null,
     "videos": {vid: {"frames": [stem, ...], "height": H, "width": W}},
     "expressions": [{"video": vid, "exp_id": "0", "text": "...", "obj_ids": [1]}]}

Masks are palette PNGs `<masks_dir>/<vid>/<stem>.png`; an expression's target is the
union of the pixels equal to its `obj_ids`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rvos.errors import DataError
from rvos.io import write_json


@dataclass(frozen=True)
class Expression:
    video: str
    exp_id: str
    text: str
    obj_ids: tuple[int, ...]


@dataclass(frozen=True)
class Video:
    name: str
    frames: tuple[str, ...]
    height: int
    width: int


@dataclass(frozen=True)
class VideoIndex:
    dataset: str
    split: str
    root: Path
    frames_dir: str
    masks_dir: str | None
    videos: dict[str, Video]
    expressions: tuple[Expression, ...]

    @property
    def has_masks(self) -> bool:
        return self.masks_dir is not None

    def frame_path(self, video: str, frame: str) -> Path:
        return self.root / self.frames_dir / video / f"{frame}.jpg"

    def mask_path(self, video: str, frame: str) -> Path:
        if self.masks_dir is None:
            raise DataError(f"{self.dataset}/{self.split}: this split has no masks")
        return self.root / self.masks_dir / video / f"{frame}.png"

    def load_frame(self, video: str, frame: str) -> Image.Image:
        return Image.open(self.frame_path(video, frame)).convert("RGB")

    def load_labels(self, video: str, frame: str) -> np.ndarray:
        """The palette index map (H, W) uint8 of one frame: pixel = object id."""
        path = self.mask_path(video, frame)
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise DataError(f"{path}: expected a palette (P) PNG, got mode {image.mode}")
            return np.asarray(image, dtype=np.uint8)

    def target(self, expression: Expression, frame: str) -> np.ndarray:
        """Boolean (H, W) mask of the referred object(s) in one frame."""
        labels = self.load_labels(expression.video, frame)
        return np.isin(labels, expression.obj_ids)

    def to_json(self) -> dict:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "root": str(self.root),
            "frames_dir": self.frames_dir,
            "masks_dir": self.masks_dir,
            "videos": {
                v.name: {"frames": list(v.frames), "height": v.height, "width": v.width}
                for v in self.videos.values()
            },
            "expressions": [
                {"video": e.video, "exp_id": e.exp_id, "text": e.text, "obj_ids": list(e.obj_ids)}
                for e in self.expressions
            ],
        }


def save_index(index: VideoIndex, path: str | Path) -> None:
    write_json(path, index.to_json(), indent=None)


def load_index(path: str | Path) -> VideoIndex:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
        return VideoIndex(
            dataset=raw["dataset"],
            split=raw["split"],
            root=Path(raw["root"]),
            frames_dir=raw["frames_dir"],
            masks_dir=raw["masks_dir"],
            videos={
                name: Video(name, tuple(v["frames"]), int(v["height"]), int(v["width"]))
                for name, v in raw["videos"].items()
            },
            expressions=tuple(
                Expression(e["video"], str(e["exp_id"]), e["text"], tuple(e["obj_ids"]))
                for e in raw["expressions"]
            ),
        )
    except FileNotFoundError:
        raise DataError(f"{path}: prepared index not found (run the prepare stage)") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: not a valid prepared index ({err!r})") from None


def normalize_text(text: str) -> str:
    """Lower-case and collapse whitespace, as the reference loaders do."""
    return re.sub(r"\s+", " ", text).strip().lower()
