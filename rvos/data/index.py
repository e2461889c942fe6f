"""The prepared sample index: one JSON per dataset split, written by `prepare`.

A video index says where frames and masks live and lists one entry per referring
expression, so training and evaluation never re-parse the dataset's own files:

    {"dataset": "ytvos", "split": "train", "root": "data/demo/ytvos",
     "frames_dir": "train/JPEGImages", "masks_dir": "train/Annotations" | null,
     "mask_format": "palette" | "rle",
     "videos": {vid: {"frames": [stem, ...], "height": H, "width": W}},
     "expressions": [{"video": vid, "exp_id": "0", "text": "...", "obj_ids": [1],
                      "anno_ids": ["7", ...]  (rle indexes only)}]}

Two mask formats:
- "palette" (the default; indexes written before the field existed are palette ones):
  palette PNGs `<root>/<masks_dir>/<vid>/<stem>.png`, pixel = object id, 255 = void. An
  expression's target is the union of the pixels equal to its `obj_ids`.
- "rle" (MeViS): one JSON per video `<masks_dir>/<vid>.json` = {anno_id: [COCO compressed RLE
  {"size": [H, W], "counts": str} or null, one per frame in the index's frame order]}. These
  files are written by `prepare`, so `masks_dir` is a folder beside the index, stored relative
  to the index file (the prepared directory can move), not a folder inside the dataset. An
  expression's target is the union of the masks of its `anno_ids` (null = absent in that
  frame); `obj_ids` are the dataset's object ids, kept for reference.
"""

from __future__ import annotations

import functools
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from rvos.data.media import load_image
from rvos.errors import DataError
from rvos.io import read_json, write_json

MASK_FORMATS = ("palette", "rle")
VOID = 255  # palette label of pixels that belong to no object and are not scored
_RLE_FILES_CACHED = 16  # per-video RLE files kept parsed; a clip reads one video at a time


@dataclass(frozen=True)
class Expression:
    video: str
    exp_id: str
    text: str
    obj_ids: tuple[int, ...]
    anno_ids: tuple[str, ...] = ()  # keys of the per-video RLE file (rle indexes)


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
    mask_format: Literal["palette", "rle"] = "palette"

    def __post_init__(self) -> None:
        if self.mask_format not in MASK_FORMATS:
            raise ValueError(f"mask_format {self.mask_format!r}: expected one of {MASK_FORMATS}")

    @property
    def has_masks(self) -> bool:
        return self.masks_dir is not None

    def frame_path(self, video: str, frame: str) -> Path:
        return self.root / self.frames_dir / video / f"{frame}.jpg"

    def _masks_dir(self) -> str:
        if self.masks_dir is None:
            raise DataError(f"{self.dataset}/{self.split}: this split has no masks")
        return self.masks_dir

    def mask_path(self, video: str, frame: str) -> Path:
        """The palette PNG of one frame (palette indexes)."""
        if self.mask_format != "palette":
            raise DataError(
                f"{self.dataset}/{self.split}: masks are per-video RLE files, not palette PNGs"
            )
        return self.root / self._masks_dir() / video / f"{frame}.png"

    def rle_path(self, video: str) -> Path:
        """The per-video RLE file {anno_id: [RLE | null per frame]} (rle indexes)."""
        if self.mask_format != "rle":
            raise DataError(f"{self.dataset}/{self.split}: masks are palette PNGs, not RLE files")
        return Path(self._masks_dir()) / f"{video}.json"

    def load_frame(self, video: str, frame: str) -> Image.Image:
        return load_image(self.frame_path(video, frame), "RGB")

    def load_labels(self, video: str, frame: str) -> np.ndarray:
        """The palette index map (H, W) uint8 of one frame: pixel = object id."""
        path = self.mask_path(video, frame)
        image = load_image(path)
        if image.mode not in ("P", "L"):
            raise DataError(f"{path}: expected a palette (P) PNG, got mode {image.mode}")
        return np.asarray(image, dtype=np.uint8)

    def target(self, expression: Expression, frame: str) -> np.ndarray:
        """Boolean (H, W) mask of the referred object(s) in one frame."""
        return self.targets([expression], frame)[0]

    def targets(self, expressions: list[Expression], frame: str) -> list[np.ndarray]:
        """Masks of several expressions of one video at one frame, reading the frame once."""
        if self.mask_format == "rle":
            return [self._rle_union(e.video, frame, e.anno_ids) for e in expressions]
        labels = self.load_labels(expressions[0].video, frame)
        return [np.isin(labels, e.obj_ids) for e in expressions]

    def counts(self) -> dict:
        """What `prepare` reports for a split: videos, expressions, frames, objects."""
        return {
            "videos": len(self.videos),
            "expressions": len(self.expressions),
            "frames": sum(len(v.frames) for v in self.videos.values()),
            "objects": len({(e.video, o) for e in self.expressions for o in e.obj_ids}),
            "has_masks": self.has_masks,
        }

    def objects_mask(self, video: str, frame: str) -> np.ndarray:
        """Boolean (H, W) union of every annotated object of one frame (void excluded)."""
        if self.mask_format == "rle":
            return self._rle_union(video, frame, None)
        labels = self.load_labels(video, frame)
        return (labels > 0) & (labels != VOID)

    def _rle_union(self, video: str, frame: str, anno_ids: tuple[str, ...] | None) -> np.ndarray:
        """Union of the anno ids' masks (all of the video's when None) at one frame."""
        path = self.rle_path(video)
        entry = self.videos[video]
        if frame not in entry.frames:
            raise DataError(f"{self.dataset}/{self.split}: video {video} has no frame {frame!r}")
        position = entry.frames.index(frame)
        tracks = _read_rle_file(path)
        union = np.zeros((entry.height, entry.width), dtype=bool)
        for anno_id in tracks if anno_ids is None else anno_ids:
            track = tracks.get(anno_id)
            if not isinstance(track, list) or len(track) != len(entry.frames):
                raise DataError(
                    f"{path}: anno_id {anno_id!r}: expected a list of {len(entry.frames)} masks"
                )
            if track[position] is not None:
                union |= _decode_rle(track[position], (entry.height, entry.width), path)
        return union

    def to_json(self, index_dir: Path) -> dict:
        """The index as saved in `index_dir`: an rle masks_dir is stored relative to it."""
        rle = self.mask_format == "rle"
        masks_dir = self.masks_dir
        if rle and masks_dir is not None:
            masks_dir = os.path.relpath(masks_dir, index_dir)
        return {
            "dataset": self.dataset,
            "split": self.split,
            "root": str(self.root),
            "frames_dir": self.frames_dir,
            "masks_dir": masks_dir,
            "mask_format": self.mask_format,
            "videos": {
                v.name: {"frames": list(v.frames), "height": v.height, "width": v.width}
                for v in self.videos.values()
            },
            "expressions": [
                {
                    "video": e.video,
                    "exp_id": e.exp_id,
                    "text": e.text,
                    "obj_ids": list(e.obj_ids),
                    **({"anno_ids": list(e.anno_ids)} if rle else {}),
                }
                for e in self.expressions
            ],
        }


