"""JHMDB-Sentences read from its release layout (FORMATS.md §5); it is an evaluation set only.

    <root>/jhmdb_annotation.txt                              CSV video_id,query; one per video
    <root>/Rename_Images/<action>/<vid>/<frame:05d>.png      frames numbered from 1
    <root>/puppet_mask/<action>/<vid>/puppet_mask.mat        part_mask (H, W, T); frames past T
                                                             have no mask
    <root>/jhmdb_sentences_samples_metadata.json             the frozen sample list

The sample list is MTTR's `jhmdb_sentences_samples_metadata.json` (3 frames per sentence, 2784
samples), rows [vid, frame_path, mask_path, n_usable, query] with paths such as
`./jhmdb_sentences/Rename_Images/<action>/<vid>/00007.png`: the first folder is the dataset
root. It is read, not drawn again, so scores stay comparable with published ones. Sample ids are
`v_<vid>_f_<frame>` and the target is part_mask[..., frame - 1].
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError

from rvos.config import Params, dataset_root
from rvos.data.frame_samples import (
    FrameSample,
    FrameVideo,
    Prepared,
    SplitSamples,
    StoredMask,
    encode_mask,
    skip_or_raise,
    write_prepared,
)
from rvos.data.index import normalize_text
from rvos.data.media import check_array, load_image
from rvos.data.paths import inside, relative_path
from rvos.errors import DataError
from rvos.io import read_json

LAYOUT = "the JHMDB-Sentences directory with jhmdb_annotation.txt, Rename_Images/, puppet_mask/"
TEXT = "jhmdb_annotation.txt"
TEXT_HEADER = ["video_id", "query"]
METADATA = "jhmdb_sentences_samples_metadata.json"
FRAMES = "Rename_Images"
MASKS = "puppet_mask"
MASK_FILE = "puppet_mask.mat"
MASK_KEY = "part_mask"
_FRAME_NAME = re.compile(r"(\d+)\.png")


@dataclass(frozen=True)
class MetadataRow:
    """One row of the sample list, its paths made relative to the dataset root."""

    video: str
    action: str
    frame: int
    usable: int
    query: str


def sample_id(video: str, frame: int) -> str:
    return f"v_{video}_f_{frame}"


# ------------------------------------------------------------------------------ reading


def read_queries(path: Path) -> dict[str, str]:
    """{vid: query} from jhmdb_annotation.txt (header video_id,query)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err})") from None
    reader = csv.reader(text.splitlines())
    header = [name.strip().lstrip("\ufeff") for name in next(reader, [])]
    if header != TEXT_HEADER:
        raise DataError(
            f"{path}: line 1: expected the header {','.join(TEXT_HEADER)}, got {header}"
        )
    queries: dict[str, str] = {}
    for fields in reader:
        where = f"{path}: line {reader.line_num}"
        if not fields:
            continue
        if len(fields) != 2:
            raise DataError(f"{where}: expected 2 fields (video_id,query), got {len(fields)}")
        vid = fields[0].strip()
        if vid in queries:
            raise DataError(f"{where}: video {vid!r} has a second sentence (expected one)")
        queries[vid] = fields[1]
    return queries


def read_part_mask(path: Path) -> np.ndarray:
    """(T, H, W) bool from part_mask (H, W, T); MATLAB drops a trailing T = 1, so (H, W) is one
    frame. The array's shape and class are checked from the file's header before it is read."""
    _check_part_mask_header(path)
    try:
        raw = np.asarray(scipy.io.loadmat(str(path), variable_names=[MASK_KEY])[MASK_KEY])
    except _MAT_ERRORS as err:
        raise DataError(f"{path}: not a readable MATLAB file ({err})") from None
    if raw.ndim == 2:
        raw = raw[..., None]
    values = np.unique(raw)
    if raw.dtype.kind not in "biuf" or not np.isin(values, (0, 1)).all():
        raise DataError(f"{path}: {MASK_KEY!r} holds values {values[:8].tolist()}; expected 0/1")
    return np.moveaxis(raw, 2, 0).astype(bool)


