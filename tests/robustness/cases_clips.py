"""Bad-input cases of the datasets annotated on single frames: A2D-Sentences, JHMDB-Sentences."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.io

from rvos.data import a2d, jhmdb
from rvos.data.demo_a2d import write_mp4
from rvos.data.frame_samples import FrameIndex
from rvos.errors import UnsafePathError

from .damage import (
    BOMB,
    LIMIT,
    above_limit_png,
    at,
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
    unchanged,
    under,
)

# ---------------------------------------------------------------------------- A2D-Sentences

VIDEOSET = under("Release", "videoset.csv")
A2D_TEXT = under("text_annotations", "a2d_annotation.txt")


def a2d_video(root: Path) -> str:
    """The video of the first text row: the first one the reader opens."""
    return A2D_TEXT(root).read_text().splitlines()[1].split(",")[0]


def a2d_mp4(root: Path) -> Path:
    return root / "Release" / "clips320H" / f"{a2d_video(root)}.mp4"


def a2d_h5(root: Path) -> Path:
    return first(root / "text_annotations" / "a2d_annotation_with_instances" / a2d_video(root))


def a2d_renamed(root: Path) -> None:
    """The first text row's video renamed to a path outside the dataset in both CSV files."""
    vid = a2d_video(root)
    for path in (VIDEOSET(root), A2D_TEXT(root)):
        path.write_text(path.read_text().replace(vid, "../../etc"))


def a2d_index(root: Path) -> FrameIndex:
    train = a2d.read_a2d(root).splits["train"]
    return FrameIndex("a2d", "train", root, root, train.videos, tuple(train.samples))


def load_a2d_frames(index: FrameIndex) -> Any:
    video = sorted(index.videos)[0]
    return index.load_frames(video, [1, index.videos[video].frames])


def rewrite_h5(**changes: Any) -> Callable[[Path], None]:
    """Rewrite an .h5 file with some datasets replaced: an array, dataset arguments (a dict),
    or None for a group in the array's place."""

    def damage(path: Path) -> None:
        with h5py.File(path, "r") as handle:
            datasets = {key: handle[key][()] for key in handle}
        path.unlink()
        with h5py.File(path, "w") as handle:
            for key, value in {**datasets, **changes}.items():
                if value is None:
                    handle.create_group(key)
                elif isinstance(value, dict):
                    handle.create_dataset(key, **value)
                else:
                    handle.create_dataset(key, data=value)

    return damage


def one_frame_video(path: Path) -> None:
    path.unlink()
    write_mp4(path, np.zeros((1, 32, 48, 3), dtype=np.uint8))


