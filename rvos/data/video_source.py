"""A user's video, read one frame at a time: a video file or a folder of frames.

Frames are decoded lazily, so a long video never sits in memory whole. Each frame is held to
the size limits of rvos.data.media before it is decoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
from PIL import Image

from rvos.data.media import load_image, open_video
from rvos.errors import DataError

VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mov", ".mkv", ".m4v")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DEFAULT_FPS = 24.0


@dataclass(frozen=True)
class VideoSource:
    path: Path
    fps: float
    expected_frames: int  # from the container or the folder; a video's may be approximate

    def frames(self) -> Iterator[tuple[str, Image.Image]]:
        """(frame name, RGB image) in order: a folder's file stems, a video's 00000, 00001, ..."""
        if self.path.is_dir():
            yield from _folder_frames(self.path)
        else:
            yield from _video_frames(self.path)


def open_source(path: Path, fps: float | None = None) -> VideoSource:
    """`path` as a VideoSource; `fps` overrides the frame rate (a folder has none: 24)."""
    if not path.exists():
        raise DataError(f"{path}: not found (expected a video file or a folder of frames)")
    if path.is_dir():
        count = len(_frame_files(path))
        if count == 0:
            raise DataError(
                f"{path}: no frames in this folder (expected images named in frame order, "
                f"with one of the suffixes {', '.join(FRAME_SUFFIXES)})"
            )
        return VideoSource(path, fps or DEFAULT_FPS, count)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise DataError(
            f"{path}: not a video file (expected one of {', '.join(VIDEO_SUFFIXES)}, "
            "or a folder of frames)"
        )
    with open_video(path, streamed=True) as capture:
        rate = capture.get(cv2.CAP_PROP_FPS)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if not capture.read()[0]:
            raise DataError(f"{path}: not a readable video (no frame could be decoded)")
    return VideoSource(path, fps or (rate if rate > 0 else DEFAULT_FPS), max(count, 0))


def _frame_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES]
    return sorted(files, key=_natural_key)


def _natural_key(path: Path) -> list:
    """frame2 before frame10: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _folder_frames(folder: Path) -> Iterator[tuple[str, Image.Image]]:
    for path in _frame_files(folder):
        yield path.stem, load_image(path, "RGB")


def _video_frames(path: Path) -> Iterator[tuple[str, Image.Image]]:
    with open_video(path, streamed=True) as capture:
        count = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            yield f"{count:05d}", Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            count += 1
