"""The prepared index of datasets annotated on single frames (A2D-Sentences, JHMDB-Sentences).

One JSON per split, written by `prepare`:

    {"dataset": "a2d", "split": "test", "root": "data/demo/a2d", "masks_dir": "masks",
     "videos": {vid: {"source": "Release/clips320H/<vid>.mp4", "kind": "mp4" | "png",
                      "frames": n, "height": H, "width": W}},
     "samples": [{"sample_id": "v_<vid>_f_<frame>_i_<instance>", "video": vid, "frame": 12,
                  "instance": 3 | null, "text": "..."}]}

Frame numbers are 1-based in both datasets. `source` is relative to `root`: an mp4 whose frame f
is decoded frame f - 1, or a directory of `<frame:05d>.png`. `frames` is the number of usable
frames; windows are clamped to [1, frames]. `masks_dir` is relative to the index file and holds
one `<vid>.json` per video, {"height": H, "width": W, "masks": {sample_id: RLE counts}}, so
training and evaluation never open the datasets' .h5 / .mat files again.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset

from rvos.data.media import check_decoded_bytes, load_image, open_video, video_bytes
from rvos.data.transforms import ClipTransform
from rvos.errors import DataError, UnsafePathError
from rvos.io import atomic_dir, read_json, write_json

GT_FILE = "test_gt_coco.json"  # the evaluation ground truth (FORMATS.md §4), beside the index


@dataclass(frozen=True)
class FrameVideo:
    name: str
    source: str
    kind: Literal["mp4", "png"]
    frames: int
    height: int
    width: int


@dataclass(frozen=True)
class FrameSample:
    sample_id: str
    video: str
    frame: int
    instance: int | None
    text: str


@dataclass(frozen=True)
class FrameIndex:
    dataset: str
    split: str
    root: Path
    masks_dir: Path
    videos: dict[str, FrameVideo]
    samples: tuple[FrameSample, ...]

    def load_frames(self, video: str, numbers: list[int]) -> list[Image.Image]:
        """RGB frames by 1-based number, in the order asked (repeats allowed)."""
        info = self.videos[video]
        source = self.root / info.source
        if info.kind == "mp4":
            return [Image.fromarray(f) for f in read_mp4_frames(source, numbers)]
        return [load_image(source / f"{n:05d}.png", "RGB") for n in numbers]

    def target(self, sample: FrameSample) -> np.ndarray:
        """Boolean (H, W) mask of the referred actor in the sample's annotated frame."""
        path = self.masks_dir / f"{sample.video}.json"
        stored = read_video_masks(path)
        if sample.sample_id not in stored["masks"]:
            raise DataError(f"{path}: no mask for sample {sample.sample_id} (run prepare again)")
        size = (stored["height"], stored["width"])
        return decode_mask(stored["masks"][sample.sample_id], size)

    def to_json(self, index_dir: Path) -> dict:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "root": str(self.root),
            "masks_dir": os.path.relpath(self.masks_dir, index_dir),
            "videos": {
                v.name: {
                    "source": v.source,
                    "kind": v.kind,
                    "frames": v.frames,
                    "height": v.height,
                    "width": v.width,
                }
                for v in self.videos.values()
            },
            "samples": [
                {
                    "sample_id": s.sample_id,
                    "video": s.video,
                    "frame": s.frame,
                    "instance": s.instance,
                    "text": s.text,
                }
                for s in self.samples
            ],
        }


def save_frame_index(index: FrameIndex, path: str | Path) -> None:
    path = Path(path)
    write_json(path, index.to_json(path.parent), indent=None)


def load_frame_index(path: str | Path) -> FrameIndex:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
        videos = {
            name: FrameVideo(
                name, v["source"], v["kind"], int(v["frames"]), int(v["height"]), int(v["width"])
            )
            for name, v in raw["videos"].items()
        }
        samples = tuple(
            FrameSample(s["sample_id"], s["video"], int(s["frame"]), s["instance"], s["text"])
            for s in raw["samples"]
        )
        index = FrameIndex(
            dataset=raw["dataset"],
            split=raw["split"],
            root=Path(raw["root"]),
            masks_dir=path.parent / raw["masks_dir"],
            videos=videos,
            samples=samples,
        )
    except FileNotFoundError:
        raise DataError(f"{path}: prepared index not found (run the prepare stage)") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise DataError(f"{path}: not a valid prepared frame index ({err!r})") from None
    unknown = [s.video for s in samples if s.video not in videos]
    if unknown:
        raise DataError(f"{path}: sample of video {unknown[0]!r}, which the index does not list")
    return index