a2d_csv = kind("A2D csv files", "a2d", a2d.read_a2d)
mp4 = kind("A2D video .mp4", "a2d", a2d.read_a2d)
mp4_loaded = kind("A2D video .mp4", "a2d", load_a2d_frames, prepare=a2d_index)
h5 = kind("A2D annotation .h5", "a2d", a2d.read_a2d)
MP4 = r"Release/clips320H/\w+.mp4"
H5 = r"a2d_annotation_with_instances/\w+/\d{5}.h5"
CASES = [
    a2d_csv("missing", at(VIDEOSET, remove), r"Release/videoset.csv: file not found"),
    a2d_csv(
        "wrong shape",
        at(VIDEOSET, edit_text(lambda t: t.replace(",", ";", 1))),
        r"Release/videoset.csv: line 1: expected 9 columns, got 8",
    ),
    a2d_csv(
        "wrong type",
        at(VIDEOSET, edit_text(lambda t: t.replace(",0\n", ",train\n", 1))),
        r"Release/videoset.csv: line \d: subset 'train' is not 0 \(train\) or 1 \(test\)",
    ),
    a2d_csv(
        "hostile video id",
        a2d_renamed,
        r"a2d_annotation.txt: line 2: video_id '../../etc': expected a plain file or folder",
        error=UnsafePathError,
    ),
    a2d_csv(
        "hostile link",
        linked_outside(lambda root: a2d_h5(root).parent),
        r"a2d_annotation.txt: line 2: video_id '\w+' escapes .*a2d_annotation_with_instances "
        r"\(a link leads to",
        error=UnsafePathError,
    ),
    mp4("missing", at(a2d_mp4, remove), MP4 + r": video file not found"),
    mp4("corrupt", at(a2d_mp4, truncate), MP4 + r": not a readable video \(OpenCV cannot open it"),
    mp4("wrong type", at(a2d_mp4, text_file), MP4 + r": not a readable video"),
    mp4(
        "wrong size",
        at(a2d_mp4, lambda path: write_mp4(path, np.zeros((4, 24, 40, 3), dtype=np.uint8))),
        H5 + r": reMask is 48x32 \(width x height\) but .*\.mp4 is 40x24",
    ),
    mp4(
        "oversized video",
        unchanged,
        MP4 + r": 4 frames would take 18.0 KiB decoded, above the limit of 16.0 KiB \(raise "
        r"rvos.data.media.MAX_DECODED_BYTES",
        limits={"MAX_DECODED_BYTES": 16 * 2**10},
    ),
    mp4(
        "oversized frame",
        unchanged,
        MP4 + r": video frame is 48x32 = 1536 pixels, above the limit of 1000",
        limits={"MAX_IMAGE_PIXELS": 1000},
    ),
    mp4_loaded("missing at training", at(a2d_mp4, remove), MP4 + r": video file not found"),
    mp4_loaded(
        "too short at training",
        at(a2d_mp4, one_frame_video),
        MP4 + r": frame 2 cannot be decoded \(video too short\)",
    ),
    h5(
        "missing",
        at(lambda root: a2d_h5(root).parent, remove),
        r"a2d_annotation_with_instances/\w+: directory not found",
    ),
    h5("corrupt", at(a2d_h5, garbage), H5 + r": not a readable HDF5 file"),
    h5(
        "wrong type",
        at(a2d_h5, rewrite_h5(reMask=None)),
        H5 + r": 'reMask' is a group; expected an array",
    ),
    h5(
        "wrong shape",
        at(a2d_h5, rewrite_h5(reBBox=np.zeros((3, 7)))),
        H5 + r": 'reBBox' has shape \(3, 7\) and dtype float64; expected \(4, \d\)",
    ),
    h5(
        "oversized",
        at(a2d_h5, rewrite_h5(reMask={"shape": (1, BOMB, BOMB), "dtype": "u1", "chunks": True})),
        H5 + r": 'reMask' frame is 100000x100000 = 10000000000 pixels, above the limit",
    ),
]

# -------------------------------------------------------------------------- JHMDB-Sentences

METADATA = under("jhmdb_sentences_samples_metadata.json")


def part_mask(root: Path) -> Path:
    return first(first(root / "puppet_mask")) / "puppet_mask.mat"


def jhmdb_frame(root: Path, number: int = 2) -> Path:
    return first(first(root / "Rename_Images")) / f"{number:05d}.png"


def first_row(change: Callable[[list], Any]) -> Callable[[Path], None]:
    def edit(rows: list) -> list:
        change(rows[0])
        return rows

    return at(METADATA, edit_json(edit))


def bomb_mat(path: Path) -> None:
    """An uncompressed MAT file whose part_mask header claims 100000 x 100000 x 4."""
    scipy.io.savemat(str(path), {"part_mask": np.zeros((32, 48, 4), np.uint8)})
    data = path.read_bytes()
    path.write_bytes(data.replace(struct.pack("<3i", 32, 48, 4), struct.pack("<3i", BOMB, BOMB, 4)))


def jhmdb_index(root: Path) -> FrameIndex:
    test = jhmdb.read_jhmdb(root).splits["test"]
    return FrameIndex("jhmdb", "test", root, root, test.videos, tuple(test.samples))


