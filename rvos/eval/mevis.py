"""MeViS J&F, as henghuiding/MeViS `tools/eval_mevis.py` computes it.

Per expression the target is the union of its `anno_id` masks (COCO RLE in
`mask_dict.json`, null = absent in that frame); predictions are
`<pred>/<vid>/<exp_id>/<frame>.png` read as grayscale, any non-zero pixel foreground.
J and F are averaged over the expression's frames (no void, no recall or decay); a video
whose prediction folder is missing scores J = F = 0 for all its expressions. Dataset J and
F are means over expressions and J&F = (J + F) / 2.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from pycocotools import mask as mask_utils
from tqdm import tqdm

from rvos.errors import DataError
from rvos.eval.davis import boundary_measure, region_similarity
from rvos.eval.report import plot_bars, write_csv
from rvos.eval.stream import load_json, open_masks

__all__ = ["evaluate_mevis", "expression_target"]

log = logging.getLogger(__name__)


def expression_target(mask_dict: dict, anno_ids: list, n_frames: int) -> np.ndarray:
    """Union of the `anno_ids` masks per frame: (T, H, W) bool, size from the first RLE.

    Raises DataError when no annotation of the expression has a mask in any frame.
    """
    tracks = []
    for anno_id in anno_ids:
        key = str(anno_id)
        if key not in mask_dict:
            raise DataError(f"mask_dict has no annotation {key}")
        if len(mask_dict[key]) < n_frames:
            raise DataError(
                f"annotation {key} has {len(mask_dict[key])} frames, expected {n_frames}"
            )
        tracks.append(mask_dict[key])
    first = next((rle for t in range(n_frames) for rle in (tr[t] for tr in tracks) if rle), None)
    if first is None:
        raise DataError(f"annotations {anno_ids} have no mask in any frame")
    height, width = first["size"]
    target = np.zeros((n_frames, height, width), dtype=bool)
    for t in range(n_frames):
        present = [track[t] for track in tracks if track[t]]
        if present:
            target[t] = _decode(mask_utils.merge(present, intersect=False))
    return target


def _decode(rle: dict) -> np.ndarray:
    with warnings.catch_warnings():
        # pycocotools 2.0.x under NumPy 2 warns about its own __array__ on every decode.
        warnings.filterwarnings(
            "ignore", message="__array__ implementation", category=DeprecationWarning
        )
        return mask_utils.decode(rle).astype(bool)


def _read_prediction(source, vid: str, exp_id: str, frames: list[str], shape) -> np.ndarray:
    pred = np.zeros((len(frames), *shape), dtype=bool)
    for t, frame in enumerate(frames):
        gray = source.read_gray(vid, exp_id, f"{frame}.png")
        if gray.shape != shape:
            raise DataError(
                f"{source.describe(vid, exp_id, frame + '.png')}: size {gray.shape}, GT is {shape}"
            )
        pred[t] = gray != 0
    return pred


def evaluate_mevis(
    meta_expressions: str | Path | dict,
    mask_dict: str | Path | dict,
    predictions: str | Path,
    out_dir: str | Path | None = None,
    predictions_prefix: str = "",
    progress: bool = True,
) -> dict:
    """Score MeViS predictions (folder or zip), one expression at a time.

    Returns {"J", "F", "J&F"} plus "per_expression": DataFrame (video, exp_id, J, F, J&F,
    missing). With `out_dir`: `global_results.csv`, `per-expression_results.csv` and a
    per-video bar plot `per-video_results.png`, written atomically.
    """
    videos = load_json(meta_expressions).get("videos")
    if not isinstance(videos, dict):
        raise DataError(f"{meta_expressions}: expected {{'videos': {{vid: ...}}}}")
    masks = load_json(mask_dict)
    rows = []
    with open_masks(predictions, predictions_prefix) as source:
        for vid, video in tqdm(videos.items(), disable=not progress):
            frames = video["frames"]
            missing = not source.exists(vid)
            if missing:
                log.warning("%s: no predictions for video %s, scored 0", source.describe(), vid)
            for exp_id, expression in video["expressions"].items():
                if missing:
                    j = f = 0.0
                else:
                    gt = expression_target(masks, expression["anno_id"], len(frames))
                    pred = _read_prediction(source, vid, exp_id, frames, gt.shape[1:])
                    j = float(region_similarity(gt, pred).mean())
                    f = float(boundary_measure(gt, pred).mean())
                rows.append(
                    {
                        "video": vid,
                        "exp_id": exp_id,
                        "J": j,
                        "F": f,
                        "J&F": (j + f) / 2,
                        "missing": missing,
                    }
                )
    if not rows:
        raise DataError(f"{meta_expressions}: no expressions to evaluate")
    table = pd.DataFrame(rows)
    j_mean, f_mean = float(table["J"].mean()), float(table["F"].mean())
    summary = {"J": j_mean, "F": f_mean, "J&F": (j_mean + f_mean) / 2}
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_csv(pd.DataFrame([summary]), out_dir / "global_results.csv")
        write_csv(table, out_dir / "per-expression_results.csv")
        per_video = table.groupby("video", sort=False)[["J", "F"]].mean().reset_index()
        plot_bars(per_video, "video", ["J", "F"], out_dir / "per-video_results.png", "MeViS")
    return {**summary, "per_expression": table}