_MAT_ERRORS = (MatReadError, ValueError, TypeError, IndexError, NotImplementedError, OSError)
_MAT_ITEMSIZE = {  # bytes per element of the numeric MATLAB classes
    "logical": 1,
    "int8": 1,
    "uint8": 1,
    "int16": 2,
    "uint16": 2,
    "int32": 4,
    "uint32": 4,
    "single": 4,
    "int64": 8,
    "uint64": 8,
    "double": 8,
}


def _check_part_mask_header(path: Path) -> None:
    """part_mask must be a numeric (H, W, T) or (H, W) array within the size limits; read from
    the variable headers without loading any data."""
    try:
        variables = {name: (shape, cls) for name, shape, cls in scipy.io.whosmat(str(path))}
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except _MAT_ERRORS as err:
        raise DataError(f"{path}: not a readable MATLAB file ({err})") from None
    if MASK_KEY not in variables:
        raise DataError(f"{path}: missing key {MASK_KEY!r} (found {sorted(variables)})")
    shape, cls = variables[MASK_KEY]
    if len(shape) not in (2, 3) or 0 in shape or cls not in _MAT_ITEMSIZE:
        raise DataError(
            f"{path}: {MASK_KEY!r} has shape {tuple(shape)} and class {cls}; expected a numeric "
            "(H, W, T) array"
        )
    check_array(path, MASK_KEY, shape, _MAT_ITEMSIZE[cls], frame=(shape[1], shape[0]))


def _relative(raw: str, top: str, where: str, key: str) -> PurePosixPath:
    """A metadata path below `top` in the root: './<root folder>/<top>/...' or '<top>/...'."""
    parts = relative_path(raw, source=where, key=key).parts
    if parts and parts[0] != top:
        parts = parts[1:]  # the dataset folder the paths were written from
    if not parts or parts[0] != top:
        raise DataError(f"{where}: {key} {raw!r} does not lead into {top}/")
    return PurePosixPath(*parts)


def _metadata_row(raw: object, where: str) -> MetadataRow:
    """Check one [vid, frame_path, mask_path, n_usable, query] row."""
    if not isinstance(raw, list) or len(raw) != 5:
        raise DataError(f"{where}: expected [vid, frame_path, mask_path, n_usable, query]")
    vid, frame_path, mask_path, usable, query = raw
    if not all(isinstance(v, str) for v in (vid, frame_path, mask_path, query)):
        raise DataError(f"{where}: vid, frame_path, mask_path and query must be strings")
    if isinstance(usable, bool) or not isinstance(usable, int) or usable < 1:
        raise DataError(f"{where}: n_usable {usable!r} is not a positive integer")
    frame = _relative(frame_path, FRAMES, where, "frame_path")
    mask = _relative(mask_path, MASKS, where, "mask_path")
    name = _FRAME_NAME.fullmatch(frame.name)
    if len(frame.parts) != 4 or frame.parts[2] != vid or name is None:
        raise DataError(
            f"{where}: frame path {frame_path!r}: expected {FRAMES}/<action>/{vid}/NNNNN.png"
        )
    if mask.parts != (MASKS, frame.parts[1], vid, MASK_FILE):
        raise DataError(
            f"{where}: mask path {mask_path!r}: expected {MASKS}/<action>/{vid}/{MASK_FILE}"
        )
    row = MetadataRow(vid, frame.parts[1], int(name.group(1)), usable, query)
    if not 1 <= row.frame <= usable:
        raise DataError(f"{where}: frame {row.frame} is outside the usable frames 1..{usable}")
    return row


def _check_video(root: Path, rows: list[MetadataRow], where: str) -> tuple[FrameVideo, np.ndarray]:
    """The video's frames and masks; every frame up to n_usable must exist and have a mask."""
    first = rows[0]
    if any((r.action, r.usable) != (first.action, first.usable) for r in rows):
        raise DataError(f"{where}: rows of {first.video} disagree on action folder or n_usable")
    source = f"{FRAMES}/{first.action}/{first.video}"
    folder = inside(root, source, source=where, key=f"frame folder of {first.video}")
    mask_file = f"{MASKS}/{first.action}/{first.video}/{MASK_FILE}"
    mask_path = inside(root, mask_file, source=where, key=f"mask file of {first.video}")
    if not folder.is_dir():
        raise DataError(f"{folder}: frame directory not found")
    names = (p.name for p in folder.iterdir())
    present = {int(m.group(1)) for m in map(_FRAME_NAME.fullmatch, names) if m}
    absent = [n for n in range(1, first.usable + 1) if n not in present]
    if absent:
        raise DataError(f"{folder}: frame {absent[0]:05d}.png missing (n_usable = {first.usable})")
    masks = read_part_mask(mask_path)
    if first.usable > len(masks):
        raise DataError(f"{where}: n_usable {first.usable} exceeds the {len(masks)} masked frames")
    height, width = masks.shape[1:]
    for row in rows:
        path = folder / f"{row.frame:05d}.png"
        size = load_image(path).size  # decoded: a truncated frame is caught here
        if size != (width, height):
            raise DataError(
                f"{path}: frame is {size[0]}x{size[1]} but {MASK_KEY} is {width}x{height}"
            )
    return FrameVideo(first.video, source, "png", first.usable, height, width), masks


