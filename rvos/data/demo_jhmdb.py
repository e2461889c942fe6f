"""Procedural demo JHMDB-Sentences written in the release layout (FORMATS.md §5).

Each shape scene has one referred actor and one sentence about it. Frames are PNGs numbered
from 1, the referred actor's masks a MATLAB `part_mask` (H, W, T), and every other video has
fewer masked frames than frames, as happens in JHMDB. The sample list follows MTTR's frozen
file: 3 masked frames per sentence with `./jhmdb_sentences/...` paths.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image
from tqdm import tqdm

from rvos.data import jhmdb
from rvos.data.demo import Clip, sample_clip
from rvos.io import atomic_dir

_STREAM = 60  # generator stream, apart from the other demo datasets
_SAMPLES_PER_VIDEO = 3
_UNMASKED_TAIL = 2  # frames without a mask at the end of every other video
_ACTIONS = {"still": "stand", "linear": "walk", "circle": "swing_baseball", "wave": "wave"}
_RELEASE_FOLDER = "./jhmdb_sentences"  # the folder name MTTR's sample paths start with
# A fixed MAT-file description: scipy writes the current time there, which would make the
# same seed give different bytes.
_MAT_HEADER = b"MATLAB 5.0 MAT-file, written by rvos demo data".ljust(116)


def write_jhmdb(
    root: Path,
    *,
    seed: int,
    videos: int,
    frames: int,
    height: int,
    width: int,
    objects_per_video: tuple[int, int] = (1, 3),
    progress: bool = True,
) -> dict:
    """Write a demo JHMDB-Sentences tree under `root`.

    Returns {"videos", "frames", "samples", "short_masks"}; short_masks counts the videos whose
    part_mask covers fewer frames than the video has.
    """
    if frames < _UNMASKED_TAIL + _SAMPLES_PER_VIDEO:
        raise ValueError(f"frames must be at least {_UNMASKED_TAIL + _SAMPLES_PER_VIDEO}")
    sentences, samples, short = [], [], 0
    with atomic_dir(Path(root), jhmdb.TEXT) as tmp:
        for index in tqdm(range(videos), desc="demo jhmdb", disable=not progress):
            rng = np.random.default_rng([seed, _STREAM, index])
            clip = sample_clip(rng, frames, height, width, objects_per_video)
            referred = int(rng.integers(len(clip.actors))) + 1
            action = _ACTIONS[clip.actors[referred - 1].motion]
            vid = f"{clip.vid}_{action}"
            masked = frames - _UNMASKED_TAIL if index % 2 == 0 else frames
            short += masked < frames
            _write_frames(tmp / jhmdb.FRAMES / action / vid, clip.images)
            mask_path = tmp / jhmdb.MASKS / action / vid / jhmdb.MASK_FILE
            write_part_mask(mask_path, clip.ids[:masked] == referred)
            query = clip.expressions[referred - 1][0][1]
            sentences.append([vid, query])
            for number in _sample_frames(rng, clip, referred, masked):
                samples.append(_metadata_row(vid, action, number, masked, query))
        _write_csv(tmp / jhmdb.TEXT, [jhmdb.TEXT_HEADER, *sentences])
        (tmp / jhmdb.METADATA).write_text(json.dumps(samples))
    return {
        "videos": videos,
        "frames": videos * frames,
        "samples": len(samples),
        "short_masks": short,
    }


def _write_frames(folder: Path, images: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for number, image in enumerate(images, start=1):
        Image.fromarray(image).save(folder / f"{number:05d}.png")


def write_part_mask(path: Path, masks: np.ndarray) -> None:
    """(T, H, W) bool masks as puppet_mask.mat with part_mask (H, W, T) uint8."""
    buffer = io.BytesIO()
    part_mask = np.ascontiguousarray(np.moveaxis(masks, 0, 2).astype(np.uint8))
    scipy.io.savemat(buffer, {jhmdb.MASK_KEY: part_mask}, do_compression=True)
    data = bytearray(buffer.getvalue())
    data[: len(_MAT_HEADER)] = _MAT_HEADER
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))


def _sample_frames(rng: np.random.Generator, clip: Clip, referred: int, masked: int) -> list[int]:
    """Sorted 1-based numbers of masked frames that show the referred actor."""
    shown = [t for t in range(masked) if (clip.ids[t] == referred).any()]
    picks = rng.choice(shown, size=min(_SAMPLES_PER_VIDEO, len(shown)), replace=False)
    return sorted(int(t) + 1 for t in picks)


def _metadata_row(vid: str, action: str, number: int, masked: int, query: str) -> list:
    """[vid, frame_path, mask_path, n_usable, query] as in MTTR's sample list."""
    frame_path = f"{_RELEASE_FOLDER}/{jhmdb.FRAMES}/{action}/{vid}/{number:05d}.png"
    mask_path = f"{_RELEASE_FOLDER}/{jhmdb.MASKS}/{action}/{vid}/{jhmdb.MASK_FILE}"
    return [vid, frame_path, mask_path, masked, query]


def _write_csv(path: Path, rows: list) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path.write_text(buffer.getvalue())
