"""MeViS read from its release layout (FORMATS.md §3) and prepared into a video index.

    <root>/{train,valid_u,valid}/JPEGImages/<vid>/<frame>.jpg
    <root>/{train,valid_u,valid}/meta_expressions.json
        {"videos": {vid: {"expressions": {exp_id: {"exp", "obj_id": [int], "anno_id": [id]}},
                          "frames": [names]}}}
    <root>/{train,valid_u}/mask_dict.json
        {str(anno_id): [COCO compressed RLE {"size": [H, W], "counts": str} or null per frame]}

An expression may refer to several objects: `obj_id` and `anno_id` are parallel lists and the
target is the union of the anno ids' masks (null = absent in that frame). Whether valid lists
them is not known, so both forms are read. A mask list is indexed by the frame's position in
the listed `frames`, as the official evaluation reads it; the index keeps frames in sorted
(time) order and the masks are reordered to match.

The train mask_dict.json is several gigabytes, so `prepare_mevis` splits it into one small file
per video holding only the anno ids its expressions use, `<out>/<split>/masks/<vid>.json`, and
writes a "rle" index (rvos.data.index) whose expressions carry those anno ids.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rvos.config import Params, dataset_root
from rvos.data.index import Expression, Video, VideoIndex, normalize_text, save_index
from rvos.data.media import open_image
from rvos.data.paths import inside, plain_name
from rvos.errors import DataError
from rvos.io import atomic_dir, read_json, write_json

SPLITS = ("train", "valid_u", "valid")
LAYOUT = "the MeViS directory with train/, valid_u/, valid/ (JPEGImages/, meta_expressions.json)"
_MASKED_SPLITS = ("train", "valid_u")  # mask_dict.json is required there


@dataclass(frozen=True)
class MevisSplit:
    """One split as read: its index (no masks_dir yet), masks per video and the skipped items.

    `masks` maps every indexed video to {anno_id: [RLE | None per index frame]}, holding the
    anno ids its kept expressions use; None when the split has no mask_dict.json.
    """

    index: VideoIndex
    masks: dict[str, dict[str, list]] | None
    skipped: list[dict]


class _Problems:
    """Bad items: a DataError at the first one, or with `skip_bad` a list of skips and reasons."""

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.items: list[dict] = []

    def add(self, source: Path, item: str, reason: str) -> None:
        if not self.skip_bad:
            hint = "set data.mevis.skip_bad: true to skip such items"
            raise DataError(f"{source}: {item}: {reason} ({hint})")
        self.items.append({"item": item, "reason": f"{reason} ({source.name})"})


def read_mevis(root: str | Path, split: str, *, skip_bad: bool = False) -> MevisSplit:
    """Read and validate one split. Bad items raise a DataError unless `skip_bad`."""
    if split not in SPLITS:
        raise DataError(f"MeViS split {split!r}: expected one of {SPLITS}")
    root = Path(root)
    meta_path = root / split / "meta_expressions.json"
    listing = _listing(read_json(meta_path), meta_path)
    mask_path = root / split / "mask_dict.json"
    mask_dict = None
    if split in _MASKED_SPLITS or mask_path.is_file():
        mask_dict = read_json(mask_path)
        if not isinstance(mask_dict, dict):
            raise DataError(f"{mask_path}: expected {{anno_id: [RLE or null per frame]}}")

    problems = _Problems(skip_bad)
    videos: dict[str, Video] = {}
    expressions: list[Expression] = []
    masks: dict[str, dict[str, list]] = {}
    for vid, entry in sorted(listing.items()):
        checked = _check_video(root / split / "JPEGImages", vid, entry["frames"], meta_path)
        if isinstance(checked, str):
            problems.add(root / split / "JPEGImages", vid, checked)
            continue
        video, listed = checked
        videos[vid] = video
        tracks = _Tracks(mask_dict, video, listed)
        for exp_id, exp in entry["expressions"].items():
            item = f"{vid}/{exp_id}"
            parsed = _expression(vid, str(exp_id), exp, mask_dict is not None)
            if isinstance(parsed, str):
                problems.add(meta_path, item, parsed)
                continue
            reason = tracks.check(parsed.anno_ids)
            if reason:
                problems.add(mask_path, item, reason)
                continue
            expressions.append(parsed)
        masks[vid] = tracks.used
    index = VideoIndex(
        dataset="mevis",
        split=split,
        root=root,
        frames_dir=f"{split}/JPEGImages",
        masks_dir=None,
        videos=videos,
        expressions=tuple(expressions),
        mask_format="rle",
    )
    return MevisSplit(index, masks if mask_dict is not None else None, problems.items)


def _listing(meta: Any, path: Path) -> dict:
    """The {vid: {"expressions": {...}, "frames": [...]}} mapping, or a DataError naming `path`."""
    if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
        raise DataError(f"{path}: expected {{'videos': {{vid: {{'expressions', 'frames'}}}}}}")
    for vid, entry in meta["videos"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("expressions"), dict):
            raise DataError(f"{path}: video {vid!r}: expected {{'expressions': {{...}}, 'frames'}}")
        if "frames" not in entry:
            raise DataError(f"{path}: video {vid!r}: missing key 'frames'")
    return meta["videos"]


def _check_video(
    frames_root: Path, vid: str, listed: Any, meta_path: Path
) -> tuple[Video, list[str]] | str:
    """(the video with sorted frames, the frames as listed), or why the video is unusable.
    A name that would lead outside the dataset is an UnsafePathError, never a skip."""
    plain_name(vid, source=meta_path, key="video id")
    if not isinstance(listed, list) or not listed:
        return "expected a non-empty list of frame names in 'frames'"
    for frame in listed:
        plain_name(frame, source=meta_path, key=f"videos[{vid!r}].frames")
    if len(set(listed)) != len(listed):
        return "a frame is listed twice"
    folder = inside(frames_root, vid, source=meta_path, key="video id")
    try:
        present = {n[:-4] for n in os.listdir(folder) if n.endswith(".jpg")}
    except FileNotFoundError:
        present = set()
    missing = [f for f in listed if f not in present]
    if missing:
        return f"{len(missing)} listed frames missing in {folder} (first: {missing[0]}.jpg)"
    frames = tuple(sorted(listed))
    try:
        with open_image(folder / f"{frames[0]}.jpg") as image:
            width, height = image.size
    except DataError as err:
        return str(err)
    return Video(vid, frames, height, width), listed


def _id_list(exp: dict, key: str) -> list | None | str:
    """The list under `key`, None when absent, or why it is malformed."""
    if key not in exp:
        return None
    ids = exp[key]
    if not isinstance(ids, list) or not all(
        isinstance(i, str | int) and not isinstance(i, bool) for i in ids
    ):
        return f"{key} {ids!r}: expected a list of ids"
    return ids


def _expression(vid: str, exp_id: str, exp: Any, has_masks: bool) -> Expression | str:
    """The parsed expression, or why it is unusable."""
    if not isinstance(exp, dict):
        return "expected {'exp', 'obj_id', 'anno_id'}"
    text = exp.get("exp")
    if not isinstance(text, str) or not normalize_text(text):
        return "empty expression"
    obj_ids, anno_ids = _id_list(exp, "obj_id"), _id_list(exp, "anno_id")
    for ids in (obj_ids, anno_ids):
        if isinstance(ids, str):
            return ids
    if has_masks and anno_ids is None:
        return "no anno_id although the split has mask_dict.json"
    if has_masks and not anno_ids:
        return "anno_id is empty (no target object)"
    if obj_ids is not None and anno_ids is not None and len(obj_ids) != len(anno_ids):
        return f"obj_id {obj_ids} and anno_id {anno_ids} differ in length"
    try:
        objects = tuple(int(i) for i in obj_ids or ())
    except ValueError:
        return f"obj_id {obj_ids!r}: expected integers"
    annotations = tuple(str(i) for i in anno_ids or ())
    return Expression(vid, exp_id, normalize_text(text), objects, annotations)


class _Tracks:
    """The mask lists of one video's anno ids: checked once each, reordered to index frames."""

    def __init__(self, mask_dict: dict | None, video: Video, listed: list[str]):
        self.mask_dict = mask_dict
        self.video = video
        position = {name: i for i, name in enumerate(listed)}
        self.order = [position[f] for f in video.frames]  # index frame -> listed position
        self.used: dict[str, list] = {}
        self.reasons: dict[str, str] = {}

    def check(self, anno_ids: tuple[str, ...]) -> str:
        """'' when every anno id has a valid mask list (kept in `used`), else the first reason."""
        if self.mask_dict is None:
            return ""
        for anno_id in anno_ids:
            if anno_id not in self.reasons:
                self.reasons[anno_id] = self._check(anno_id)
            if self.reasons[anno_id]:
                return self.reasons[anno_id]
        for anno_id in anno_ids:
            track = self.mask_dict[anno_id]
            self.used[anno_id] = [track[position] for position in self.order]
        return ""

    def _check(self, anno_id: str) -> str:
        track = self.mask_dict.get(anno_id)
        if track is None:
            return f"anno_id {anno_id!r} not found"
        frames = len(self.video.frames)
        if not isinstance(track, list) or len(track) != frames:
            length = len(track) if isinstance(track, list) else type(track).__name__
            return f"anno_id {anno_id!r}: {length} masks for {frames} frames"
        size = [self.video.height, self.video.width]
        for position, rle in enumerate(track):
            if rle is None:
                continue
            if not isinstance(rle, dict) or not isinstance(rle.get("counts"), str):
                return f"anno_id {anno_id!r}, frame {position}: not a compressed RLE or null"
            if rle.get("size") != size:
                return (
                    f"anno_id {anno_id!r}, frame {position}: RLE size {rle.get('size')}, "
                    f"frame size {size}"
                )
        return ""


