"""DAVIS region similarity J, boundary measure F and per-object statistics.

The numbers are those of davis2017-evaluation (`metrics.db_eval_iou`,
`metrics.db_eval_boundary`, `utils.db_statistics`); FORMATS.md §7 states the rules.
The official code dilates two full-frame boundary maps per frame with OpenCV. Here the
frames of a chunk are packed 64 pixels to a word, each cropped to a window of one common
size around its masks, so that every step below is one NumPy operation over the whole
chunk at 1/8 of the bytes, and only integer counts leave it:

- J from the popcounts of G, P and G & P;
- a boundary map from XORs of the packed rows with their east and south neighbours;
- the disk dilation as the OR, over the disk's rows, of row-shifted horizontal windows,
  each window grown by doubling (W_(m+s) = W_m | W_m moved s <= m columns);
- precision and recall from the popcounts of one boundary map AND the other's dilation;
  frames whose answer needs no dilation (equal masks, an empty map) skip it.

Bits and integers are exact, so the numbers are the official ones, not approximations;
tests/eval/davis_oracle.py is the step-by-step version they are tested and timed against.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

__all__ = [
    "boundary_map",
    "boundary_measure",
    "object_statistics",
    "region_similarity",
    "score_expression",
]

# Pixels per chunk of frames (40 frames of 480x854): enough to amortise NumPy's per-call
# cost, small enough for the packed arrays (1/8 of that each) to stay in cache-sized MiBs.
_CHUNK_PIXELS = 1 << 24


def _frames(gt, pred, void) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """(gt, pred) as (N, H, W) arrays whose non-zero pixels are foreground, void removed.

    Boolean and integer masks are used as they are (no copy); others are compared with 0,
    which is what the official `astype(bool)` does.
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape or gt.ndim < 2:
        raise ValueError(
            f"gt {gt.shape} and pred {pred.shape} must be masks of one shape (..., H, W)"
        )
    gt, pred = (m if m.dtype == bool or m.dtype.kind in "iu" else m != 0 for m in (gt, pred))
    if void is not None:
        void = np.asarray(void)
        try:
            keep = ~np.broadcast_to(void.astype(bool, copy=False), gt.shape)
        except ValueError:
            raise ValueError(f"void {void.shape} does not broadcast to masks {gt.shape}") from None
        gt, pred = np.logical_and(gt, keep), np.logical_and(pred, keep)
    lead, (h, w) = gt.shape[:-2], gt.shape[-2:]
    return gt.reshape(-1, h, w), pred.reshape(-1, h, w), lead


