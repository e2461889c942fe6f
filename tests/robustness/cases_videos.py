"""Bad-input cases of the frame-folder video datasets: Ref-YouTube-VOS, Ref-DAVIS17, MeViS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rvos.data import davis, mevis, ytvos
from rvos.errors import UnsafePathError

from .damage import (
    BOMB,
    LIMIT,
    above_limit_png,
    at,
    bomb_png,
    edit_json,
    edit_text,
    first,
    garbage,
    kind,
    linked_outside,
    remove,
    save_image,
    text_file,
    truncate,
    under,
    write_text,
)

# --------------------------------------------------------------------------- Ref-YouTube-VOS

YTVOS_META = under("meta_expressions", "train", "meta_expressions.json")


def ytvos_video(root: Path) -> Path:
    return first(root / "train" / "JPEGImages")


def ytvos_frame(root: Path) -> Path:
    return first(ytvos_video(root))


def ytvos_mask(root: Path) -> Path:
    return first(first(root / "train" / "Annotations"))


def ytvos_index(root: Path) -> Any:
    return ytvos.read_ytvos(root, "train")[0]


def load_first_frame(index: Any) -> Any:
    video = sorted(index.videos)[0]
    return index.load_frame(video, index.videos[video].frames[0])


def load_first_labels(index: Any) -> Any:
    video = sorted(index.videos)[0]
    return index.load_labels(video, index.videos[video].frames[0])


def first_video_entry(change: Callable[[str, dict], Any]) -> Callable[[Path], None]:
    """Apply `change(vid, videos)` to the first video of the train meta_expressions.json."""

    def edit(meta: dict) -> dict:
        change(sorted(meta["videos"])[0], meta["videos"])
        return meta

    return at(YTVOS_META, edit_json(edit))


meta = kind("ytvos meta_expressions.json", "ytvos", lambda root: ytvos.read_ytvos(root, "train"))
frame = kind("ytvos frame .jpg", "ytvos", load_first_frame, prepare=ytvos_index)
checked_frame = kind("ytvos frame .jpg", "ytvos", lambda root: ytvos.read_ytvos(root, "train"))
mask = kind("ytvos mask .png", "ytvos", load_first_labels, prepare=ytvos_index)
FIRST_FRAME = r"train/JPEGImages/\w+/00000.jpg"
FIRST_MASK = r"train/Annotations/\w+/00000.png"
CASES = [
    meta("missing", at(YTVOS_META, remove), r"train/meta_expressions.json: JSON file not found"),
    meta("corrupt", at(YTVOS_META, truncate), r"train/meta_expressions.json: not valid JSON"),
    meta(
        "wrong type",
        at(YTVOS_META, edit_json(lambda m: {"videos": list(m["videos"])})),
        r"meta_expressions.json: expected \{'videos': \{vid: \{'expressions', 'frames'\}\}\}",
    ),
    meta(
        "wrong shape",
        first_video_entry(lambda vid, videos: videos[vid].update(frames="00000")),
        r"meta_expressions.json: videos\['\w+'\]: expected .*'frames': \[names\]\}",
    ),
    meta(
        "wrong key",
        first_video_entry(lambda vid, videos: videos[vid]["expressions"].update(first={})),
        r"meta_expressions.json: videos\['\w+'\].expressions: key 'first' is not a decimal",
    ),
    meta(
        "hostile video id",
        first_video_entry(lambda vid, videos: videos.update({"../../etc": videos.pop(vid)})),
        r"meta_expressions.json: video id '../../etc': expected a plain file or folder name",
        error=UnsafePathError,
    ),
    meta(
        "hostile frame name",
        first_video_entry(lambda vid, videos: videos[vid]["frames"].append("../../etc/passwd")),
        r"meta_expressions.json: videos\['\w+'\].frames '../../etc/passwd': expected a plain",
        error=UnsafePathError,
    ),
    meta(
        "hostile link",
        linked_outside(ytvos_video),
        r"meta_expressions.json: video id '\w+' escapes .*train/JPEGImages \(a link leads to "
        r".*/elsewhere/\w+\); expected a path inside it",
        error=UnsafePathError,
    ),
    frame("missing", at(ytvos_frame, remove), FIRST_FRAME + r": image not found"),
    frame(
        "corrupt",
        at(ytvos_frame, truncate),
        FIRST_FRAME + r": not a readable image \(",
    ),
    checked_frame(
        "wrong type",
        at(ytvos_frame, text_file),
        FIRST_FRAME + r": not a readable image \(cannot identify image file",
    ),
    checked_frame("oversized", at(ytvos_frame, above_limit_png), FIRST_FRAME + ": " + LIMIT),
    frame(
        "decompression bomb",
        at(ytvos_frame, bomb_png),
        FIRST_FRAME + r": refused by Pillow as a decompression bomb .*raise PIL.Image",
    ),
    mask("missing", at(ytvos_mask, remove), FIRST_MASK + r": image not found"),
    mask("corrupt", at(ytvos_mask, garbage), FIRST_MASK + r": not a readable image"),
    mask(
        "wrong type",
        at(ytvos_mask, save_image("RGB", (48, 32))),
        FIRST_MASK + r": expected a palette \(P\) PNG, got mode RGB",
    ),
    mask("oversized", at(ytvos_mask, above_limit_png), FIRST_MASK + ": " + LIMIT),
]

# ------------------------------------------------------------------------------ Ref-DAVIS17

VAL_TXT = under("DAVIS", "ImageSets", "2017", "val.txt")
ANNOT1 = under("davis_text_annotations", "Davis17_annot1.txt")


def davis_frame(root: Path, number: int = 0) -> Path:
    return sorted((first(root / "DAVIS" / "JPEGImages" / "480p")).iterdir())[number]


def davis_mask(root: Path) -> Path:
    return first(first(root / "DAVIS" / "Annotations_unsupervised" / "480p"))


def convert_davis(root: Path) -> Any:
    return davis.convert_davis(root, root.parent / "out")


davis_text = kind("DAVIS text files", "davis", convert_davis)
davis_image = kind("DAVIS frame / mask", "davis", convert_davis)
SEQ_FRAME = r"JPEGImages/480p/[\w-]+/0000\d.jpg"
SEQ_MASK = r"Annotations_unsupervised/480p/[\w-]+/00000.png"
CASES += [
    davis_text("missing", at(VAL_TXT, remove), r"2017/val.txt: file not found \(the DAVIS 2017"),
    davis_text(
        "wrong encoding",
        at(VAL_TXT, write_text("blackswan\ncaf\xe9\n", "latin-1")),
        r"2017/val.txt: not UTF-8 text",
    ),
    davis_text(
        "hostile sequence",
        at(VAL_TXT, write_text("../../../etc\n")),
        r"val.txt: sequence '../../../etc': expected a plain file or folder name",
        error=UnsafePathError,
    ),
    davis_text(
        "hostile link",
        linked_outside(lambda root: first(root / "DAVIS" / "JPEGImages" / "480p")),
        r"2017/\w+.txt: sequence '[\w-]+' escapes .*JPEGImages/480p \(a link leads to",
        error=UnsafePathError,
    ),
    davis_text("missing annotations", at(ANNOT1, remove), r"Davis17_annot1.txt: file not found"),
    davis_text(
        "wrong line",
        at(ANNOT1, edit_text(lambda t: t + "classic-car 1 no quotes\n")),
        r'Davis17_annot1.txt, line \d+: expected: seq obj_id "expression", got',
    ),
    davis_text(
        "wrong encoding of annotations",
        at(ANNOT1, lambda path: path.write_bytes(path.read_bytes() + b'motorbike 1 "caf\xe9"\n')),
        r"Davis17_annot1.txt, line \d+: not valid utf-8",
    ),
    davis_image("corrupt frame", at(davis_frame, garbage), SEQ_FRAME + r": not a readable image"),
    davis_image(
        "wrong frame size",
        at(lambda root: davis_frame(root, 1), save_image("RGB", (50, 32))),
        SEQ_FRAME + r": frame is 50x32, the sequence's first is 48x32",
    ),
    davis_image(
        "missing mask",
        at(davis_mask, remove),
        r"480p/[\w-]+: 1 frames have no mask \(first: 00000.png\)",
    ),
    davis_image(
        "mask of wrong type",
        at(davis_mask, save_image("RGB", (48, 32))),
        SEQ_MASK + r": expected a palette \(P\) PNG, got mode RGB",
    ),
    davis_image(
        "mask of wrong size",
        at(davis_mask, save_image("P", (10, 10))),
        SEQ_MASK + r": mask is 10x10, its frame is 48x32",
    ),
    davis_image("oversized mask", at(davis_mask, above_limit_png), SEQ_MASK + ": " + LIMIT),
]

# ------------------------------------------------------------------------------------ MeViS

MEVIS_META = under("train", "meta_expressions.json")
MASK_DICT = under("train", "mask_dict.json")


def first_track(change: Callable[[list], Any]) -> Callable[[Path], None]:
    def edit(tracks: dict) -> dict:
        change(tracks[sorted(tracks, key=int)[0]])
        return tracks

    return at(MASK_DICT, edit_json(edit))


def every_rle(change: Callable[[dict], Any]) -> Callable[[list], None]:
    return lambda track: [change(rle) for rle in track if rle is not None]


def mevis_video(change: Callable[[str, dict], Any]) -> Callable[[Path], None]:
    def edit(meta: dict) -> dict:
        change(sorted(meta["videos"])[0], meta["videos"])
        return meta

    return at(MEVIS_META, edit_json(edit))


mevis_meta = kind(
    "MeViS meta_expressions.json", "mevis", lambda root: mevis.read_mevis(root, "train")
)
mask_dict = kind("MeViS mask_dict.json", "mevis", lambda root: mevis.read_mevis(root, "train"))
CASES += [
    mevis_meta("missing", at(MEVIS_META, remove), r"train/meta_expressions.json: JSON file not"),
    mevis_meta(
        "hostile frame name",
        mevis_video(lambda vid, videos: videos[vid]["frames"].append("../../../etc/passwd")),
        r"train/meta_expressions.json: videos\['\w+'\].frames '../../../etc/passwd': expected",
        error=UnsafePathError,
    ),
    mevis_meta(
        "hostile link",
        linked_outside(lambda root: first(root / "train" / "JPEGImages")),
        r"train/meta_expressions.json: video id '\w+' escapes .*train/JPEGImages \(a link",
        error=UnsafePathError,
    ),
    mevis_meta(
        "oversized frame",
        at(lambda root: first(first(root / "train" / "JPEGImages")), above_limit_png),
        r"train/JPEGImages: \w+: .*/00000.jpg: " + LIMIT,
    ),
    mask_dict("missing", at(MASK_DICT, remove), r"train/mask_dict.json: JSON file not found"),
    mask_dict("corrupt", at(MASK_DICT, truncate), r"train/mask_dict.json: not valid JSON"),
    mask_dict(
        "wrong type",
        at(MASK_DICT, edit_json(lambda tracks: list(tracks.values()))),
        r"train/mask_dict.json: expected \{anno_id: \[RLE or null per frame\]\}",
    ),
    mask_dict(
        "wrong length",
        first_track(lambda track: track.pop()),
        r"train/mask_dict.json: \w+/\d+: anno_id '\d+': 2 masks for 3 frames",
    ),
    mask_dict(
        "uncompressed RLE",
        first_track(every_rle(lambda rle: rle.update(counts=[0, 5]))),
        r"mask_dict.json: \w+/\d+: anno_id '\d+', frame \d: not a compressed RLE or null",
    ),
    mask_dict(
        "oversized RLE",
        first_track(every_rle(lambda rle: rle.update(size=[BOMB, BOMB]))),
        r"mask_dict.json: \w+/\d+: anno_id '\d+', frame \d: RLE size \[100000, 100000\], "
        r"frame size \[32, 48\]",
    ),
]
