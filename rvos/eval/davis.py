"""DAVIS region similarity J, boundary measure F and per-object statistics.

The numbers are those of davis2017-evaluation (`metrics.db_eval_iou`,
`metrics.db_eval_boundary`, `utils.db_statistics`); FORMATS.md §7 states the rules.
F is computed faster but identically: the boundary maps and the disk dilation only
cover the bounding box of the two masks (dilation never reaches outside the boundary
pixels it is read at), the disk is dilated as a union of rectangles (separable in
OpenCV), and frames with an empty boundary map skip the dilation.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import cv2
import numpy as np

__all__ = [
    "boundary_map",
    "boundary_measure",
    "object_statistics",
    "region_similarity",
    "score_expression",
]


def _as_masks(gt, pred, void) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Boolean views of (..., H, W) masks; void broadcasts to the masks' shape."""
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape or gt.ndim < 2:
        raise ValueError(
            f"gt {gt.shape} and pred {pred.shape} must be masks of one shape (..., H, W)"
        )
    gt, pred = gt.astype(bool, copy=False), pred.astype(bool, copy=False)
    if void is not None:
        void = np.asarray(void)
        try:
            void = np.broadcast_to(void.astype(bool, copy=False), gt.shape)
        except ValueError:
            raise ValueError(f"void {void.shape} does not broadcast to masks {gt.shape}") from None
    return gt, pred, void


