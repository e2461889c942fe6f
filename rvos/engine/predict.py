"""A trained model on one's own video: masks per sentence, overlay MP4 and GIF, scores.

The output folder is built beside its final place and swapped in whole, so an interrupted
run leaves no half-written results, and `--overwrite` replaces only an earlier rvos
prediction folder (one holding `predictions.json`):

    <out>/masks/<k>/<frame>.png   sentence k's mask per frame (0/255, the frame's size)
    <out>/overlay.mp4             every frame, each sentence's mask in its colour, a legend
    <out>/overlay.gif             the same, smaller and at most `gif_frames` frames
    <out>/predictions.json        sentences, colours, frame names, per-frame scores and areas
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from rvos.data.video_source import VideoSource
from rvos.engine.online import OnlineSegmenter
from rvos.engine.visualize import overlay_legend, sentence_colors
from rvos.errors import OutputExistsError, RvosError
from rvos.io import atomic_dir, atomic_open, write_json

MARKER = "predictions.json"


class Mp4Writer:
    """Frames appended one by one to an MPEG-4 file (OpenCV's mp4v codec)."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps, self.writer = path, fps, None

    def add(self, image: Image.Image) -> None:
        if self.writer is None:
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            self.writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, image.size)
            if not self.writer.isOpened():
                raise RvosError(f"{self.path}: OpenCV cannot write an MP4 file here")
        self.writer.write(cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


class GifWriter:
    """An animated GIF of at most `max_frames` frames, `width` pixels wide: every stride-th
    frame is kept, and the stride doubles whenever the video proves longer than expected,
    so memory stays bounded whatever the video's length."""

    def __init__(self, path: Path, fps: float, expected_frames: int, max_frames: int, width: int):
        self.path, self.fps, self.max_frames, self.width = path, fps, max_frames, width
        self.stride = max(1, math.ceil(expected_frames / max_frames))
        self.kept: list[tuple[int, Image.Image]] = []
        self.seen = 0

    def add(self, image: Image.Image) -> None:
        if self.seen % self.stride == 0:
            height = max(1, round(image.height * self.width / image.width))
            small = image.resize((self.width, height), Image.Resampling.BILINEAR)
            self.kept.append((self.seen, small))
            if len(self.kept) > self.max_frames:
                self.stride *= 2
                self.kept = [(i, f) for i, f in self.kept if i % self.stride == 0]
        self.seen += 1

    def close(self) -> None:
        if not self.kept:
            return
        frames = [f for _, f in self.kept]
        duration = round(1000 * self.stride / self.fps)
        with atomic_open(self.path, "wb") as handle:
            frames[0].save(
                handle,
                format="GIF",
                save_all=True,
                append_images=frames[1:],
                duration=duration,
                loop=0,
            )


def predict_video(
    segmenter: OnlineSegmenter,
    source: VideoSource,
    out: Path,
    *,
    threshold: float = 0.5,
    overwrite: bool = False,
    gif_frames: int = 120,
    gif_width: int = 320,
    about: dict | None = None,
) -> dict:
    """Run `segmenter` over `source`, write the files listed above to `out`; returns the
    contents of predictions.json (`about`, e.g. the checkpoint, is recorded in it)."""
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: already exists; pass --overwrite to replace it")
    texts = segmenter.texts
    colors = sentence_colors(len(texts))
    with atomic_dir(out, MARKER) as staging:
        mp4 = Mp4Writer(staging / "overlay.mp4", source.fps)
        gif = GifWriter(
            staging / "overlay.gif", source.fps, source.expected_frames, gif_frames, gif_width
        )
        folders = [staging / "masks" / f"{k:02d}" for k in range(len(texts))]
        for folder in folders:
            folder.mkdir(parents=True)
        names, scores, areas = [], [[] for _ in texts], [[] for _ in texts]
        frames = tqdm(
            segmenter(source.frames()),
            total=source.expected_frames or None,
            desc=f"predict {source.path.name}",
            unit="frame",
        )
        for result in frames:
            masks = result.probabilities > threshold
            for k, mask in enumerate(masks):
                Image.fromarray(mask.astype(np.uint8) * 255, "L").save(
                    folders[k] / f"{result.name}.png"
                )
                scores[k].append(round(float(result.scores[k]), 5))
                areas[k].append(int(mask.sum()))
            picture = overlay_legend(result.image, list(masks), texts, colors)
            mp4.add(picture)
            gif.add(picture)
            names.append(result.name)
        mp4.close()
        gif.close()
        summary = {
            "video": str(source.path),
            "fps": source.fps,
            "frames": names,
            "threshold": threshold,
            **(about or {}),
            "sentences": [
                {
                    "text": text,
                    "color": "#{:02x}{:02x}{:02x}".format(*colors[k]),
                    "masks": f"masks/{k:02d}",
                    "scores": scores[k],
                    "areas": areas[k],
                }
                for k, text in enumerate(texts)
            ],
        }
        write_json(staging / MARKER, summary)
    return summary
