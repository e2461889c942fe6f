"""A2D-Sentences read from its release layout (FORMATS.md §4).

    <root>/Release/videoset.csv                     no header; 9 columns, the last is the subset
                                                    (0 = train, 1 = test)
    <root>/Release/clips320H/<vid>.mp4              frame f (1-based) is decoded frame f - 1
    <root>/text_annotations/a2d_annotation.txt      CSV video_id,instance_id,query
    <root>/text_annotations/a2d_missed_videos.txt   excluded videos, one per line
    <root>/text_annotations/a2d_annotation_with_instances/<vid>/<frame:05d>.h5

Samples are formed as the reference code forms them: for each text row of a video in the split,
every annotated frame (in order) whose `instance` list holds the row's instance gives the sample
`v_<vid>_f_<frame>_i_<instance>`; frames without that instance give none. Each .h5 file holds
`instance` (N ids), `reMask` (N, W, H), or (W, H) when N = 1, stored transposed, and `reBBox`
(4, N) with columns [x1, y1, x2, y2]. The dtypes of `instance` and `reBBox` are not documented,
so integral floats and a (1, N) or (N, 1) `instance` are accepted too.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from rvos.config import Params, dataset_root
from rvos.data.frame_samples import (
    FrameSample,
    FrameVideo,
    Prepared,
    SplitSamples,
    StoredMask,
    encode_mask,
    probe_mp4,
    skip_or_raise,
    write_prepared,
)
from rvos.data.index import normalize_text
from rvos.data.media import check_array
from rvos.data.paths import inside, plain_name
from rvos.errors import DataError

LAYOUT = (
    "the A2D-Sentences directory with Release/ (videoset.csv, clips320H/) and text_annotations/"
)
SUBSETS = {"train": 0, "test": 1}
COPY_ROW = "1 (copy)"  # a duplicated row of video T6bNPuKV-wY that the reference code drops
VIDEOSET = "Release/videoset.csv"
CLIPS = "Release/clips320H"
TEXT = "text_annotations/a2d_annotation.txt"
MISSED = "text_annotations/a2d_missed_videos.txt"
ANNOTATIONS = "text_annotations/a2d_annotation_with_instances"
TEXT_HEADER = ["video_id", "instance_id", "query"]
_VIDEOSET_COLUMNS = 9
_FRAME_NAME = re.compile(r"\d+")


@dataclass(frozen=True)
class TextRow:
    line: int
    video: str
    instance: str
    query: str


@dataclass(frozen=True)
class FrameAnnotation:
    """One annotated frame: instance ids (N,), masks (N, H, W) bool, boxes (N, 4) x1 y1 x2 y2."""

    instances: tuple[int, ...]
    masks: np.ndarray
    boxes: np.ndarray


@dataclass(frozen=True)
class _Video:
    info: FrameVideo
    frames: dict[int, dict[int, StoredMask]]  # frame number -> instance -> mask


def sample_id(video: str, frame: int, instance: int) -> str:
    return f"v_{video}_f_{frame}_i_{instance}"


# ----------------------------------------------------------------------------- text files


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err})") from None


def read_videoset(path: Path) -> dict[str, int]:
    """{vid: subset} from videoset.csv (no header, 9 columns, subset 0 = train / 1 = test)."""
    reader = csv.reader(_read_text(path).splitlines())
    subsets: dict[str, int] = {}
    for fields in reader:
        where = f"{path}: line {reader.line_num}"
        if not fields:
            continue
        if len(fields) != _VIDEOSET_COLUMNS:
            raise DataError(f"{where}: expected {_VIDEOSET_COLUMNS} columns, got {len(fields)}")
        vid, subset = fields[0].strip(), fields[-1].strip()
        if subset not in ("0", "1"):
            raise DataError(f"{where}: subset {subset!r} is not 0 (train) or 1 (test)")
        if vid in subsets:
            raise DataError(f"{where}: video {vid!r} listed twice")
        subsets[vid] = int(subset)
    if not subsets:
        raise DataError(f"{path}: no videos listed")
    return subsets


def read_text_rows(path: Path) -> list[TextRow]:
    """The rows of a2d_annotation.txt, after its header video_id,instance_id,query."""
    reader = csv.reader(_read_text(path).splitlines())
    header = [name.strip().lstrip("\ufeff") for name in next(reader, [])]
    if header != TEXT_HEADER:
        raise DataError(
            f"{path}: line 1: expected the header {','.join(TEXT_HEADER)}, got {header}"
        )
    rows = []
    for fields in reader:
        if not fields:
            continue
        if len(fields) != len(TEXT_HEADER):
            raise DataError(
                f"{path}: line {reader.line_num}: expected 3 fields (video_id,instance_id,query),"
                f" got {len(fields)}"
            )
        rows.append(TextRow(reader.line_num, fields[0].strip(), fields[1].strip(), fields[2]))
    return rows


def read_missed(path: Path) -> set[str]:
    return {line.strip() for line in _read_text(path).splitlines() if line.strip()}


# ------------------------------------------------------------------------------ h5 files


def read_frame_annotation(path: Path) -> FrameAnnotation:
    """Instances, (H, W) masks and boxes of one .h5 file; reMask is stored transposed."""
    try:
        handle = h5py.File(path, "r")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file ({err})") from None
    with handle:
        missing = [key for key in ("instance", "reMask", "reBBox") if key not in handle]
        if missing:
            raise DataError(f"{path}: missing key(s) {missing} (expected instance, reMask, reBBox)")
        instances = _instance_ids(_read_array(handle, "instance", path), path)
        masks = _masks(_read_array(handle, "reMask", path, masks=True), len(instances), path)
        boxes = _boxes(_read_array(handle, "reBBox", path), len(instances), path)
    return FrameAnnotation(instances, masks, boxes)


def _read_array(handle: h5py.File, key: str, path: Path, *, masks: bool = False) -> np.ndarray:
    """The array under `key`, its size checked from the file's header before it is read; with
    `masks`, its last two axes are one mask's (W, H) and held to the pixel limit too."""
    item = handle[key]
    if not isinstance(item, h5py.Dataset):
        raise DataError(f"{path}: {key!r} is a group; expected an array")
    frame = item.shape[-2:] if masks and item.ndim >= 2 else None
    check_array(path, key, item.shape, item.dtype.itemsize, frame)
    return np.asarray(item[()])


