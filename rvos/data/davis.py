"""Ref-DAVIS17 from its release files, converted to the Ref-YouTube-VOS layout (FORMATS.md §2).

    <root>/DAVIS/JPEGImages/480p/<seq>/<frame>.jpg
    <root>/DAVIS/Annotations_unsupervised/480p/<seq>/<frame>.png    palette PNG, 255 = void
    <root>/DAVIS/ImageSets/2017/{train,val}.txt                      one sequence per line
    <root>/DAVIS/davis_semantics.json                                {seq: {"1": category}}
    <root>/davis_text_annotations/Davis17_annot{1,2}[_full_video].txt  seq obj_id "expression"

The conversion writes `<out>/{train,valid}/{JPEGImages,Annotations}/<seq>/`, `meta.json` and
`meta_expressions/` as Ref-YouTube-VOS has them, so the Ref-YouTube-VOS reader indexes the
result. Files are copied, never linked or moved: the unsupervised evaluator scores against the
untouched DAVIS tree (its location goes to `<out>/davis_source.json`), and a cache that makes its
files read-only must not reach into the dataset.

Expression ids follow the Ref-DAVIS17 protocol that `rvos.eval.refdavis` scores: objects sorted
by id, object k gets id 4k + a from text file a of TEXT_FILES, and the four per-sequence lists
are zipped, so objects beyond the shortest list are left out (and reported).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rvos.config import Params, dataset_root
from rvos.data import ytvos
from rvos.data.index import save_index
from rvos.data.media import open_image
from rvos.data.paths import inside, plain_name
from rvos.errors import DataError
from rvos.io import atomic_dir, read_json, write_json

LAYOUT = "the Ref-DAVIS17 directory with DAVIS/ and davis_text_annotations/"
SPLITS = {"train": "train", "valid": "val"}  # converted split -> DAVIS 2017 image set
# The four text files in expression-variant order a = 0..3, with the encodings they ship in.
TEXT_FILES = (
    ("Davis17_annot1.txt", "utf-8"),
    ("Davis17_annot1_full_video.txt", "utf-8"),
    ("Davis17_annot2.txt", "latin-1"),
    ("Davis17_annot2_full_video.txt", "latin-1"),
)
# Sequence names the text files misspell.
RENAMES = {"clasic-car": "classic-car", "dog-scale": "dogs-scale", "motor-bike": "motorbike"}
SOURCE_FILE = "davis_source.json"
_SKIP_HINT = "set data.davis.skip_bad: true to skip such items"


class _BadItem(Exception):
    """One unusable input item: the file (and line) at fault and what was expected."""

    def __init__(self, where: str | Path, reason: str):
        super().__init__(f"{where}: {reason}")
        self.where, self.reason = str(where), reason


@dataclass
class Skips:
    """Items left out of the conversion; bad input among them is an error unless skip_bad."""

    skip_bad: bool
    items: list[dict] = field(default_factory=list)

    def bad(self, item: str, problem: _BadItem) -> None:
        if not self.skip_bad:
            raise DataError(f"{problem.where}: {problem.reason} ({_SKIP_HINT})")
        self.items.append({"item": item, "reason": f"{problem.where}: {problem.reason}"})

    def left_out(self, item: str, reason: str) -> None:
        """Not an input error: the protocol itself leaves this item out."""
        self.items.append({"item": item, "reason": reason})


@dataclass(frozen=True)
class DavisSequence:
    """One checked sequence: its converted split, sorted frame stems and objects {id: category}."""

    name: str
    split: str
    frames: tuple[str, ...]
    objects: dict[int, str]


@dataclass(frozen=True)
class TextLine:
    """One expression line; `seq` carries the corrected name, `where` is `<file>, line <n>`."""

    seq: str
    obj_id: int
    text: str
    where: str


# ---------------------------------------------------------------------------------- reading


def read_image_sets(davis: Path) -> dict[str, list[str]]:
    """{"train": [seq, ...], "valid": [seq, ...]} from ImageSets/2017/{train,val}.txt."""
    sets = {}
    for split, name in SPLITS.items():
        path = davis / "ImageSets" / "2017" / f"{name}.txt"
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise DataError(f"{path}: file not found (the DAVIS 2017 {name} sequences)") from None
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not UTF-8 text ({err.reason})") from None
        sets[split] = [line.strip() for line in lines if line.strip()]
    return sets


def read_sequences(
    davis: Path, image_sets: dict[str, list[str]], skips: Skips
) -> dict[str, DavisSequence]:
    """The sequences of both image sets that pass every check, by name."""
    semantics_path = davis / "davis_semantics.json"
    semantics = read_json(semantics_path)
    if not isinstance(semantics, dict):
        raise DataError(f'{semantics_path}: expected {{seq: {{"1": category, ...}}}}')
    sequences: dict[str, DavisSequence] = {}
    listed: set[str] = set()
    for split, names in image_sets.items():
        list_path = davis / "ImageSets" / "2017" / f"{SPLITS[split]}.txt"
        for name in names:
            try:
                if name in listed:
                    raise _BadItem(list_path, f"sequence {name!r} is listed twice")
                listed.add(name)
                sequences[name] = _check_sequence(davis, split, name, semantics, list_path)
            except _BadItem as problem:
                skips.bad(name, problem)
    return sequences


def _check_sequence(
    davis: Path, split: str, name: str, semantics: dict, list_path: Path
) -> DavisSequence:
    plain_name(name, source=list_path, key="sequence")
    frames_dir = inside(davis / "JPEGImages" / "480p", name, source=list_path, key="sequence")
    frames = sorted(_stems(frames_dir, ".jpg"))
    if not frames:
        raise _BadItem(frames_dir, "no .jpg frames (directory missing or empty)")
    masks_root = davis / "Annotations_unsupervised" / "480p"
    masks_dir = inside(masks_root, name, source=list_path, key="sequence")
    masks = _stems(masks_dir, ".png")
    missing = [f for f in frames if f not in masks]
    if missing:
        raise _BadItem(masks_dir, f"{len(missing)} frames have no mask (first: {missing[0]}.png)")
    objects = _semantic_objects(semantics, name, davis / "davis_semantics.json")
    size, _ = _header(frames_dir / f"{frames[0]}.jpg")
    for frame in frames:
        _check_frame(frames_dir / f"{frame}.jpg", masks_dir / f"{frame}.png", size)
    return DavisSequence(name, split, tuple(frames), objects)


def _semantic_objects(semantics: dict, name: str, path: Path) -> dict[int, str]:
    if name not in semantics:
        raise _BadItem(path, f"no entry for sequence {name!r}")
    objects = semantics[name]
    valid = (
        isinstance(objects, dict)
        and objects
        and all(
            isinstance(k, str) and k.isascii() and k.isdigit() and int(k) > 0 and isinstance(v, str)
            for k, v in objects.items()
        )
    )
    if not valid:
        raise _BadItem(path, f'{name}: expected {{"1": category, ...}}, got {objects!r:.80}')
    return {int(k): v for k, v in objects.items()}


def _stems(folder: Path, suffix: str) -> set[str]:
    try:
        return {name[: -len(suffix)] for name in os.listdir(folder) if name.endswith(suffix)}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def _header(path: Path) -> tuple[tuple[int, int], str]:
    """(width, height) and mode from the file header, without decoding the pixels."""
    try:
        with open_image(path) as image:
            return image.size, image.mode
    except DataError as err:
        raise _BadItem(path, str(err).removeprefix(f"{path}: ")) from None


def _check_frame(frame: Path, mask: Path, size: tuple[int, int]) -> None:
    frame_size, _ = _header(frame)
    if frame_size != size:
        raise _BadItem(frame, f"frame is {_wh(frame_size)}, the sequence's first is {_wh(size)}")
    mask_size, mode = _header(mask)
    if mode not in ("P", "L"):
        raise _BadItem(mask, f"expected a palette (P) PNG, got mode {mode}")
    if mask_size != size:
        raise _BadItem(mask, f"mask is {_wh(mask_size)}, its frame is {_wh(size)}")


def _wh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def read_text_annotations(path: Path, encoding: str, skips: Skips) -> list[TextLine]:
    """The expression lines of one text file, sequence names corrected."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (a Ref-DAVIS17 text annotation file)") from None
    lines = []
    for number, raw in enumerate(data.splitlines(), start=1):
        where = f"{path}, line {number}"
        try:
            line = _parse_line(raw, encoding, where)
        except _BadItem as problem:
            skips.bad(f"{path.name}:{number}", problem)
            continue
        if line is not None:
            lines.append(line)
    return lines


