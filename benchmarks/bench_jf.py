"""Time rvos J&F against the official davis2017-evaluation algorithm, side by side.

    python benchmarks/bench_jf.py [--repeats 7] [--fixtures DIR]

The reference is the official `davis2017.metrics` when $DAVIS2017_EVAL points to a
checkout of davisvideochallenge/davis2017-evaluation (it imports scikit-image, which must
be importable too); otherwise a plain re-implementation of the same algorithm below
(full-frame boundary maps, one cv2.dilate with the full disk per map). Both run on the
masks of jf_case.npz already in memory, interleaved, and the ratio of the medians is
printed: absolute times vary 20-35% between runs on shared machines, the ratio less.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from rvos.eval.davis import boundary_measure, region_similarity

REPO = Path(__file__).resolve().parents[1]
FIXTURE_DIRS = [REPO / "tests/eval/fixtures", REPO.parent / "shared/fixtures"]


def plain_iou(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """J over (T, H, W) without shortcuts."""
    inter = np.sum(gt & pred, axis=(-2, -1))
    union = np.sum(gt | pred, axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        j = inter / union
    j[union == 0] = 1
    return j


def plain_bmap(seg: np.ndarray) -> np.ndarray:
    """Full-frame boundary map built from shifted copies, as the official code does."""
    right, down, diag = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    right[:, :-1], down[:-1, :], diag[:-1, :-1] = seg[:, 1:], seg[1:, :], seg[1:, 1:]
    bmap = (seg ^ right) | (seg ^ down) | (seg ^ diag)
    bmap[-1, :] = seg[-1, :] ^ right[-1, :]
    bmap[:, -1] = seg[:, -1] ^ down[:, -1]
    bmap[-1, -1] = False
    return bmap


def plain_boundary(gt: np.ndarray, pred: np.ndarray, bound_th: float = 0.008) -> np.ndarray:
    """F over (T, H, W): both maps dilated over the whole frame with the disk kernel."""
    radius = np.ceil(bound_th * np.linalg.norm(gt.shape[-2:]))
    offsets = np.arange(-radius, radius + 1)
    dx, dy = np.meshgrid(offsets, offsets)
    disk = (dx**2 + dy**2 <= radius**2).astype(np.uint8)
    scores = np.zeros(len(gt))
    for t in range(len(gt)):
        gt_b, pred_b = plain_bmap(gt[t]), plain_bmap(pred[t])
        gt_dil = cv2.dilate(gt_b.astype(np.uint8), disk)
        pred_dil = cv2.dilate(pred_b.astype(np.uint8), disk)
        n_gt, n_pred = gt_b.sum(), pred_b.sum()
        if n_pred == 0 or n_gt == 0:
            precision, recall = float(n_pred == 0), float(n_gt == 0)
        else:
            precision = np.sum(pred_b * gt_dil) / n_pred
            recall = np.sum(gt_b * pred_dil) / n_gt
        total = precision + recall
        scores[t] = 0 if total == 0 else 2 * precision * recall / total
    return scores


def reference_functions():
    """(name, iou, boundary): the official functions if $DAVIS2017_EVAL is set."""
    root = os.environ.get("DAVIS2017_EVAL")
    if not root:
        return "plain re-implementation (set DAVIS2017_EVAL for the official code)", (
            plain_iou,
            plain_boundary,
        )
    if not (Path(root) / "davis2017/metrics.py").is_file():
        sys.exit(f"DAVIS2017_EVAL={root} has no davis2017/metrics.py")
    sys.path.insert(0, root)
    from davis2017.metrics import db_eval_boundary, db_eval_iou

    return f"official davis2017-evaluation at {root}", (db_eval_iou, db_eval_boundary)


def load_case(folder: Path | None) -> list[tuple[np.ndarray, np.ndarray]]:
    folders = [folder] if folder else FIXTURE_DIRS
    for candidate in folders:
        path = candidate / "jf_case.npz"
        if path.is_file():
            with np.load(path) as data:
                keys = sorted(k for k in data.files if k.startswith("gt_"))
                return [(data[k].astype(bool), data["pred_" + k[3:]].astype(bool)) for k in keys]
    sys.exit(f"jf_case.npz not found in {[str(f) for f in folders]}")


def run_all(pairs, iou, boundary) -> tuple[float, list[np.ndarray]]:
    start = time.perf_counter()
    out = [np.concatenate([iou(g, p), boundary(g, p)]) for g, p in pairs]
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--fixtures", type=Path, default=None, help="folder with jf_case.npz")
    args = parser.parse_args()

    pairs = load_case(args.fixtures)
    frames = sum(len(g) for g, _ in pairs)
    name, (ref_iou, ref_boundary) = reference_functions()
    run_all(pairs[:1], ref_iou, ref_boundary)  # warm up imports and caches
    run_all(pairs[:1], region_similarity, boundary_measure)

    ours, theirs = [], []
    for _ in range(args.repeats):
        t_ref, ref_out = run_all(pairs, ref_iou, ref_boundary)
        t_ours, our_out = run_all(pairs, region_similarity, boundary_measure)
        theirs.append(t_ref)
        ours.append(t_ours)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(ref_out, our_out, strict=True))
    ref_s, our_s = statistics.median(theirs), statistics.median(ours)
    print(f"reference: {name}")
    height, width = pairs[0][0].shape[1:]
    print(f"{frames} frames of {height}x{width}, median of {args.repeats}")
    print(f"reference J+F: {ref_s:.3f} s ({1e3 * ref_s / frames:.2f} ms/frame)")
    print(f"rvos      J+F: {our_s:.3f} s ({1e3 * our_s / frames:.2f} ms/frame)")
    print(f"speed-up: {ref_s / our_s:.1f}x   max |difference|: {diff:.3g}")


if __name__ == "__main__":
    main()