def _instance_ids(raw: np.ndarray, path: Path) -> tuple[int, ...]:
    """1-D ids; a MATLAB-style (1, N) or (N, 1) array and integral floats are accepted."""
    if raw.ndim == 2 and 1 in raw.shape:
        raw = raw.reshape(-1)
    if raw.ndim != 1 or raw.size == 0 or raw.dtype.kind not in "iuf":
        raise DataError(
            f"{path}: 'instance' has shape {raw.shape} and dtype {raw.dtype}; "
            "expected a non-empty 1-D array of integer ids"
        )
    if not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)):
        raise DataError(f"{path}: 'instance' holds non-integer values {raw.tolist()}")
    ids = tuple(int(v) for v in raw)
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: 'instance' repeats an id: {list(ids)}")
    return ids


def _masks(raw: np.ndarray, count: int, path: Path) -> np.ndarray:
    """(N, H, W) bool from reMask (N, W, H), or (W, H) when N = 1."""
    if count == 1 and raw.ndim == 2:
        raw = raw[None]
    if raw.ndim != 3 or raw.shape[0] != count:
        expected = "(W, H) or (1, W, H)" if count == 1 else f"({count}, W, H)"
        raise DataError(
            f"{path}: 'reMask' has shape {raw.shape}; expected {expected} for {count} instance(s)"
        )
    values = np.unique(raw)
    if raw.dtype.kind not in "biuf" or not np.isin(values, (0, 1)).all():
        raise DataError(f"{path}: 'reMask' holds values {values[:8].tolist()}; expected 0/1")
    return np.ascontiguousarray(raw.swapaxes(1, 2)).astype(bool)


def _boxes(raw: np.ndarray, count: int, path: Path) -> np.ndarray:
    """(N, 4) [x1, y1, x2, y2] from reBBox (4, N); any shape of 4 values when N = 1."""
    if count == 1 and raw.size == 4:
        raw = raw.reshape(4, 1)
    if raw.shape != (4, count) or raw.dtype.kind not in "iuf" or not np.isfinite(raw).all():
        raise DataError(
            f"{path}: 'reBBox' has shape {raw.shape} and dtype {raw.dtype}; expected (4, {count})"
            " finite numbers (columns x1, y1, x2, y2)"
        )
    return raw.T.astype(float)


# --------------------------------------------------------------------------------- videos


