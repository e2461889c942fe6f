"""A plain per-frame J&F that follows davis2017-evaluation step by step: the test oracle.

rvos.eval.davis computes the same numbers on packed bits; this module keeps the published
algorithm in its slow, obvious form (FORMATS.md §7) so that tests and
benchmarks/eval_speed.py can check and time the fast code against it: full-frame boundary
maps built from shifted copies, one cv2.dilate with the disk kernel per map and frame, the
official precision/recall rules and `db_statistics` with its uint8 decay bins.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np


def jaccard(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> np.ndarray:
    """J per frame of (T, H, W) masks: |G & P| / |G | P| outside void, 1 for an empty union."""
    gt, pred = gt.astype(bool), pred.astype(bool)
    keep = np.ones_like(gt) if void is None else ~void.astype(bool)
    inter = np.sum(gt & pred & keep, axis=(-2, -1))
    union = np.sum((gt | pred) & keep, axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        j = inter / union
    j[union == 0] = 1
    return j


def seg_boundary(seg: np.ndarray) -> np.ndarray:
    """`_seg2bmap`: where a pixel differs from its east, south or south-east copy."""
    seg = seg.astype(bool)
    east, south, south_east = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    bmap = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    bmap[-1, :] = seg[-1, :] ^ east[-1, :]  # the last row only looks east
    bmap[:, -1] = seg[:, -1] ^ south[:, -1]  # the last column only looks south
    bmap[-1, -1] = False
    return bmap


def disk(radius: float) -> np.ndarray:
    """skimage.morphology.disk: ones where dx^2 + dy^2 <= r^2 on arange(-r, r + 1)."""
    grid = np.arange(-radius, radius + 1)
    dx, dy = np.meshgrid(grid, grid)
    return (dx**2 + dy**2 <= radius**2).astype(np.uint8)


def f_frame(pred: np.ndarray, gt: np.ndarray, void=None, bound_th: float = 0.008) -> float:
    """`f_measure` of one (H, W) frame; the prediction comes first, as in the official call."""
    keep = np.ones(gt.shape, bool) if void is None else ~void.astype(bool)
    radius = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(pred.shape))
    pred_b, gt_b = seg_boundary(pred * keep), seg_boundary(gt * keep)
    kernel = disk(radius)
    pred_dil = cv2.dilate(pred_b.astype(np.uint8), kernel)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel)
    n_pred, n_gt = np.sum(pred_b), np.sum(gt_b)
    if n_pred == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_pred > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_pred == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision = np.sum(pred_b * gt_dil) / float(n_pred)
        recall = np.sum(gt_b * pred_dil) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def boundary_f(gt, pred, void=None, bound_th: float = 0.008) -> np.ndarray:
    """F per frame of (T, H, W) masks, one frame at a time."""
    return np.array(
        [
            f_frame(pred[t], gt[t], None if void is None else void[t], bound_th)
            for t in range(len(gt))
        ]
    )


def statistics(per_frame) -> tuple[float, float, float]:
    """`db_statistics`: (mean, recall, decay), the decay bins cast to uint8 as published."""
    x = np.asarray(per_frame, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # NaN bins, uint8 overflow
        mean = np.nanmean(x)
        recall = np.nanmean(x > 0.5)
        ids = (np.round(np.linspace(1, len(x), 5) + 1e-10) - 1).astype(np.uint8)
        bins = [x[ids[i] : ids[i + 1] + 1] for i in range(4)]
        decay = np.nanmean(bins[0]) - np.nanmean(bins[3])
    return float(mean), float(recall), float(decay)


def score_sequence(gt: np.ndarray, pred: np.ndarray) -> dict:
    """Per-frame J and F of one (T, H, W) sequence and their statistics (no void)."""
    scores = {"J": jaccard(gt, pred), "F": boundary_f(gt, pred)}
    for name in ("J", "F"):
        mean, recall, decay = statistics(scores[name])
        scores.update({f"{name}_mean": mean, f"{name}_recall": recall, f"{name}_decay": decay})
    return scores