def region_similarity(gt, pred, void=None) -> np.ndarray:
    """Jaccard index per frame: masks (..., H, W) -> (...,) float64; 1 where the union is empty.

    Pixels where `void` is true count neither in the intersection nor in the union.
    """
    gt, pred, void = _as_masks(gt, pred, void)
    lead, (h, w) = gt.shape[:-2], gt.shape[-2:]
    gt, pred = gt.reshape(-1, h, w), pred.reshape(-1, h, w)
    void = None if void is None else void.reshape(-1, h, w)
    inter = np.empty(len(gt), dtype=np.int64)
    union = np.empty(len(gt), dtype=np.int64)
    for i, (g, p) in enumerate(zip(gt, pred, strict=True)):
        if void is not None:
            g, p = g & ~void[i], p & ~void[i]
        inter[i] = np.count_nonzero(g & p)
        union[i] = np.count_nonzero(g) + np.count_nonzero(p) - inter[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        j = inter / union
    j[union == 0] = 1.0
    return j.reshape(lead)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary of a (H, W) mask, as in davis2017-evaluation's `_seg2bmap`.

    A pixel is on the boundary when it differs from its right, lower or lower-right
    neighbour; the last row only looks right, the last column only looks down, and the
    bottom-right pixel is never on the boundary.
    """
    seg = np.asarray(mask).astype(bool, copy=False)
    if seg.ndim != 2:
        raise ValueError(f"boundary_map takes one (H, W) mask, got shape {seg.shape}")
    bmap = np.zeros(seg.shape, dtype=bool)
    core = seg[:-1, :-1]
    bmap[:-1, :-1] = (core != seg[:-1, 1:]) | (core != seg[1:, :-1]) | (core != seg[1:, 1:])
    bmap[-1, :-1] = seg[-1, :-1] != seg[-1, 1:]
    bmap[:-1, -1] = seg[:-1, -1] != seg[1:, -1]
    return bmap


def _disk_kernel(radius: float) -> np.ndarray:
    """The official disk: ones where dx^2 + dy^2 <= r^2 on the grid arange(-r, r + 1)."""
    offsets = np.arange(-radius, radius + 1)
    dx, dy = np.meshgrid(offsets, offsets)
    return (dx**2 + dy**2 <= radius**2).astype(np.uint8)


@functools.lru_cache(maxsize=16)
def _disk_dilation(radius: float) -> Callable[[np.ndarray], np.ndarray]:
    """A function dilating a (h, w) uint8 map with the disk of `radius`, as cv2.dilate does.

    For an integer radius the disk is the union of the centred rectangles
    (2 * half_width(dy) + 1) x (2 * dy + 1) at the rows where its half width steps down,
    and OpenCV dilates rectangles separably. Other radii (a `bound_th` >= 1 that is not
    an integer gives an even, off-centre kernel) use the kernel directly.
    """
    kernel = _disk_kernel(radius)
    if radius != int(radius):
        return functools.partial(cv2.dilate, kernel=kernel)
    r = int(radius)
    half = [int(np.count_nonzero(kernel[r + dy])) // 2 for dy in range(r + 1)]
    rects = [
        np.ones((2 * dy + 1, 2 * half[dy] + 1), dtype=np.uint8)
        for dy in range(r + 1)
        if dy == r or half[dy + 1] < half[dy]
    ]

    def dilate(bmap: np.ndarray) -> np.ndarray:
        out = cv2.dilate(bmap, rects[0])
        for rect in rects[1:]:
            cv2.bitwise_or(out, cv2.dilate(bmap, rect), dst=out)
        return out

    return dilate


def _frame_f(gt: np.ndarray, pred: np.ndarray, dilate: Callable) -> float:
    """Boundary F of one frame (void already removed from both masks)."""
    x, y, w, h = cv2.boundingRect((gt | pred).view(np.uint8))
    if w == 0:  # both masks empty: both boundary maps empty
        return 1.0
    # Boundary pixels lie within one pixel above/left of the masks and need one more
    # row/column below/right to be decided; the crop's own edge rules then agree with the
    # image's because the extra row/column is empty.
    rows = slice(max(y - 1, 0), min(y + h + 1, gt.shape[0]))
    cols = slice(max(x - 1, 0), min(x + w + 1, gt.shape[1]))
    gt_b, pred_b = boundary_map(gt[rows, cols]), boundary_map(pred[rows, cols])
    n_gt, n_pred = np.count_nonzero(gt_b), np.count_nonzero(pred_b)
    if n_pred == 0 or n_gt == 0:
        precision, recall = float(n_pred == 0), float(n_gt == 0)
    else:
        gt_dil = dilate(gt_b.view(np.uint8)).view(bool)
        pred_dil = dilate(pred_b.view(np.uint8)).view(bool)
        precision = np.count_nonzero(pred_b & gt_dil) / float(n_pred)
        recall = np.count_nonzero(gt_b & pred_dil) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def boundary_measure(gt, pred, void=None, bound_th: float = 0.008) -> np.ndarray:
    """Boundary F-measure per frame: masks (..., H, W) -> (...,) float64.

    The tolerance is ceil(bound_th * diagonal) pixels, or `bound_th` pixels when it is
    >= 1. Empty/empty scores 1, exactly one empty boundary map scores 0.
    """
    gt, pred, void = _as_masks(gt, pred, void)
    lead, (h, w) = gt.shape[:-2], gt.shape[-2:]
    radius = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm((h, w)))
    dilate = _disk_dilation(float(radius))
    gt, pred = gt.reshape(-1, h, w), pred.reshape(-1, h, w)
    void = None if void is None else void.reshape(-1, h, w)
    f = np.empty(len(gt))
    for i, (g, p) in enumerate(zip(gt, pred, strict=True)):
        if void is not None:
            g, p = g & ~void[i], p & ~void[i]
        f[i] = _frame_f(g, p, dilate)
    return f.reshape(lead)


def object_statistics(per_frame) -> dict[str, float]:
    """Mean, recall and decay of one object's per-frame J or F, as `utils.db_statistics`.

    Keys: "mean" (NaN-ignoring), "recall" (fraction of frames > 0.5), "decay" (mean of the
    first quarter bin minus the last, with the official uint8 bin indices: they wrap
    modulo 256, and so does `end + 1` under NumPy 2, so sequences of 256+ frames get
    official-but-odd bins) and "decay_exact" (the same bins without the uint8 cast).
    """
    x = np.asarray(per_frame, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"per_frame must be one vector of frame values, got shape {x.shape}")
    edges = (np.round(np.linspace(1, len(x), 5) + 1e-10) - 1).astype(np.int64)
    wrapped = edges % 256
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN or empty bins
        return {
            "mean": float(np.nanmean(x)),
            "recall": float(np.nanmean(x > 0.5)),
            "decay": float(
                np.nanmean(x[wrapped[0] : (wrapped[1] + 1) % 256])
                - np.nanmean(x[wrapped[3] : (wrapped[4] + 1) % 256])
            ),
            "decay_exact": float(
                np.nanmean(x[edges[0] : edges[1] + 1]) - np.nanmean(x[edges[3] : edges[4] + 1])
            ),
        }


def score_expression(gt, pred) -> dict:
    """J and F of one referring expression: masks (T, H, W), no void.

    Keys: "J" and "F" (T,) per-frame arrays; "J_mean", "J_recall", "J_decay", "F_mean",
    "F_recall", "F_decay" (`object_statistics`); "JF_mean" = (J_mean + F_mean) / 2.
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.ndim != 3:
        raise ValueError(f"score_expression takes (T, H, W) masks, got shape {gt.shape}")
    scores = {"J": region_similarity(gt, pred), "F": boundary_measure(gt, pred)}
    for name in ("J", "F"):
        stats = object_statistics(scores[name])
        scores.update({f"{name}_{key}": stats[key] for key in ("mean", "recall", "decay")})
    scores["JF_mean"] = (scores["J_mean"] + scores["F_mean"]) / 2
    return scores
