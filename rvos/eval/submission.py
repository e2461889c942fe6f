"""Build Ref-YouTube-VOS and MeViS submission zips after checking they are complete.

Layouts (FORMATS.md §1, §3), one 8-bit grayscale 0/255 PNG per listed frame of every
expression, at the video's original size:
- "ytvos": `Annotations/<vid>/<exp_id>/<frame>.png` (CodaLab 29139);
- "mevis": `<vid>/<exp_id>/<frame>.png` at the archive root (CodaLab 15094).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from rvos.errors import DataError
from rvos.eval.stream import load_json
from rvos.io import atomic_open, save_image

__all__ = [
    "LAYOUTS",
    "check_submission",
    "competition_videos",
    "expected_files",
    "save_binary_mask",
    "write_submission_zip",
]

LAYOUTS = {"ytvos": "Annotations", "mevis": ""}
SHOWN = 10  # missing or malformed files named in an error


def competition_videos(valid_meta: str | Path | dict, test_meta: str | Path | dict) -> list[str]:
    """Ref-YouTube-VOS: the valid JSON's videos minus the test JSON's (202 of 507)."""
    test = set(load_json(test_meta)["videos"])
    return [vid for vid in load_json(valid_meta)["videos"] if vid not in test]


def expected_files(meta_expressions, videos: Iterable[str] | None = None) -> list[str]:
    """Relative paths `<vid>/<exp_id>/<frame>.png` of every listed frame of every expression."""
    meta = load_json(meta_expressions)["videos"]
    files = []
    for vid in meta if videos is None else videos:
        if vid not in meta:
            raise DataError(f"video {vid} is not in the meta_expressions file")
        for exp_id in meta[vid]["expressions"]:
            files.extend(f"{vid}/{exp_id}/{frame}.png" for frame in meta[vid]["frames"])
    return files


def save_binary_mask(path: str | Path, mask: np.ndarray) -> None:
    """Save a (H, W) mask as the 8-bit grayscale 0/255 PNG the servers expect, atomically."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{path}: expected one (H, W) mask, got shape {mask.shape}")
    save_image(path, Image.fromarray(np.where(mask.astype(bool), 255, 0).astype(np.uint8)))


def _check_png(path: Path, size: tuple[int, int] | None, check_values: bool) -> str | None:
    try:
        with Image.open(path) as image:
            if image.format != "PNG" or image.mode != "L":
                return f"{image.format} mode {image.mode}, expected 8-bit grayscale PNG"
            if size is not None and image.size != size:
                return f"size {image.size}, expected {size} (width, height)"
            if check_values and not np.isin(np.asarray(image), (0, 255)).all():
                return "values other than 0 and 255"
    except OSError as err:
        return f"unreadable ({err})"
    return None


def check_submission(
    pred_root: str | Path,
    meta_expressions,
    videos: Iterable[str] | None = None,
    frame_sizes: dict[str, tuple[int, int]] | None = None,
    check_values: bool = True,
) -> tuple[list[str], list[str]]:
    """(missing, malformed) relative paths under `pred_root` = `<vid>/<exp_id>/<frame>.png` root.

    `frame_sizes`: optional vid -> (width, height) to check each PNG's size; malformed
    entries read "<path>: <problem>".
    """
    root = Path(pred_root)
    missing, malformed = [], []
    for rel in expected_files(meta_expressions, videos):
        path = root / rel
        if not path.is_file():
            missing.append(rel)
            continue
        size = None if frame_sizes is None else frame_sizes.get(rel.split("/", 1)[0])
        problem = _check_png(path, size, check_values)
        if problem:
            malformed.append(f"{rel}: {problem}")
    return missing, malformed


def write_submission_zip(
    pred_root: str | Path,
    meta_expressions,
    zip_path: str | Path,
    layout: str = "ytvos",
    videos: Iterable[str] | None = None,
    frame_sizes: dict[str, tuple[int, int]] | None = None,
    check_values: bool = True,
) -> Path:
    """Check completeness and format, then zip `pred_root/<vid>/<exp_id>/<frame>.png`.

    Raises DataError naming the first missing or malformed files (and how many there are)
    before anything is written; the zip appears atomically.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    videos = None if videos is None else list(videos)
    missing, malformed = check_submission(
        pred_root, meta_expressions, videos, frame_sizes, check_values
    )
    problems = [f"missing {rel}" for rel in missing] + malformed
    if problems:
        raise DataError(
            f"{pred_root}: submission incomplete, {len(missing)} missing and {len(malformed)} "
            f"malformed of {len(expected_files(meta_expressions, videos))} PNGs; first: "
            + "; ".join(problems[:SHOWN])
        )
    top = LAYOUTS[layout]
    zip_path = Path(zip_path)
    with atomic_open(zip_path, "wb") as handle, zipfile.ZipFile(handle, "w") as archive:
        for rel in expected_files(meta_expressions, videos):
            archive.write(Path(pred_root) / rel, f"{top}/{rel}" if top else rel)
    return zip_path