def save_split(split: MevisSplit, out: str | Path) -> VideoIndex:
    """Write `out/<split>.json` and, with masks, `out/<split>/masks/<vid>.json`; the saved index."""
    out = Path(out)
    index = split.index
    if split.masks is not None:
        masks_dir = out / index.split / "masks"
        for vid, tracks in split.masks.items():
            write_json(masks_dir / f"{vid}.json", tracks, indent=None)
        index = dataclasses.replace(index, masks_dir=str(masks_dir))
    save_index(index, out / f"{index.split}.json")
    return index


def prepare_mevis(params: Params, out: Path) -> dict:
    """Index every split present under data.mevis.root into `out`, which is replaced as a whole
    once every split is written; the prepare report."""
    root = dataset_root(params, "mevis", LAYOUT)
    present = [split for split in SPLITS if (root / split).is_dir()]
    if not present:
        raise DataError(f"{root}: none of the MeViS splits {SPLITS} found (expected {LAYOUT})")
    counts, skipped = {}, []
    with atomic_dir(out, marker=f"{present[0]}.json") as staging:
        for name in present:
            split = read_mevis(root, name, skip_bad=params.data.mevis.skip_bad)
            counts[name] = _counts(save_split(split, staging))
            skipped += [{**item, "split": name} for item in split.skipped]
    return {"counts": counts, "skipped": len(skipped), "skipped_items": skipped}


def _counts(index: VideoIndex) -> dict:
    multi = sum(max(len(e.obj_ids), len(e.anno_ids)) > 1 for e in index.expressions)
    return {**index.counts(), "multi_object_expressions": multi}