def _parse_line(raw: bytes, encoding: str, where: str) -> TextLine | None:
    try:
        line = raw.decode(encoding).strip()
    except UnicodeDecodeError as err:
        raise _BadItem(where, f"not valid {encoding} ({err.reason} at byte {err.start})") from None
    if not line:
        return None
    parts = line.split(maxsplit=2)
    if len(parts) < 3 or len(parts[2]) < 2 or not parts[2][0] == parts[2][-1] == '"':
        raise _BadItem(where, f'expected: seq obj_id "expression", got {line!r}')
    seq, obj_id, quoted = parts
    if not (obj_id.isascii() and obj_id.isdigit() and int(obj_id) > 0):
        raise _BadItem(where, f"object id {obj_id!r} is not a positive integer")
    text = quoted[1:-1].strip()
    if not text:
        raise _BadItem(where, "empty expression")
    return TextLine(RENAMES.get(seq, seq), int(obj_id), text, where)


def _by_sequence(
    lines: list[TextLine], sequences: dict[str, DavisSequence], listed: set[str], skips: Skips
) -> dict[str, dict[int, str]]:
    """{seq: {obj_id: text}} of one text file, every line checked against the sequences."""
    texts: dict[str, dict[int, str]] = {}
    for line in lines:
        item = f"{line.seq}/{line.obj_id}"
        if line.seq in listed and line.seq not in sequences:
            continue  # the sequence itself was skipped, with its reason
        try:
            _check_line(line, sequences, texts)
        except _BadItem as problem:
            skips.bad(item, problem)
            continue
        texts.setdefault(line.seq, {})[line.obj_id] = line.text
    return texts