def _read_video(root: Path, vid: str, where: str) -> _Video:
    """Check a video and its annotated frames; keep every instance's mask as RLE."""
    plain_name(vid, source=where, key="video_id")
    folder = inside(root / ANNOTATIONS, vid, source=where, key="video_id")
    mp4 = root / CLIPS / f"{vid}.mp4"
    count, height, width = probe_mp4(mp4)
    if not folder.is_dir():
        raise DataError(f"{folder}: directory not found (the annotated frames of {vid})")
    files = [p for p in folder.iterdir() if p.suffix == ".h5"]
    if not files:
        raise DataError(f"{folder}: no .h5 annotation files")
    frames = {}
    for path in files:
        if not _FRAME_NAME.fullmatch(path.stem):
            raise DataError(f"{path}: expected a frame number as file name (00012.h5)")
        frame = int(path.stem)
        if not 1 <= frame <= count:
            raise DataError(f"{path}: frame {frame} is outside {mp4} (frames 1..{count})")
        annotation = read_frame_annotation(path)
        if annotation.masks.shape[1:] != (height, width):
            mask_h, mask_w = annotation.masks.shape[1:]
            raise DataError(
                f"{path}: reMask is {mask_w}x{mask_h} (width x height) but {mp4} is "
                f"{width}x{height}"
            )
        frames[frame] = {
            instance: StoredMask(encode_mask(mask), tuple(float(v) for v in box))
            for instance, mask, box in zip(
                annotation.instances, annotation.masks, annotation.boxes, strict=True
            )
        }
    info = FrameVideo(vid, f"{CLIPS}/{vid}.mp4", "mp4", count, height, width)
    return _Video(info, dict(sorted(frames.items())))


def _row_fields(row: TextRow, split_of: dict[str, str], path: Path) -> tuple[str, int, str]:
    """(split, instance id, normalised text) of a text row, or a DataError naming its line."""
    where = f"{path}: line {row.line}"
    if row.video not in split_of:
        raise DataError(f"{where}: video {row.video!r} is not in {VIDEOSET}")
    try:
        instance = int(row.instance)
    except ValueError:
        raise DataError(f"{where}: instance_id {row.instance!r} is not an integer") from None
    text = normalize_text(row.query)
    if not text:
        raise DataError(f"{where}: empty query")
    return split_of[row.video], instance, text


# ---------------------------------------------------------------------------------- read


def read_a2d(root: str | Path, *, skip_bad: bool = False) -> Prepared:
    """Both splits' samples and masks; bad input stops with a DataError unless skip_bad."""
    root = Path(root)
    subsets = read_videoset(root / VIDEOSET)
    missed = read_missed(root / MISSED)
    text_path = root / TEXT
    rows = read_text_rows(text_path)
    names = {code: split for split, code in SUBSETS.items()}
    split_of = {vid: names[code] for vid, code in subsets.items()}
    skipped = [
        {"item": vid, "reason": f"listed in {MISSED}", "split": split_of[vid]}
        for vid in sorted(missed & split_of.keys())
    ]
    splits = {split: SplitSamples() for split in SUBSETS}
    masks: dict[str, dict[str, StoredMask]] = {}
    videos: dict[str, _Video | None] = {}
    seen: dict[tuple[str, int], int] = {}  # (video, instance) -> line of its text row
    for row in rows:
        item = f"{row.video}/{row.instance}"
        if row.video in missed:
            continue
        if row.instance == COPY_ROW:
            skipped.append({"item": item, "reason": "duplicated annotation row '1 (copy)'"})
            continue
        try:
            split, instance, text = _row_fields(row, split_of, text_path)
            if (row.video, instance) in seen:
                line = seen[(row.video, instance)]
                raise DataError(
                    f"{text_path}: line {row.line}: repeats the instance of line {line}"
                )
        except DataError as err:
            skip_or_raise(skipped, skip_bad, item, err)
            continue
        seen[(row.video, instance)] = row.line
        if row.video not in videos:
            videos[row.video] = _checked_video(root, row, text_path, skipped, skip_bad, split)
        video = videos[row.video]
        if video is None:
            continue
        frames = [f for f, present in video.frames.items() if instance in present]
        if not frames:
            reason = f"instance {instance} is in none of the {len(video.frames)} annotated frames"
            skipped.append({"item": item, "reason": reason, "split": split})
            continue
        found = splits[split]
        found.videos[row.video] = video.info
        for frame in frames:
            sid = sample_id(row.video, frame, instance)
            found.samples.append(FrameSample(sid, row.video, frame, instance, text))
            masks.setdefault(row.video, {})[sid] = video.frames[frame][instance]
    return Prepared("a2d", root, splits, masks, skipped)


def _checked_video(
    root: Path, row: TextRow, text_path: Path, skipped: list, skip_bad: bool, split: str
) -> _Video | None:
    try:
        return _read_video(root, row.video, f"{text_path}: line {row.line}")
    except DataError as err:
        skip_or_raise(skipped, skip_bad, row.video, err, split=split)
        return None


def prepare_a2d(params: Params, out: Path) -> dict:
    """Validate A2D-Sentences; write train/test indexes, masks and the test GT COCO file."""
    root = dataset_root(params, "a2d", LAYOUT)
    prepared = read_a2d(root, skip_bad=params.data.a2d.skip_bad)
    counts = write_prepared(prepared, Path(out))
    return {"counts": counts, "skipped": len(prepared.skipped), "skipped_items": prepared.skipped}
