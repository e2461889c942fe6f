"""DAVIS-2017 semi-supervised and unsupervised evaluation, as davis2017-evaluation.

Ground truth: `<davis_root>/Annotations[_unsupervised]/480p/<seq>/<frame>.png` index PNGs
(255 = void) and `<davis_root>/ImageSets/<year>/<subset>.txt`. Results: one index PNG per
GT frame name, `<results>/<seq>/<frame>.png`, in a folder or a zip (see `stream`). Rules
(FORMATS.md §7): the number of GT objects is the largest label of the first GT frame;
semi-supervised drops the first and last frames, ignores void and pairs prediction k with
GT k; unsupervised allows up to 20 predicted ids, pads missing ones with empty masks and
pairs them with GT objects by Hungarian matching on the mean over frames of (J + F) / 2.
Dataset means run over all objects of all sequences directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from rvos.errors import DataError
from rvos.eval.davis import boundary_measure, object_statistics, region_similarity
from rvos.eval.report import plot_bars, write_csv
from rvos.eval.stream import MaskSource, open_masks

__all__ = [
    "GLOBAL_COLUMNS",
    "DavisResult",
    "evaluate_davis",
    "evaluate_semisupervised",
    "evaluate_unsupervised",
    "read_gt_sequence",
    "summarize",
]

TASKS = ("semi-supervised", "unsupervised")
VOID = 255
MAX_PROPOSALS = 20
GLOBAL_COLUMNS = ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]

log = logging.getLogger(__name__)


def _pair_scores(gt_ids, pred_ids, gt, pred, void):
    """J and F (len(pred_ids), len(gt_ids), T) for every pair of ids in label maps (T, H, W)."""
    j = np.zeros((len(pred_ids), len(gt_ids), len(gt)))
    f = np.zeros_like(j)
    for g, gt_id in enumerate(gt_ids):
        gt_mask = gt == gt_id
        for p, pred_id in enumerate(pred_ids):
            pred_mask = pred == pred_id
            j[p, g] = region_similarity(gt_mask, pred_mask, void)
            f[p, g] = boundary_measure(gt_mask, pred_mask, void)
    return j, f


def evaluate_semisupervised(gt: np.ndarray, pred: np.ndarray, n_objects: int):
    """Per-object J, F (n_objects, T) for label maps (T, H, W) already cut to frames 1..T-2.

    Prediction id k is GT object k; ids above n_objects are an error, void is ignored.
    Returns (J, F, pairs) with pairs the (gt_id, pred_id) of each row.
    """
    n_pred = int(pred.max(initial=0))
    if n_pred > n_objects:
        raise DataError(f"prediction has index {n_pred} but the sequence has {n_objects} objects")
    ids = list(range(1, n_objects + 1))
    j, f = _pair_scores(ids, ids, gt, pred, None)
    rows = np.arange(n_objects)
    return j[rows, rows], f[rows, rows], [(k, k) for k in ids]


def evaluate_unsupervised(gt: np.ndarray, pred: np.ndarray, n_objects: int, void=None):
    """Per-object J, F (n_objects, T) after Hungarian matching of predicted ids to GT objects.

    Label maps (T, H, W); void (T, H, W) bool or None. Rows follow scipy's assignment order
    (ascending prediction id) as the official per-object rows do; pairs gives the
    (gt_id, pred_id) of each row, pred_id above the largest predicted index = empty padding.
    """
    n_pred = int(pred.max(initial=0))
    if n_pred > MAX_PROPOSALS:
        raise DataError(f"prediction has index {n_pred}; at most {MAX_PROPOSALS} are allowed")
    gt_ids = list(range(1, n_objects + 1))
    pred_ids = list(range(1, max(n_pred, n_objects) + 1))
    j, f = _pair_scores(gt_ids, pred_ids, gt, pred, void)
    rows, cols = linear_sum_assignment(-((np.mean(j, axis=2) + np.mean(f, axis=2)) / 2))
    pairs = [(gt_ids[c], pred_ids[r]) for r, c in zip(rows, cols, strict=True)]
    return j[rows, cols], f[rows, cols], pairs


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


def read_gt_sequence(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray, int]:
    """(frame names, labels (T, H, W) uint8 with void set to 0, void (T, H, W), n_objects)."""
    names = sorted(p.stem for p in folder.glob("*.png"))
    if not names:
        raise DataError(f"{folder}: no ground-truth PNG masks")
    labels = np.stack([_read_png(folder / f"{name}.png") for name in names])
    void = labels == VOID
    labels[void] = 0
    return names, labels, void, int(labels[0].max())


def _read_results(source: MaskSource, seq: str, names: list[str], shape) -> np.ndarray:
    if not source.exists(seq):
        raise DataError(f"{source.describe(seq)}: results for sequence {seq} not found")
    frames = []
    for name in names:
        frame = source.read_index(seq, f"{name}.png")
        if frame.shape != shape:
            raise DataError(f"{source.describe(seq, name + '.png')}: {frame.shape}, GT is {shape}")
        frames.append(frame)
    return np.stack(frames)


def _object_rows(seq, j, f, pairs) -> list[dict]:
    rows = []
    for i, (gt_id, pred_id) in enumerate(pairs):
        js, fs = object_statistics(j[i]), object_statistics(f[i])
        rows.append(
            {
                "Sequence": f"{seq}_{i + 1}",
                "sequence": seq,
                "gt_id": gt_id,
                "pred_id": pred_id,
                "J&F-Mean": (js["mean"] + fs["mean"]) / 2,
                **{f"J-{k.capitalize()}": js[k] for k in ("mean", "recall", "decay")},
                **{f"F-{k.capitalize()}": fs[k] for k in ("mean", "recall", "decay")},
            }
        )
    return rows


def summarize(per_object: pd.DataFrame) -> dict[str, float]:
    """Dataset means over all objects, keyed like the official global CSV."""
    means = {name: float(np.mean(per_object[name])) for name in GLOBAL_COLUMNS[1:]}
    return {"J&F-Mean": (means["J-Mean"] + means["F-Mean"]) / 2, **means}


@dataclass(frozen=True)
class DavisResult:
    """`summary`: GLOBAL_COLUMNS -> value; `per_object`: one row per GT object, columns
    Sequence (official `<seq>_<row>` label), sequence, gt_id, pred_id and GLOBAL_COLUMNS."""

    summary: dict[str, float]
    per_object: pd.DataFrame


def _sequence_list(davis_root: Path, task: str, subset: str, sequences) -> list[str]:
    if sequences is not None:
        return list(sequences)
    unsup_test = task == "unsupervised" and subset in ("test-dev", "test-challenge")
    listing = davis_root / "ImageSets" / ("2019" if unsup_test else "2017") / f"{subset}.txt"
    if not listing.is_file():
        raise DataError(f"{listing}: sequence list not found")
    return [line.strip() for line in listing.read_text().splitlines() if line.strip()]


def evaluate_davis(
    davis_root: str | Path,
    results: str | Path,
    task: str = "unsupervised",
    subset: str = "val",
    sequences: list[str] | None = None,
    out_dir: str | Path | None = None,
    results_prefix: str = "",
    progress: bool = True,
) -> DavisResult:
    """Score a results folder or zip on DAVIS-2017 `subset` for `task`, one sequence at a time.

    With `out_dir`, writes `global_results-<subset>.csv`, `per-object_results-<subset>.csv`
    and `per-object_results-<subset>.png` there (full precision, atomically).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    davis_root = Path(davis_root)
    folder = "Annotations" if task == "semi-supervised" else "Annotations_unsupervised"
    rows = []
    with open_masks(results, results_prefix) as source:
        for seq in tqdm(_sequence_list(davis_root, task, subset, sequences), disable=not progress):
            names, gt, void, n_objects = read_gt_sequence(davis_root / folder / "480p" / seq)
            if task == "semi-supervised":
                names, gt = names[1:-1], gt[1:-1]
                pred = _read_results(source, seq, names, gt.shape[1:])
                j, f, pairs = evaluate_semisupervised(gt, pred, n_objects)
            else:
                pred = _read_results(source, seq, names, gt.shape[1:])
                j, f, pairs = evaluate_unsupervised(gt, pred, n_objects, void)
            rows.extend(_object_rows(seq, j, f, pairs))
            log.debug("%s: %d objects, %d frames", seq, n_objects, len(names))
    if not rows:
        raise DataError(f"{davis_root}: no GT objects in the evaluated sequences")
    per_object = pd.DataFrame(rows)
    result = DavisResult(summarize(per_object), per_object)
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_csv(pd.DataFrame([result.summary]), out_dir / f"global_results-{subset}.csv")
        write_csv(per_object, out_dir / f"per-object_results-{subset}.csv")
        plot_bars(
            per_object,
            "Sequence",
            ["J-Mean", "F-Mean"],
            out_dir / f"per-object_results-{subset}.png",
            f"DAVIS-2017 {subset} ({task})",
        )
    return result
