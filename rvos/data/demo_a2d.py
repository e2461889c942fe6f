"""Procedural demo A2D-Sentences written in the release layout (FORMATS.md §4).

The shape scenes of `rvos.data.demo` become mp4 clips with a few annotated frames each: every
actor is an instance with one sentence, and each annotated frame gets an .h5 file holding the
visible instances' masks, stored transposed as in the release. The mp4 is lossy, so masks come
from the scene's id maps, never from decoded pixels. As in the real data, the text annotations
carry a `1 (copy)` row and one generated video is listed in a2d_missed_videos.txt.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import cv2
import h5py
import numpy as np
from tqdm import tqdm

from rvos.data import a2d
from rvos.data.demo import Clip, sample_clip
from rvos.data.demo_shapes import MOTIONS, SHAPES
from rvos.io import atomic_dir

FPS = 24
_STREAMS = {"train": 50, "test": 51}  # generator streams, apart from the other demo datasets
_MAX_DECODE_ERROR = 12.0  # mean absolute pixel error of a decoded mp4v frame


def write_a2d(
    root: Path,
    *,
    seed: int,
    train_videos: int,
    test_videos: int,
    frames: int,
    annotated_frames: int,
    height: int,
    width: int,
    objects_per_video: tuple[int, int] = (1, 3),
    progress: bool = True,
) -> dict:
    """Write a demo A2D-Sentences tree under `root`.

    One extra train video is generated and listed in a2d_missed_videos.txt. Returns
    {"videos", "missed_videos", "sentences", "annotated_frames"}; sentences excludes the
    `1 (copy)` row.
    """
    counts = {"train": train_videos + 1, "test": test_videos}
    videoset, texts, seen = [], [], set()
    with (
        atomic_dir(Path(root), "text_annotations") as tmp,
        tqdm(total=sum(counts.values()), desc="demo a2d", disable=not progress) as bar,
    ):
        for split, count in counts.items():
            for index in range(count):
                rng = np.random.default_rng([seed, _STREAMS[split], index])
                clip = sample_clip(rng, frames, height, width, objects_per_video)
                if clip.vid in seen:
                    raise RuntimeError(f"video id {clip.vid} drawn twice; choose another seed")
                seen.add(clip.vid)
                numbers = _annotated_frames(rng, clip, annotated_frames)
                write_mp4(tmp / a2d.CLIPS / f"{clip.vid}.mp4", clip.images)
                for number in numbers:
                    path = tmp / a2d.ANNOTATIONS / clip.vid / f"{number:05d}.h5"
                    _write_h5(path, clip, number)
                videoset.append(_videoset_row(clip, len(numbers), a2d.SUBSETS[split]))
                # instance k is the actor painted with id k; its first expression is its sentence
                said = enumerate(clip.expressions, start=1)
                texts += [(clip.vid, str(k), expressions[0][1]) for k, expressions in said]
                bar.update()
        missed = videoset[train_videos][0]  # the extra train video
        first = texts[0]
        rows = [texts[0], (first[0], a2d.COPY_ROW, first[2]), *texts[1:]]
        _write_csv(tmp / a2d.VIDEOSET, videoset)
        _write_csv(tmp / a2d.TEXT, [a2d.TEXT_HEADER, *rows])
        (tmp / a2d.MISSED).write_text(f"{missed}\n")
    total_frames = sum(row[7] for row in videoset)
    return {
        "videos": len(videoset),
        "missed_videos": 1,
        "sentences": len(texts),
        "annotated_frames": total_frames,
    }


def _annotated_frames(rng: np.random.Generator, clip: Clip, wanted: int) -> list[int]:
    """Sorted 1-based numbers of frames that show at least one actor."""
    candidates = [t for t in range(len(clip.ids)) if clip.ids[t].any()]
    picks = rng.choice(candidates, size=min(wanted, len(candidates)), replace=False)
    return sorted(int(t) + 1 for t in picks)


def write_mp4(path: Path, images: np.ndarray) -> None:
    """(T, H, W, 3) RGB frames as an mp4v clip; checks that every frame decodes back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = images.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write mp4v video")
    for image in images:
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    _check_decodes(path, images)


def _check_decodes(path: Path, images: np.ndarray) -> None:
    capture = cv2.VideoCapture(str(path))
    decoded = []
    ok, frame = capture.read()
    while ok:
        decoded.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        ok, frame = capture.read()
    capture.release()
    if len(decoded) != len(images):
        raise RuntimeError(f"{path}: {len(decoded)} of {len(images)} frames decode back")
    error = np.abs(np.stack(decoded).astype(float) - images).mean()
    if error > _MAX_DECODE_ERROR:
        raise RuntimeError(f"{path}: decoded frames differ from the written ones (error {error})")


def _write_h5(path: Path, clip: Clip, number: int) -> None:
    """The visible instances of one frame: instance (N,), reMask (N, W, H) or (W, H), reBBox
    (4, N) with exclusive x2, y2, and `id` (1, N) = actor * 10 + action as in A2D."""
    ids = clip.ids[number - 1]
    visible = [k for k in range(1, len(clip.actors) + 1) if (ids == k).any()]
    masks = np.stack([(ids == k).T for k in visible]).astype(np.uint8)  # (N, W, H)
    boxes = np.array([_box(ids == k) for k in visible], dtype=np.float64).T  # (4, N)
    labels = [_label(clip, k) for k in visible]
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("instance", data=np.array(visible, dtype=np.float64))
        handle.create_dataset("reMask", data=masks[0] if len(visible) == 1 else masks)
        handle.create_dataset("reBBox", data=boxes)
        handle.create_dataset("id", data=np.array([labels], dtype=np.float64))


def _box(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _label(clip: Clip, instance: int) -> int:
    """A2D's actor-action code: the shape stands for the actor, the motion for the action."""
    actor = clip.actors[instance - 1]
    return 10 * (SHAPES.index(actor.look.shape) + 1) + MOTIONS.index(actor.motion) + 1


def _videoset_row(clip: Clip, annotated: int, subset: int) -> list:
    """vid, label, start_time, end_time, height, width, total_frames, annotated_frames, subset."""
    frames, height, width = clip.ids.shape
    end = round(frames / FPS, 3)
    return [clip.vid, _label(clip, 1), 0, end, height, width, frames, annotated, subset]


def _write_csv(path: Path, rows: list) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buffer.getvalue())
