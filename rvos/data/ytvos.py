"""Ref-YouTube-VOS read from its release layout (FORMATS.md §1).

    <root>/train/{JPEGImages,Annotations}/<vid>/<frame>.{jpg,png}   <root>/train/meta.json
    <root>/valid/JPEGImages/<vid>/<frame>.jpg
    <root>/meta_expressions/{train,valid,test}/meta_expressions.json

The valid listing also holds the competition-test videos; they are removed using the
test listing. valid has no masks in the release; when `valid/Annotations` exists (the
demo data ships it) the split is scored locally.
"""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path
from typing import Any

from rvos.data.index import Expression, Video, VideoIndex, normalize_text
from rvos.data.media import open_image
from rvos.data.paths import inside, plain_name
from rvos.errors import DataError
from rvos.io import read_json

SPLITS = ("train", "valid")


def read_ytvos(root: str | Path, split: str) -> tuple[VideoIndex, list[dict]]:
    """Index one split; returns the index and the skipped items with their reasons."""
    if split not in SPLITS:
        raise DataError(f"Ref-YouTube-VOS split {split!r}: expected one of {SPLITS}")
    root = Path(root)
    meta_path = root / "meta_expressions" / split / "meta_expressions.json"
    listing = _videos(read_json(meta_path), meta_path)
    if split == "valid":
        test_path = root / "meta_expressions" / "test" / "meta_expressions.json"
        if test_path.is_file():
            for vid in _videos(read_json(test_path), test_path):
                listing.pop(vid, None)
    frames_dir = f"{split}/JPEGImages"
    masks_dir = f"{split}/Annotations" if (root / split / "Annotations").is_dir() else None
    if split == "train" and masks_dir is None:
        raise DataError(f"{root / 'train/Annotations'}: directory not found (training masks)")
    objects = _train_objects(root) if split == "train" else None

    videos: dict[str, Video] = {}
    expressions: list[Expression] = []
    skipped: list[dict] = []
    for vid, entry in sorted(listing.items()):
        video, reason = _check_video(root, vid, entry, frames_dir, masks_dir, meta_path)
        if video is None:
            skipped.append({"item": vid, "reason": reason})
            continue
        videos[vid] = video
        for exp_id, exp in sorted(entry["expressions"].items(), key=lambda kv: int(kv[0])):
            expression, reason = _expression(vid, exp_id, exp, objects, masks_dir is not None)
            if expression is None:
                skipped.append({"item": f"{vid}/{exp_id}", "reason": reason})
            else:
                expressions.append(expression)
    index = VideoIndex("ytvos", split, root, frames_dir, masks_dir, videos, tuple(expressions))
    return index, skipped


def hold_out(index: VideoIndex, count: int, seed: int) -> tuple[VideoIndex, VideoIndex]:
    """Split `count` videos, drawn with `seed`, off a train index: (rest, held out)."""
    if not 0 < count < len(index.videos):
        raise DataError(
            f"params.yaml: data.ytvos.holdout_videos = {count}: expected between 1 and "
            f"{len(index.videos) - 1} (the train split has {len(index.videos)} videos)"
        )
    names = sorted(index.videos)
    held = {names[i] for i in random.Random(seed).sample(range(len(names)), count)}

    def part(split: str, keep: bool) -> VideoIndex:
        return dataclasses.replace(
            index,
            split=split,
            videos={v: video for v, video in index.videos.items() if (v in held) == keep},
            expressions=tuple(e for e in index.expressions if (e.video in held) == keep),
        )

    return part("train", False), part("holdout", True)


def _videos(meta: Any, path: Path) -> dict:
    if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
        raise DataError(f"{path}: expected {{'videos': {{vid: {{'expressions', 'frames'}}}}}}")
    for vid, entry in meta["videos"].items():
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("expressions"), dict)
            or not isinstance(entry.get("frames"), list)
        ):
            raise DataError(
                f"{path}: videos[{vid!r}]: expected {{'expressions': {{exp_id: ...}}, "
                "'frames': [names]}"
            )
        bad = next((e for e in entry["expressions"] if not str(e).isdecimal()), None)
        if bad is not None:
            raise DataError(
                f"{path}: videos[{vid!r}].expressions: key {bad!r} is not a decimal expression id"
            )
    return dict(meta["videos"])


def _train_objects(root: Path) -> dict[str, set[int]]:
    path = root / "train" / "meta.json"
    meta = read_json(path)
    try:
        return {vid: {int(k) for k in v["objects"]} for vid, v in meta["videos"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        expected = "{'videos': {vid: {'objects': {obj_id: ...}}}}"
        raise DataError(f"{path}: expected {expected} ({err!r})") from None


def _check_video(
    root: Path, vid: str, entry: dict, frames_dir: str, masks_dir: str | None, meta_path: Path
) -> tuple[Video | None, str]:
    plain_name(vid, source=meta_path, key="video id")
    key = f"videos[{vid!r}].frames"
    frames = tuple(sorted(plain_name(str(f), source=meta_path, key=key) for f in entry["frames"]))
    if not frames:
        return None, f"no frames listed in {meta_path}"
    folder = inside(root / frames_dir, vid, source=meta_path, key="video id")
    present = _stems(folder, ".jpg")
    missing = [f for f in frames if f not in present]
    if missing:
        return None, f"{len(missing)} listed frames missing in {folder} (first: {missing[0]}.jpg)"
    if masks_dir is not None:
        mask_folder = inside(root / masks_dir, vid, source=meta_path, key="video id")
        absent = [f for f in frames if f not in _stems(mask_folder, ".png")]
        if absent:
            return None, f"{len(absent)} masks missing in {mask_folder} (first: {absent[0]}.png)"
    with open_image(folder / f"{frames[0]}.jpg") as image:
        width, height = image.size
    return Video(vid, frames, height, width), ""


def _stems(folder: Path, suffix: str) -> set[str]:
    try:
        return {name[: -len(suffix)] for name in os.listdir(folder) if name.endswith(suffix)}
    except FileNotFoundError:
        return set()


def _expression(
    vid: str, exp_id: str, exp: Any, objects: dict[str, set[int]] | None, has_masks: bool
) -> tuple[Expression | None, str]:
    text = normalize_text(str(exp.get("exp", ""))) if isinstance(exp, dict) else ""
    if not text:
        return None, "empty expression"
    obj_id = exp.get("obj_id")
    if obj_id is None:
        if has_masks:
            return None, "no obj_id although the split has masks"
        return Expression(vid, str(exp_id), text, ()), ""
    try:
        obj = int(obj_id)
    except (TypeError, ValueError):
        return None, f"obj_id {obj_id!r} is not an integer"
    if objects is not None and obj not in objects.get(vid, set()):
        return None, f"obj_id {obj} not among the objects of train/meta.json"
    return Expression(vid, str(exp_id), text, (obj,)), ""
