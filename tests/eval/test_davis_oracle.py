"""The step-by-step oracle against the official numbers, and the packed J&F against the oracle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rvos.eval import davis
from rvos.eval.davis import boundary_measure, object_statistics, region_similarity

from . import davis_oracle as oracle
from .conftest import COMMITTED

TOL = 1e-6


def test_oracle_reproduces_jf_case(jf_case):
    masks, expected = jf_case
    means = {"J": [], "F": []}
    for name, seq in expected["sequences"].items():
        scores = oracle.score_sequence(masks[f"gt_{name}"], masks[f"pred_{name}"])
        for metric in ("J", "F"):
            np.testing.assert_allclose(scores[metric], seq[metric], rtol=0, atol=TOL)
            for key in ("mean", "recall", "decay"):
                assert scores[f"{metric}_{key}"] == pytest.approx(seq[f"{metric}_{key}"], abs=TOL)
            means[metric].append(scores[f"{metric}_mean"])
    assert np.mean(means["J"]) == pytest.approx(expected["J_mean"], abs=TOL)
    assert np.mean(means["F"]) == pytest.approx(expected["F_mean"], abs=TOL)


def test_oracle_reproduces_official_edge_cases():
    expected = json.loads((COMMITTED / "davis_cases.json").read_text())
    with np.load(COMMITTED / "davis_cases.npz") as data:
        arrays = {key: data[key] for key in data.files}
    for i, bound_th in enumerate(expected["bound_th"]):
        gt, pred, void = arrays[f"gt_{i:03d}"], arrays[f"pred_{i:03d}"], arrays.get(f"void_{i:03d}")
        j = oracle.jaccard(gt[None], pred[None], None if void is None else void[None])[0]
        assert j == pytest.approx(expected["J"][i], abs=1e-12), i
        assert oracle.f_frame(pred, gt, void, bound_th) == pytest.approx(
            expected["F"][i], abs=1e-12
        )
    for row in expected["statistics"]:
        stats = oracle.statistics(arrays[f"frames_{row['n']:04d}"])
        assert stats == pytest.approx([row[k] for k in ("mean", "recall", "decay")], nan_ok=True)


# --- random cases: the packed implementation against the oracle, frame by frame -------------


def blobs(rng, t, h, w) -> np.ndarray:
    """(t, h, w) masks: unions of random rectangles and ellipses, some clipped by the borders."""
    yy, xx = np.mgrid[:h, :w]
    masks = np.zeros((t, h, w), dtype=bool)
    for frame in masks:
        for _ in range(rng.integers(0, 4)):
            cy, cx = rng.uniform(-0.2, 1.2, 2) * (h, w)
            ry, rx = rng.uniform(0.5, 0.6 * h + 1), rng.uniform(0.5, 0.6 * w + 1)
            if rng.random() < 0.5:
                frame |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            else:
                frame |= (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
    return masks


def perturb(rng, masks) -> np.ndarray:
    """A prediction near `masks`: shifted, grown or shrunk, noisy, emptied or replaced."""
    t, h, w = masks.shape
    out = np.roll(masks, tuple(rng.integers(-3, 4, 2)), axis=(1, 2))
    nudged = np.roll(out, tuple(rng.integers(-2, 3, 2)), axis=(1, 2))
    out = [out, out | nudged, out & nudged][rng.integers(3)]
    out ^= rng.random(masks.shape) < rng.choice([0.0, 0.0, 0.01, 0.2])
    out[rng.random(t) < 0.1] = False
    swap = rng.random(t) < 0.1
    out[swap] = blobs(rng, int(swap.sum()), h, w)
    return out


def corner_cases(h, w) -> np.ndarray:
    """Masks touching each border and corner, single pixels, full and empty frames."""
    frames = []
    for rows, cols in [
        (slice(0, 1), slice(0, 1)),
        (slice(h - 1, h), slice(w - 1, w)),
        (slice(0, 1), slice(w - 1, w)),
        (slice(h - 1, h), slice(0, 1)),
        (slice(0, h), slice(0, 1)),
        (slice(0, 1), slice(0, w)),
        (slice(h - 1, h), slice(0, w)),
        (slice(0, h), slice(w - 1, w)),
        (slice(0, h), slice(0, w)),
        (slice(h // 2, h // 2 + 1), slice(w // 2, w // 2 + 1)),
        (slice(0, 0), slice(0, 0)),
    ]:
        frame = np.zeros((h, w), dtype=bool)
        frame[rows, cols] = True
        frames.append(frame)
    return np.stack(frames)


def assert_matches_oracle(gt, pred, void=None, bound_th=0.008):
    """Whole sequences (one crop for all frames) and single frames (each its own crop)."""
    expected_j = oracle.jaccard(gt, pred, void)
    expected_f = oracle.boundary_f(gt, pred, void, bound_th)
    np.testing.assert_array_equal(region_similarity(gt, pred, void), expected_j)
    np.testing.assert_array_equal(boundary_measure(gt, pred, void, bound_th), expected_f)
    for t in range(len(gt)):
        frame_void = None if void is None else void[t]
        assert region_similarity(gt[t], pred[t], frame_void) == expected_j[t]
        assert boundary_measure(gt[t], pred[t], frame_void, bound_th) == expected_f[t], t


SHAPES = [(1, 1), (1, 9), (7, 1), (2, 2), (5, 8), (9, 63), (12, 64), (13, 65), (31, 127), (40, 200)]


@pytest.mark.parametrize("shape", SHAPES)
def test_random_blobs_match_oracle(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(4):
        gt = blobs(rng, 6, *shape)
        pred = perturb(rng, gt)
        for bound_th in (0.008, 0.05, 1, 2, 3, 5.0, 2.5, 3.7):
            assert_matches_oracle(gt, pred, bound_th=bound_th)


@pytest.mark.parametrize("shape", SHAPES)
def test_border_and_corner_masks_match_oracle(shape):
    corners = corner_cases(*shape)
    pairs = np.array([(a, b) for a in range(len(corners)) for b in range(len(corners))])
    gt, pred = corners[pairs[:, 0]], corners[pairs[:, 1]]
    for bound_th in (0.008, 1, 4, 1.5):
        assert_matches_oracle(gt, pred, bound_th=bound_th)


def test_radius_past_one_word_matches_oracle():
    """Radii of 64 px or more move bits by whole words as well."""
    rng = np.random.default_rng(7)
    gt = blobs(rng, 4, 90, 300)
    pred = perturb(rng, gt)
    for bound_th in (63, 64, 70, 129.5):
        assert_matches_oracle(gt, pred, bound_th=bound_th)


def test_sparse_noise_and_tiny_objects_match_oracle():
    rng = np.random.default_rng(3)
    gt = rng.random((8, 48, 130)) < 0.002
    pred = rng.random((8, 48, 130)) < 0.002
    for bound_th in (0.008, 1, 6):
        assert_matches_oracle(gt, pred, bound_th=bound_th)
        assert_matches_oracle(gt, gt | pred, bound_th=bound_th)


def test_void_and_dtypes_match_oracle():
    rng = np.random.default_rng(11)
    gt = blobs(rng, 5, 33, 70)
    pred = perturb(rng, gt)
    void = blobs(rng, 5, 33, 70)
    assert_matches_oracle(gt, pred, void)
    scaled = (gt * 255).astype(np.uint8), (pred * 7).astype(np.int32)
    np.testing.assert_array_equal(boundary_measure(*scaled), boundary_measure(gt, pred))
    np.testing.assert_array_equal(region_similarity(*scaled), region_similarity(gt, pred))
    as_float = gt.astype(np.float32), pred.astype(np.float64)
    np.testing.assert_array_equal(boundary_measure(*as_float), boundary_measure(gt, pred))


def test_chunks_of_frames_match_oracle(monkeypatch):
    """Frames processed in several chunks, each with its own crop."""
    monkeypatch.setattr(davis, "_CHUNK_PIXELS", 3 * 40 * 90)
    rng = np.random.default_rng(5)
    gt = blobs(rng, 17, 40, 90)
    gt[5:9] = False  # an all-empty chunk
    pred = perturb(rng, gt)
    assert_matches_oracle(gt, pred)


def test_score_expression_matches_oracle_statistics():
    rng = np.random.default_rng(2)
    gt = blobs(rng, 23, 36, 64)
    pred = perturb(rng, gt)
    scores, expected = davis.score_expression(gt, pred), oracle.score_sequence(gt, pred)
    for key, value in expected.items():
        np.testing.assert_array_equal(scores[key], value, err_msg=key)
    assert object_statistics(scores["F"])["decay"] == expected["F_decay"]