def _pack(gt: np.ndarray, pred: np.ndarray, pad: int, reach: int):
    """Crop and pack (T, H, W) masks: (m, open_bottom, last_cols), or None if all are empty.

    m: (2, T, h, words) uint64, gt then pred; pixel column c of a row is bit c % 64 of word
    c // 64. Every frame gets a window of the same h x 8k pixels that holds its boundary
    pixels (its masks' bounding box and the row above and column left of it), placed
    `pad` bits into the row with at least `reach` zero bits after it.
    open_bottom: (T,) frames whose window ends above the image's last row.
    last_cols: (T,) window column of the image's last column, -1 if the window ends before.
    """
    t, h, w = gt.shape
    full = [np.packbits(masks, axis=-1, bitorder="little") for masks in (gt, pred)]
    # Bounding boxes in (byte column, row): a byte more on the left for the column left
    # of the masks, a row more above.
    boxes = np.array([cv2.boundingRect(frame) for frame in full[0] | full[1]]).reshape(t, 4)
    filled = boxes[:, 2] > 0
    if not filled.any():
        return None
    first, top = np.maximum(boxes[:, 0] - 1, 0), np.maximum(boxes[:, 1] - 1, 0)
    size = int((boxes[:, 0] + boxes[:, 2] - first)[filled].max())
    height = int((boxes[:, 1] + boxes[:, 3] - top)[filled].max())
    top, first = np.minimum(top, h - height), np.minimum(first, full[0].shape[-1] - size)
    words = -(-(pad + 8 * size + reach) // 64)
    packed = np.zeros((2, t, height, 8 * words), dtype=np.uint8)
    for i in np.flatnonzero(filled):
        window = np.s_[i, top[i] : top[i] + height, first[i] : first[i] + size]
        packed[0, i, :, pad // 8 : pad // 8 + size] = full[0][window]
        packed[1, i, :, pad // 8 : pad // 8 + size] = full[1][window]
    last_cols = np.where(8 * (first + size) >= w, pad + w - 1 - 8 * first, -1)
    return packed.view("<u8"), top + height < h, last_cols


def _take(flat: np.ndarray, s: int, out: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """out[c] = flat[c + s] on the packed bit string `flat`, 0 past its ends; returns out.

    Rows lie one after the other in `flat`, so the loops stay contiguous; the bits that
    cross into a neighbouring row only ever land in the zero padding that `_pack` leaves
    at both ends of every row. `tmp` is scratch space of the same size.
    """
    n = len(flat)
    q, b = divmod(abs(s), 64)
    if q >= n:
        out[:] = 0
    elif s >= 0:  # word i gathers words i + q (its low bits) and i + q + 1 (its high bits)
        np.right_shift(flat[q:], b, out=out[: n - q])
        if b:
            np.left_shift(flat[q + 1 :], 64 - b, out=tmp[: n - q - 1])
            out[: n - q - 1] |= tmp[: n - q - 1]
        out[n - q :] = 0
    else:
        np.left_shift(flat[: n - q], b, out=out[q:])
        if b:
            np.right_shift(flat[: n - q - 1], 64 - b, out=tmp[q + 1 :])
            out[q + 1 :] |= tmp[q + 1 :]
        out[:q] = 0
    return out


def _clear_column(x: np.ndarray, col: int) -> None:
    """Set column `col` of packed rows (..., words) to 0."""
    x[..., col // 64] &= ~np.uint64(1 << (col % 64))


def _boundaries(m, pad, open_bottom, last_cols, out, east, tmp) -> np.ndarray:
    """Packed `_seg2bmap` of the packed masks m from `_pack`, into `out`.

    A pixel is on the boundary when its 2x2 block (itself, east, south, south-east) is not
    uniform, i.e. east[y] | south[y] | east[y + 1], where east/south are the XORs with
    those neighbours. Outside a window the masks are 0, except past the image's own last
    column and last row, which have no east or south neighbour; the padding column left
    of the window is not part of the image either. `east`, `tmp`: scratch arrays.
    """
    _take(m.reshape(-1), 1, east.reshape(-1), tmp.reshape(-1))
    east ^= m
    _clear_column(east, pad - 1)
    for i in np.flatnonzero(last_cols >= 0):
        _clear_column(east[:, i], last_cols[i])
    out[...] = east
    out[..., :-1, :] |= east[..., 1:, :]
    np.bitwise_xor(m[..., :-1, :], m[..., 1:, :], out=tmp[..., :-1, :])
    out[..., :-1, :] |= tmp[..., :-1, :]
    if open_bottom.all():
        out[..., -1, :] |= m[..., -1, :]
    elif open_bottom.any():
        out[:, open_bottom, -1, :] |= m[:, open_bottom, -1, :]
    return out


@functools.lru_cache(maxsize=16)
def _disk_rows(radius: float) -> tuple[tuple[int, int, tuple[int, ...]], ...]:
    """The official disk kernel as cv2.dilate applies it, as horizontal windows.

    ((n, a, dys), ...) in increasing n: the kernel rows dy in dys read the n columns
    a .. a + n - 1 of the source row y + dy (anchor at the kernel's centre, as cv2's
    default; the even kernels of a non-integer `bound_th` >= 1 included).
    """
    kernel = _disk_kernel(radius)
    anchor_y, anchor_x = kernel.shape[0] // 2, kernel.shape[1] // 2
    rows: dict[tuple[int, int], list[int]] = {}
    for j, row in enumerate(kernel):
        cols = np.flatnonzero(row)
        if len(cols):  # a disk's rows are runs: one window each
            rows.setdefault((len(cols), int(cols[0]) - anchor_x), []).append(j - anchor_y)
    return tuple((n, a, tuple(dys)) for (n, a), dys in sorted(rows.items()))


def _dilate(bmap, rows, out, work) -> np.ndarray:
    """Packed cv2.dilate of packed maps (..., rows, words) with the kernel `rows`, into out.

    `work`: four scratch arrays like `bmap` (two windows, the moved window, shift scratch).
    """
    height, shape = bmap.shape[-2], bmap.shape
    spare = [work[0].reshape(-1), work[1].reshape(-1)]
    moved, tmp = work[2].reshape(-1), work[3].reshape(-1)
    out[...] = 0
    window, width = bmap.reshape(-1), 1  # window[c] = OR of bmap[c .. c + width - 1]
    for n, a, dys in rows:
        while width < n:
            step = min(n - width, width)
            grown = spare[0] if window is not spare[0] else spare[1]
            _take(window, step, grown, tmp)
            grown |= window
            window, width = grown, width + step
        shifted = (window if a == 0 else _take(window, a, moved, tmp)).reshape(shape)
        for dy in dys:
            if abs(dy) >= height:
                continue
            if dy >= 0:
                out[..., : height - dy, :] |= shifted[..., dy:, :]
            else:
                out[..., -dy:, :] |= shifted[..., : height + dy, :]
    return out


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per frame of packed (..., rows, words) arrays."""
    return np.bitwise_count(x).sum(axis=(-2, -1), dtype=np.int64)


class _Scratch:
    """Equal slots of reusable uint64 memory: fresh arrays at every step would page-fault."""

    def __init__(self, slots: int):
        self.slots, self.size, self.memory = slots, 0, np.empty(0, dtype=np.uint64)

    def fit(self, size: int) -> None:
        if size > self.size:
            self.size, self.memory = size, np.empty(self.slots * size, dtype=np.uint64)

    def __call__(self, shape: tuple[int, ...], *slots: int) -> list[np.ndarray]:
        size = math.prod(shape)
        return [self.memory[k * self.size : k * self.size + size].reshape(shape) for k in slots]


def _boundary_hits(m, open_bottom, last_cols, pad, rows, same, scratch):
    """(boundary pixels, hits) per map and frame, each (2, T): gt first, then pred.

    The hits of gt are |B_G & dil(B_P)|, those of pred |B_P & dil(B_G)|. Equal masks hit
    every boundary pixel and an empty map has no hits and gives none, so only the other
    frames are dilated. `m` itself ends up as scratch.
    """
    bmap = _boundaries(m, pad, open_bottom, last_cols, *scratch(m.shape, 0, 1, 2))
    n_b = _popcount(bmap)
    hits = np.where(same, n_b, 0)
    need = np.flatnonzero(~same & (n_b > 0).all(axis=0))
    if len(need):
        shape = (2, len(need), *m.shape[2:])
        if len(need) < len(same):
            bmap = np.take(bmap, need, axis=1, out=scratch(shape, 1)[0], mode="clip")
        spare = m.reshape(-1)[: math.prod(shape)].reshape(shape)
        out, *work = scratch(shape, 2, 3, 4, 5) + [spare]
        dil = _dilate(bmap, rows, out, work)
        hits[:, need] = _popcount(np.bitwise_and(bmap, dil[::-1], out=work[0]))
    return n_b, hits


def _counts(gt: np.ndarray, pred: np.ndarray, radius: float | None) -> dict[str, np.ndarray]:
    """Per-frame integer counts of (N, H, W) masks: J's always, F's when radius is given.

    Keys "inter", "gt", "pred" (pixels), and with a radius "gt_b", "pred_b" (boundary
    pixels), "gt_hit" (|B_G & dil(B_P)|) and "pred_hit" (|B_P & dil(B_G)|).
    """
    frames, h, w = gt.shape
    keys = ["inter", "gt", "pred"] + (
        [] if radius is None else ["gt_b", "pred_b", "gt_hit", "pred_hit"]
    )
    counts = {key: np.zeros(frames, dtype=np.int64) for key in keys}
    rows = None if radius is None else _disk_rows(radius)
    # Zero bits on both sides of every window, as far as a dilation window reaches (and
    # one for the east neighbour); the left ones in whole bytes, for packbits' output.
    reach = 0 if rows is None else max(max(-a, a + n - 1, 1) for n, a, _ in rows)
    pad = -(-reach // 8) * 8
    scratch = _Scratch(6)
    step = max(1, _CHUNK_PIXELS // max(h * w, 1))
    for start in range(0, frames, step):
        chunk = slice(start, min(start + step, frames))
        packed = _pack(gt[chunk], pred[chunk], pad, reach)
        if packed is None:
            continue  # every mask of the chunk is empty: all counts stay 0
        m, open_bottom, last_cols = packed
        scratch.fit(m.size)
        inter = _popcount(np.bitwise_and(m[0], m[1], out=scratch(m.shape[1:], 0)[0]))
        n_gt, n_pred = _popcount(m)
        counts["inter"][chunk], counts["gt"][chunk], counts["pred"][chunk] = inter, n_gt, n_pred
        if rows is not None:
            same = (inter == n_gt) & (inter == n_pred)
            n_b, hits = _boundary_hits(m, open_bottom, last_cols, pad, rows, same, scratch)
            counts["gt_b"][chunk], counts["pred_b"][chunk] = n_b
            counts["gt_hit"][chunk], counts["pred_hit"][chunk] = hits
    return counts


def _jaccard(counts: dict[str, np.ndarray]) -> np.ndarray:
    inter = counts["inter"]
    union = counts["gt"] + counts["pred"] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        j = inter / union
    j[union == 0] = 1.0
    return j


def _f_measure(counts: dict[str, np.ndarray]) -> np.ndarray:
    """F from boundary counts with the official rules for empty maps (FORMATS.md §7)."""
    n_gt, n_pred = counts["gt_b"], counts["pred_b"]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = counts["pred_hit"] / n_pred.astype(np.float64)
        recall = counts["gt_hit"] / n_gt.astype(np.float64)
        # An empty map has no hits, so the other side's ratio is already 0 where it must be.
        precision[n_pred == 0] = 1.0
        recall[n_gt == 0] = 1.0
        f = 2 * precision * recall / (precision + recall)
    f[precision + recall == 0] = 0.0
    return f


def _radius(bound_th: float, shape: tuple[int, int]) -> float:
    """Tolerance in pixels: `bound_th` itself when >= 1, else ceil(bound_th * diagonal)."""
    return float(bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(shape)))


def region_similarity(gt, pred, void=None) -> np.ndarray:
    """Jaccard index per frame: masks (..., H, W) -> (...,) float64; 1 where the union is empty.

    Pixels where `void` is true count neither in the intersection nor in the union.
    """
    gt, pred, lead = _frames(gt, pred, void)
    return _jaccard(_counts(gt, pred, None)).reshape(lead)


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


def boundary_measure(gt, pred, void=None, bound_th: float = 0.008) -> np.ndarray:
    """Boundary F-measure per frame: masks (..., H, W) -> (...,) float64.

    The tolerance is ceil(bound_th * diagonal) pixels, or `bound_th` pixels when it is
    >= 1. Empty/empty scores 1, exactly one empty boundary map scores 0.
    """
    gt, pred, lead = _frames(gt, pred, void)
    radius = _radius(bound_th, gt.shape[-2:])
    return _f_measure(_counts(gt, pred, radius)).reshape(lead)


def _nanmean(x: np.ndarray) -> float:
    """np.nanmean of a vector, without its overhead: the same sum of the same NaN-zeroed
    values over the count of numbers (NaN when there are none, without a warning)."""
    nan = np.isnan(x)
    count = len(x) - np.count_nonzero(nan)
    return float(np.where(nan, 0.0, x).sum() / count) if count else math.nan


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
    return {
        "mean": _nanmean(x),
        "recall": np.count_nonzero(x > 0.5) / len(x) if len(x) else math.nan,
        "decay": _nanmean(x[wrapped[0] : (wrapped[1] + 1) % 256])
        - _nanmean(x[wrapped[3] : (wrapped[4] + 1) % 256]),
        "decay_exact": _nanmean(x[edges[0] : edges[1] + 1]) - _nanmean(x[edges[3] : edges[4] + 1]),
    }


def score_expression(gt, pred) -> dict:
    """J and F of one referring expression: masks (T, H, W), no void.

    Keys: "J" and "F" (T,) per-frame arrays; "J_mean", "J_recall", "J_decay", "F_mean",
    "F_recall", "F_decay" (`object_statistics`); "JF_mean" = (J_mean + F_mean) / 2.
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.ndim != 3:
        raise ValueError(f"score_expression takes (T, H, W) masks, got shape {gt.shape}")
    gt, pred, _ = _frames(gt, pred, None)
    counts = _counts(gt, pred, _radius(0.008, gt.shape[-2:]))  # one pass for both measures
    scores = {"J": _jaccard(counts), "F": _f_measure(counts)}
    for name in ("J", "F"):
        stats = object_statistics(scores[name])
        scores.update({f"{name}_{key}": stats[key] for key in ("mean", "recall", "decay")})
    scores["JF_mean"] = (scores["J_mean"] + scores["F_mean"]) / 2
    return scores