# ------------------------------------------------------------------------------- frames


def probe_mp4(path: Path) -> tuple[int, int, int]:
    """(frame count, height, width) of a video, counted by decoding: container counts can lie,
    so decoding stops once the frames counted exceed the decoded-size limit."""
    with open_video(path) as capture:
        count, height, width = 0, 0, 0
        ok, frame = capture.read()
        if ok:
            height, width = frame.shape[:2]
        while ok:
            count += 1
            check_decoded_bytes(path, f"{count} frames", video_bytes(count, height, width))
            ok = capture.grab()
    if count == 0:
        raise DataError(f"{path}: not a readable video (no frame could be decoded)")
    return count, height, width


def read_mp4_frames(path: Path, numbers: list[int]) -> list[np.ndarray]:
    """RGB (H, W, 3) frames by 1-based number: frame f is decoded frame f - 1."""
    if not numbers:
        return []
    wanted = {n - 1 for n in numbers}
    if min(wanted) < 0:
        raise DataError(f"{path}: frame numbers start at 1, got {min(numbers)}")
    decoded: dict[int, np.ndarray] = {}
    with open_video(path) as capture:
        for position in range(max(wanted) + 1):
            ok = capture.grab()
            if not ok:
                raise DataError(f"{path}: frame {position + 1} cannot be decoded (video too short)")
            if position in wanted:
                ok, bgr = capture.retrieve()
                if not ok:
                    raise DataError(f"{path}: frame {position + 1} cannot be decoded")
                decoded[position] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return [decoded[n - 1] for n in numbers]


# -------------------------------------------------------------------------------- masks


def encode_mask(mask: np.ndarray) -> str:
    """The ASCII counts of a boolean (H, W) mask's COCO compressed RLE."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return rle["counts"].decode("ascii")


def decode_mask(counts: str, size: tuple[int, int]) -> np.ndarray:
    with warnings.catch_warnings():  # pycocotools 2.0.x decode warns under numpy 2; harmless
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return mask_utils.decode({"size": list(size), "counts": counts}).astype(bool)


def rle_area(counts: str, size: tuple[int, int]) -> float:
    return float(mask_utils.area({"size": list(size), "counts": counts}))


def read_video_masks(path: Path) -> dict:
    stored = read_json(path)
    if not isinstance(stored, dict) or not {"height", "width", "masks"} <= stored.keys():
        raise DataError(f"{path}: expected {{'height', 'width', 'masks': {{sample_id: counts}}}}")
    return stored


# ------------------------------------------------------------------------ prepared output


@dataclass(frozen=True)
class StoredMask:
    """One sample's mask as RLE counts, and the dataset's own box [x1, y1, x2, y2] if any."""

    counts: str
    box: tuple[float, float, float, float] | None = None


@dataclass
class SplitSamples:
    videos: dict[str, FrameVideo] = field(default_factory=dict)
    samples: list[FrameSample] = field(default_factory=list)


@dataclass
class Prepared:
    """What a reader found: per split the videos and samples, every sample's mask, the skips."""

    dataset: str
    root: Path
    splits: dict[str, SplitSamples]
    masks: dict[str, dict[str, StoredMask]]  # video -> sample_id -> mask, for every sample
    skipped: list[dict]


def skip_or_raise(skipped: list[dict], skip_bad: bool, item: str, error: DataError, **extra):
    """Record a bad item with its reason when skipping is allowed; otherwise stop on it. A path
    leading outside the dataset always stops."""
    if not skip_bad or isinstance(error, UnsafePathError):
        raise error
    skipped.append({"item": item, "reason": str(error), **extra})