def _check_line(line: TextLine, sequences: dict[str, DavisSequence], texts: dict) -> None:
    if line.seq not in sequences:
        raise _BadItem(line.where, f"sequence {line.seq!r} is in neither train.txt nor val.txt")
    objects = sequences[line.seq].objects
    if line.obj_id not in objects:
        known = sorted(objects)
        raise _BadItem(
            line.where, f"object {line.obj_id} of {line.seq} not in davis_semantics.json {known}"
        )
    if line.obj_id in texts.get(line.seq, {}):
        raise _BadItem(line.where, f"a second expression for object {line.obj_id} of {line.seq}")


# ------------------------------------------------------------------------------- converting


def assign_expressions(
    seq: DavisSequence, per_file: list[dict[int, str]], skips: Skips
) -> dict[str, dict]:
    """meta_expressions entries of one sequence: the k-th object by id gets 4k + a from file a.

    The four lists are zipped, so only as many objects as the shortest list are kept.
    """
    lists = [sorted(texts.items()) for texts in per_file]
    kept = min(len(items) for items in lists)
    for (file_name, _), items in zip(TEXT_FILES, lists, strict=True):
        for obj_id, _ in items[kept:]:
            reason = f"{file_name}: cut, {seq.name} has {kept} objects in all four text files"
            skips.left_out(f"{seq.name}/{obj_id}", reason)
    described = {obj_id for texts in per_file for obj_id in texts}
    for obj_id in sorted(set(seq.objects) - described):
        skips.left_out(f"{seq.name}/{obj_id}", "no expression in any text file")
    variants = len(TEXT_FILES)
    return {
        str(variants * k + a): {"exp": lists[a][k][1], "obj_id": str(lists[a][k][0])}
        for k in range(kept)
        for a in range(variants)
    }