read_jhmdb = jhmdb.read_jhmdb
sample_list = kind("JHMDB sample list .json", "jhmdb", read_jhmdb)
mat = kind("JHMDB part_mask .mat", "jhmdb", read_jhmdb)
png = kind("JHMDB frame .png", "jhmdb", read_jhmdb)
ROW = r"jhmdb_sentences_samples_metadata.json: row 0: "
MAT = r"puppet_mask/\w+/\w+/puppet_mask.mat"
PNG = r"Rename_Images/\w+/\w+/\d{5}.png"
CASES += [
    sample_list("missing", at(METADATA, remove), r"samples_metadata.json: file not found"),
    sample_list(
        "wrong type",
        at(METADATA, edit_json(lambda rows: {"rows": rows})),
        r"samples_metadata.json: expected a list of \[vid, frame_path, mask_path, ...\]",
    ),
    sample_list(
        "hostile frame path",
        first_row(lambda row: row.__setitem__(1, "./jhmdb/Rename_Images/../../../etc/x.png")),
        ROW + r"frame_path '\S+' escapes the dataset root \(it climbs out with '..'\)",
        error=UnsafePathError,
    ),
    sample_list(
        "absolute mask path",
        first_row(lambda row: row.__setitem__(2, "/etc/puppet_mask/a/b/puppet_mask.mat")),
        ROW + r"mask_path '/etc/\S+' escapes the dataset root \(an absolute path\)",
        error=UnsafePathError,
    ),
    sample_list(
        "hostile link",
        linked_outside(lambda root: first(root / "Rename_Images")),
        r"samples_metadata.json: frame folder of \w+ 'Rename_Images/\w+/\w+' escapes .*jhmdb "
        r"\(a link leads to",
        error=UnsafePathError,
    ),
    mat("missing", at(part_mask, remove), MAT + r": file not found"),
    mat("corrupt", at(part_mask, truncate), MAT + r": not a readable MATLAB file"),
    mat(
        "wrong key",
        at(part_mask, lambda path: scipy.io.savemat(str(path), {"mask": np.zeros((2, 2))})),
        MAT + r": missing key 'part_mask' \(found \['mask'\]\)",
    ),
    mat(
        "wrong type",
        at(part_mask, lambda path: scipy.io.savemat(str(path), {"part_mask": "a text"})),
        MAT + r": 'part_mask' has shape \(1,\) and class char; expected a numeric \(H, W, T\)",
    ),
    mat(
        "wrong shape",
        at(
            part_mask,
            lambda path: scipy.io.savemat(str(path), {"part_mask": np.ones((2, 2, 2, 2))}),
        ),
        MAT + r": 'part_mask' has shape \(2, 2, 2, 2\) and class double; expected a numeric",
    ),
    mat(
        "oversized",
        at(part_mask, bomb_mat),
        MAT + r": 'part_mask' frame is 100000x100000 = 10000000000 pixels, above the limit",
    ),
    png("missing", at(jhmdb_frame, remove), r"Rename_Images/\w+/\w+: frame 00002.png missing"),
    png("corrupt", at(jhmdb_frame, truncate), PNG + r": not a readable image"),
    png("wrong type", at(jhmdb_frame, text_file), PNG + r": not a readable image"),
    png(
        "wrong size",
        at(jhmdb_frame, save_image("RGB", (40, 24))),
        PNG + r": frame is 40x24 but part_mask is 48x32",
    ),
    png("oversized", at(jhmdb_frame, above_limit_png), PNG + ": " + LIMIT),
    kind("JHMDB frame .png", "jhmdb", lambda i: i.load_frames(sorted(i.videos)[0], [2]))(
        "missing at training",
        at(jhmdb_frame, remove),
        PNG + r": image not found",
        prepare=jhmdb_index,
    ),
]