def write_prepared(prepared: Prepared, out: Path) -> dict:
    """Write the masks, one index per split and the test GT COCO file; return the counts.

    `out` is replaced as a whole once everything is written (rvos.io.atomic_dir)."""
    out = Path(out)
    counts = {}
    with atomic_dir(out, marker=f"{next(iter(prepared.splits))}.json") as staging:
        masks_dir = staging / "masks"
        for split, found in prepared.splits.items():
            for name, video in found.videos.items():
                stored = {sid: mask.counts for sid, mask in prepared.masks[name].items()}
                payload = {"height": video.height, "width": video.width, "masks": stored}
                write_json(masks_dir / f"{name}.json", payload, indent=None)
            index = FrameIndex(
                prepared.dataset,
                split,
                prepared.root,
                masks_dir,
                found.videos,
                tuple(found.samples),
            )
            save_frame_index(index, staging / f"{split}.json")
            counts[split] = _counts(found)
        if "test" in prepared.splits:
            gt = gt_coco(prepared.splits["test"], prepared.masks)
            write_json(staging / GT_FILE, gt, indent=None)
    return counts


def _counts(found: SplitSamples) -> dict:
    samples = found.samples
    return {
        "videos": len(found.videos),
        "samples": len(samples),
        "expressions": len({(s.video, s.instance, s.text) for s in samples}),
        "annotated_frames": len({(s.video, s.frame) for s in samples}),
        "instances": len({(s.video, s.instance) for s in samples}),
    }


def gt_coco(found: SplitSamples, masks: dict[str, dict[str, StoredMask]]) -> dict:
    """The GT COCO dict of FORMATS.md §4: one image per sample, one annotation per image."""
    images, annotations = [], []
    for number, sample in enumerate(found.samples, start=1):
        video = found.videos[sample.video]
        size = (video.height, video.width)
        stored = masks[sample.video][sample.sample_id]
        images.append({"id": sample.sample_id, "height": video.height, "width": video.width})
        annotation = {
            "id": number,
            "image_id": sample.sample_id,
            "category_id": 1,
            "segmentation": {"size": list(size), "counts": stored.counts},
            "area": rle_area(stored.counts, size),
            "iscrowd": 0,
        }
        if stored.box is not None:
            x1, y1, x2, y2 = stored.box
            annotation["bbox"] = [x1, y1, x2 - x1, y2 - y1]
        annotations.append(annotation)
    categories = [{"id": 1, "name": "referred"}]
    return {"categories": categories, "images": images, "annotations": annotations}


# ------------------------------------------------------------------------------ dataset


def window(frame: int, length: int, count: int) -> list[int]:
    """`length` frame numbers with `frame` at position length // 2, clamped to [1, count]."""
    start = frame - length // 2
    return [min(max(n, 1), count) for n in range(start, start + length)]


class FrameWindowDataset(Dataset):
    """One item per sample: a window of frames around its annotated frame, as MTTR and
    ReferFormer evaluate A2D/JHMDB; only the centre frame (position T // 2) has a target.

    Items: {"frames": (T, 3, H, W), "masks": (1, T, H, W), "texts": [str], "valid": (T,) bool,
    "sample_id": str}, the datasets' shared form (see rvos.data.datasets); frames without a
    target get an empty mask and valid = False.
    """

    def __init__(self, index: FrameIndex, num_frames: int, transform: ClipTransform):
        if num_frames < 1:
            raise ValueError(f"num_frames must be at least 1, got {num_frames}")
        self.index = index
        self.num_frames = num_frames
        self.transform = transform

    def __len__(self) -> int:
        return len(self.index.samples)

    def __getitem__(self, i: int) -> dict:
        sample = self.index.samples[i]
        video = self.index.videos[sample.video]
        numbers = window(sample.frame, self.num_frames, video.frames)
        images = self.index.load_frames(sample.video, numbers)
        centre = self.num_frames // 2
        empty = np.zeros((video.height, video.width), dtype=bool)
        masks = [empty] * self.num_frames
        masks[centre] = self.index.target(sample)
        clip, targets, texts = self.transform.many(images, [masks], [sample.text])
        valid = torch.zeros(self.num_frames, dtype=torch.bool)
        valid[centre] = True
        return {
            "frames": clip,
            "masks": targets,
            "texts": texts,
            "valid": valid,
            "sample_id": sample.sample_id,
        }