def convert_davis(root: str | Path, out: str | Path, *, skip_bad: bool = False) -> dict:
    """Convert Ref-DAVIS17 at `root` into `out` and index it; returns the prepare report.

    Writes `<out>/{train,valid,meta_expressions}` (Ref-YouTube-VOS layout), `<out>/{train,
    valid}.json` (prepared indexes; valid keeps masks and object ids for local scoring) and
    `<out>/davis_source.json` ({"davis_root", "image_sets"}: the untouched tree the unsupervised
    evaluator reads). Everything is checked before anything is written, and `out` is replaced as
    a whole once the new tree is complete.
    """
    root, out = Path(root), Path(out)
    davis = root / "DAVIS"
    if not davis.is_dir():
        raise DataError(f"{davis}: directory not found (the DAVIS 2017 unsupervised release)")
    _check_apart(root, out)
    skips = Skips(skip_bad)
    image_sets = read_image_sets(davis)
    sequences = read_sequences(davis, image_sets, skips)
    listed = {name for names in image_sets.values() for name in names}
    per_file = [
        _by_sequence(
            read_text_annotations(root / "davis_text_annotations" / name, encoding, skips),
            sequences,
            listed,
            skips,
        )
        for name, encoding in TEXT_FILES
    ]
    metas: dict[str, dict[str, dict]] = {split: {} for split in SPLITS}
    for seq in sequences.values():
        expressions = assign_expressions(
            seq, [texts.get(seq.name, {}) for texts in per_file], skips
        )
        if expressions:
            metas[seq.split][seq.name] = expressions
        else:
            skips.left_out(seq.name, "no object is described in all four text files")
    with atomic_dir(out, marker=SOURCE_FILE) as staging:
        copied = _write_converted(davis, staging, sequences, metas)
        counts = {split: _index_split(staging, split, out) for split in SPLITS}
        write_json(staging / SOURCE_FILE, {"davis_root": str(davis), "image_sets": SPLITS})
    report_counts: dict[str, Any] = {**counts, "files_copied": copied}
    return {"counts": report_counts, "skipped": len(skips.items), "skipped_items": skips.items}


def prepare_davis(params: Params, out: Path) -> dict:
    """The prepare stage for data.davis: see `convert_davis`."""
    root = dataset_root(params, "davis", LAYOUT)
    return convert_davis(root, out, skip_bad=params.data.davis.skip_bad)


def _check_apart(root: Path, out: Path) -> None:
    """The converted tree is replaced on every run, so it must not overlap the dataset."""
    source, target = root.resolve(), out.resolve()
    if source == target or source in target.parents or target in source.parents:
        raise DataError(
            f"{out}: overlaps the dataset root {root}; prepare into a separate directory"
        )


def _write_converted(
    davis: Path, staging: Path, sequences: dict[str, DavisSequence], metas: dict[str, dict]
) -> int:
    """Build the Ref-YouTube-VOS tree in `staging`; the number of files copied."""
    copied = 0
    for split, videos in metas.items():
        for kind in ("JPEGImages", "Annotations"):
            (staging / split / kind).mkdir(parents=True)
        for name in sorted(videos):
            copied += _copy_sequence(davis, staging / split, sequences[name])
        _write_metas(staging, split, {name: sequences[name] for name in videos}, videos)
    return copied


def _copy_sequence(davis: Path, split_dir: Path, seq: DavisSequence) -> int:
    for kind, source, suffix in (
        ("JPEGImages", "JPEGImages", ".jpg"),
        ("Annotations", "Annotations_unsupervised", ".png"),
    ):
        folder = split_dir / kind / seq.name
        folder.mkdir()
        for frame in seq.frames:
            name = f"{frame}{suffix}"
            shutil.copyfile(davis / source / "480p" / seq.name / name, folder / name)
    return 2 * len(seq.frames)


def _write_metas(
    staging: Path, split: str, sequences: dict[str, DavisSequence], expressions: dict
) -> None:
    """`<split>/meta.json` (objects with their category) and the split's meta_expressions."""
    objects = {
        name: {"objects": {str(k): {"category": c} for k, c in sorted(seq.objects.items())}}
        for name, seq in sorted(sequences.items())
    }
    write_json(staging / split / "meta.json", {"videos": objects})
    videos = {
        name: {"expressions": expressions[name], "frames": list(seq.frames)}
        for name, seq in sorted(sequences.items())
    }
    path = staging / "meta_expressions" / split / "meta_expressions.json"
    write_json(path, {"videos": videos})


def _index_split(staging: Path, split: str, out: Path) -> dict[str, int]:
    """Index the converted split with the Ref-YouTube-VOS reader and count it; the index names
    `out`, where the tree will live, as its root."""
    index, dropped = ytvos.read_ytvos(staging, split)
    if dropped:
        raise DataError(f"{staging / split}: converted data does not read back ({dropped[0]})")
    index = dataclasses.replace(index, dataset="davis", root=out)
    save_index(index, staging / f"{split}.json")
    return {
        "sequences": len(index.videos),
        "objects": len({(e.video, o) for e in index.expressions for o in e.obj_ids}),
        "expressions": len(index.expressions),
        "frames": sum(len(v.frames) for v in index.videos.values()),
    }
