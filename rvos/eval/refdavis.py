"""Ref-DAVIS17 protocol: per-annotator-variant index maps scored with unsupervised DAVIS.

Expressions of object k (objects sorted by id) come in variants a = 0..3 with expression
ids 4k + a (FORMATS.md §2). For each variant and sequence the per-object probabilities
(K, T, H, W) become one index map: values below 0.5 are set to 0, a constant 0.1
background is put in front, and the argmax gives 0 = background, k + 1 = object k. The maps
are saved as palette PNGs `anno_<a>/<seq>/<idx:05d>.png`, each variant is scored with the
unsupervised task, and the reported numbers are the plain mean of the four variants.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from rvos.eval.davis_eval import GLOBAL_COLUMNS, evaluate_davis
from rvos.eval.report import write_csv
from rvos.io import save_image

__all__ = [
    "N_VARIANTS",
    "davis_palette",
    "evaluate_refdavis",
    "index_map",
    "write_index_pngs",
    "write_variant",
]

N_VARIANTS = 4
THRESHOLD = 0.5
BACKGROUND = 0.1


def index_map(probs: np.ndarray) -> np.ndarray:
    """Probabilities (K, ...) of K objects -> uint8 index map (...): 0 background, k+1 object k.

    Ties go to the lower index (background first), as argmax does.
    """
    probs = np.asarray(probs)
    probs = probs.astype(np.result_type(probs.dtype, np.float32), copy=False)
    if probs.shape[0] > 254:
        raise ValueError(f"{probs.shape[0]} objects do not fit an 8-bit index map")
    kept = np.where(probs < THRESHOLD, 0, probs)
    background = np.full((1, *probs.shape[1:]), BACKGROUND, dtype=probs.dtype)
    return np.argmax(np.concatenate([background, kept]), axis=0).astype(np.uint8)


@functools.cache
def davis_palette() -> list[int]:
    """The 256-colour PASCAL VOC / DAVIS palette as a flat [r, g, b, ...] list."""
    index = np.arange(256)
    rgb = np.zeros((256, 3), dtype=np.uint8)
    for bit in range(8):
        for channel in range(3):
            rgb[:, channel] |= (((index >> (3 * bit + channel)) & 1) << (7 - bit)).astype(np.uint8)
    return rgb.flatten().tolist()


def write_index_pngs(folder: str | Path, maps: np.ndarray, names: Sequence[str] | None = None):
    """Save index maps (T, H, W) as palette PNGs `<folder>/<name>.png` (default `<idx:05d>`)."""
    folder = Path(folder)
    names = [f"{t:05d}" for t in range(len(maps))] if names is None else list(names)
    if len(names) != len(maps):
        raise ValueError(f"{len(maps)} index maps but {len(names)} frame names")
    for name, frame in zip(names, maps, strict=True):
        image = Image.fromarray(np.asarray(frame, dtype=np.uint8))
        image.putpalette(davis_palette())  # 'L' becomes 'P' with the DAVIS colours
        save_image(folder / f"{name}.png", image)


def write_variant(root: str | Path, variant: int, seq: str, object_probs: Sequence[np.ndarray]):
    """Write `<root>/anno_<variant>/<seq>/<idx:05d>.png` from K per-object (T, H, W) arrays.

    Works frame by frame, so the arrays may be memory-mapped or lazily loaded.
    """
    if not 0 <= variant < N_VARIANTS:
        raise ValueError(f"variant must be in 0..{N_VARIANTS - 1}, got {variant}")
    if not object_probs:
        raise ValueError(f"{seq}: no object probabilities for variant {variant}")
    n_frames = len(object_probs[0])
    folder = Path(root) / f"anno_{variant}" / seq
    for t in range(n_frames):
        frame = index_map(np.stack([probs[t] for probs in object_probs]))
        write_index_pngs(folder, frame[None], [f"{t:05d}"])


def evaluate_refdavis(
    pred_root: str | Path,
    davis_root: str | Path,
    subset: str = "val",
    sequences: list[str] | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Score `<pred_root>/anno_0..3` with the unsupervised task; report their plain mean.

    Returns GLOBAL_COLUMNS -> mean over variants, plus "variants": {a: summary} and
    "per_object": DataFrame of all variants' object rows (column "variant"). With
    `out_dir`, each variant's CSVs and plot go to `<out_dir>/anno_<a>/` and the mean to
    `<out_dir>/global_results-<subset>.csv`.
    """
    summaries, tables = {}, []
    for variant in range(N_VARIANTS):
        result = evaluate_davis(
            davis_root,
            Path(pred_root) / f"anno_{variant}",
            task="unsupervised",
            subset=subset,
            sequences=sequences,
            out_dir=None if out_dir is None else Path(out_dir) / f"anno_{variant}",
            progress=progress,
        )
        summaries[variant] = result.summary
        tables.append(result.per_object.assign(variant=variant))
    mean = {key: float(np.mean([s[key] for s in summaries.values()])) for key in GLOBAL_COLUMNS}
    if out_dir is not None:
        write_csv(pd.DataFrame([mean]), Path(out_dir) / f"global_results-{subset}.csv")
    return {**mean, "variants": summaries, "per_object": pd.concat(tables, ignore_index=True)}