# ----------------------------------------------------------------------------------- read


def read_jhmdb(
    root: str | Path, metadata: str | Path = METADATA, *, skip_bad: bool = False
) -> Prepared:
    """The test split of the frozen sample list; `metadata` is relative to root or absolute."""
    root = Path(root)
    queries = read_queries(root / TEXT)
    metadata_path = root / metadata
    if not metadata_path.is_file():
        raise DataError(
            f"{metadata_path}: file not found (the frozen sample list that MTTR ships as "
            f"datasets/jhmdb_sentences/{METADATA}; set data.jhmdb.samples_metadata)"
        )
    listing = read_json(metadata_path)
    if not isinstance(listing, list):
        raise DataError(f"{metadata_path}: expected a list of [vid, frame_path, mask_path, ...]")
    skipped: list[dict] = []
    rows = _rows(listing, metadata_path, queries, skipped, skip_bad)
    found, masks = SplitSamples(), {}
    by_video: dict[str, list[MetadataRow]] = {}
    for row in rows:
        by_video.setdefault(row.video, []).append(row)
    for vid, video_rows in by_video.items():
        try:
            video, part_mask = _check_video(root, video_rows, str(metadata_path))
        except DataError as err:
            skip_or_raise(skipped, skip_bad, vid, err, split="test")
            continue
        found.videos[vid] = video
        for row in video_rows:
            sid = sample_id(vid, row.frame)
            found.samples.append(FrameSample(sid, vid, row.frame, None, normalize_text(row.query)))
            masks.setdefault(vid, {})[sid] = StoredMask(encode_mask(part_mask[row.frame - 1]))
    for vid in queries:
        if vid not in by_video:
            reason = f"no sample in {metadata_path.name}"
            skipped.append({"item": vid, "reason": reason, "split": "test"})
    return Prepared("jhmdb", root, {"test": found}, masks, skipped)


def _rows(
    listing: list, path: Path, queries: dict[str, str], skipped: list, skip_bad: bool
) -> list[MetadataRow]:
    """The valid sample rows, each with a sentence that jhmdb_annotation.txt confirms."""
    rows, ids = [], set()
    for number, raw in enumerate(listing):
        where = f"{path}: row {number}"
        try:
            row = _metadata_row(raw, where)
            if row.video not in queries:
                raise DataError(f"{where}: video {row.video!r} is not in {TEXT}")
            text = normalize_text(row.query)
            if not text:
                raise DataError(f"{where}: empty query")
            if text != normalize_text(queries[row.video]):
                raise DataError(f"{where}: query {row.query!r} differs from {TEXT}")
            if sample_id(row.video, row.frame) in ids:
                raise DataError(f"{where}: sample {sample_id(row.video, row.frame)} repeated")
        except DataError as err:
            skip_or_raise(skipped, skip_bad, f"row {number}", err, split="test")
            continue
        ids.add(sample_id(row.video, row.frame))
        rows.append(row)
    return rows


def prepare_jhmdb(params: Params, out: Path) -> dict:
    """Validate JHMDB-Sentences; write the test index, masks and the GT COCO file."""
    cfg = params.data.jhmdb
    root = dataset_root(params, "jhmdb", LAYOUT)
    prepared = read_jhmdb(root, cfg.samples_metadata, skip_bad=cfg.skip_bad)
    counts = write_prepared(prepared, Path(out))
    return {"counts": counts, "skipped": len(prepared.skipped), "skipped_items": prepared.skipped}