def _read_rle_file(path: Path) -> dict:
    """The parsed per-video RLE file, re-read only when the file changes."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{path}: per-video mask file not found (run the prepare stage)") from None
    return _parse_rle_file(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=_RLE_FILES_CACHED)
def _parse_rle_file(path: str, mtime_ns: int, size: int) -> dict:
    """Cached on (path, mtime, size) so a rewritten file is never served stale."""
    tracks = read_json(path)
    if not isinstance(tracks, dict):
        raise DataError(f"{path}: expected {{anno_id: [RLE or null per frame]}}")
    return tracks


def _decode_rle(rle: dict, shape: tuple[int, int], path: Path) -> np.ndarray:
    """Boolean (H, W) mask of one compressed RLE whose size must be `shape`."""
    if not isinstance(rle, dict) or list(rle.get("size", ())) != list(shape):
        size = rle.get("size") if isinstance(rle, dict) else rle
        raise DataError(f"{path}: RLE size {size!r}, expected the frame size {list(shape)}")
    with warnings.catch_warnings():  # pycocotools 2.0.x decode warns under numpy 2; harmless
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def save_index(index: VideoIndex, path: str | Path) -> None:
    path = Path(path)
    write_json(path, index.to_json(path.parent), indent=None)


def load_index(path: str | Path) -> VideoIndex:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
        mask_format = raw.get("mask_format", "palette")
        masks_dir = raw["masks_dir"]
        if mask_format == "rle" and masks_dir is not None:
            masks_dir = str(path.parent / masks_dir)
        return VideoIndex(
            dataset=raw["dataset"],
            split=raw["split"],
            root=Path(raw["root"]),
            frames_dir=raw["frames_dir"],
            masks_dir=masks_dir,
            videos={
                name: Video(name, tuple(v["frames"]), int(v["height"]), int(v["width"]))
                for name, v in raw["videos"].items()
            },
            expressions=tuple(
                Expression(
                    e["video"],
                    str(e["exp_id"]),
                    e["text"],
                    tuple(e["obj_ids"]),
                    tuple(str(a) for a in e.get("anno_ids", ())),
                )
                for e in raw["expressions"]
            ),
            mask_format=mask_format,
        )
    except FileNotFoundError:
        raise DataError(f"{path}: prepared index not found (run the prepare stage)") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise DataError(f"{path}: not a valid prepared index ({err!r})") from None


def normalize_text(text: str) -> str:
    """Lower-case and collapse whitespace, as the reference loaders do."""
    return re.sub(r"\s+", " ", text).strip().lower()
