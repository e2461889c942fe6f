"""J, F and per-object statistics against davis2017-evaluation numbers and hand-computed cases."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from rvos.eval.davis import (
    boundary_map,
    boundary_measure,
    object_statistics,
    region_similarity,
    score_expression,
)

from .conftest import COMMITTED, shared_fixture_dir

TOL = 1e-6


# --- the shared reference case -------------------------------------------------------------


def test_jf_case_every_number(jf_case):
    masks, expected = jf_case
    j_means, f_means = [], []
    for name, seq in expected["sequences"].items():
        gt, pred = masks[f"gt_{name}"], masks[f"pred_{name}"]
        j, f = region_similarity(gt, pred), boundary_measure(gt, pred)
        np.testing.assert_allclose(j, seq["J"], rtol=0, atol=TOL, err_msg=f"J of {name}")
        np.testing.assert_allclose(f, seq["F"], rtol=0, atol=TOL, err_msg=f"F of {name}")
        for metric, values in (("J", j), ("F", f)):
            stats = object_statistics(values)
            for key in ("mean", "recall", "decay"):
                assert stats[key] == pytest.approx(seq[f"{metric}_{key}"], abs=TOL), (name, key)
        j_means.append(seq["J_mean"])
        f_means.append(seq["F_mean"])
        scores = score_expression(gt, pred)
        assert scores["J_mean"] == pytest.approx(seq["J_mean"], abs=TOL)
        assert scores["F_mean"] == pytest.approx(seq["F_mean"], abs=TOL)
    assert np.mean(j_means) == pytest.approx(expected["J_mean"], abs=TOL)
    assert np.mean(f_means) == pytest.approx(expected["F_mean"], abs=TOL)
    assert (np.mean(j_means) + np.mean(f_means)) / 2 == pytest.approx(expected["JF_mean"], abs=TOL)


def test_committed_jf_case_matches_shared():
    shared = shared_fixture_dir()
    if shared is None or not (shared / "jf_case.npz").is_file():
        pytest.skip("no shared fixture folder to compare the committed copy with")
    for name in ("jf_case.npz", "jf_case.json"):
        digest = [hashlib.sha256((d / name).read_bytes()).hexdigest() for d in (COMMITTED, shared)]
        assert digest[0] == digest[1], f"tests/eval/fixtures/{name} differs from {shared / name}"


# --- official numbers on small edge cases (fixtures/davis_cases.*, see fixtures/README.md) ---


@pytest.fixture(scope="module")
def davis_cases():
    expected = json.loads((COMMITTED / "davis_cases.json").read_text())
    with np.load(COMMITTED / "davis_cases.npz") as data:
        arrays = {key: data[key] for key in data.files}
    return arrays, expected


def test_official_edge_cases_j_and_f(davis_cases):
    arrays, expected = davis_cases
    for i, bound_th in enumerate(expected["bound_th"]):
        gt, pred, void = arrays[f"gt_{i:03d}"], arrays[f"pred_{i:03d}"], arrays.get(f"void_{i:03d}")
        j = region_similarity(gt, pred, void)
        f = boundary_measure(gt, pred, void, bound_th=bound_th)
        assert j.shape == f.shape == ()
        assert float(j) == pytest.approx(expected["J"][i], abs=1e-12), f"J case {i}"
        assert float(f) == pytest.approx(expected["F"][i], abs=1e-12), f"F case {i} ({bound_th=})"


def test_official_statistics_including_uint8_bins(davis_cases):
    arrays, expected = davis_cases
    for row in expected["statistics"]:
        stats = object_statistics(arrays[f"frames_{row['n']:04d}"])
        for key in ("mean", "recall", "decay"):
            assert stats[key] == pytest.approx(row[key], abs=1e-12, nan_ok=True), (row["n"], key)


# --- hand-computed cases ----------------------------------------------------------------------


def square(shape, top, left, size):
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


def test_empty_and_one_empty():
    empty = np.zeros((2, 6, 7), dtype=bool)
    full = square((6, 7), 1, 1, 3)[None].repeat(2, axis=0)
    np.testing.assert_array_equal(region_similarity(empty, empty), [1.0, 1.0])
    np.testing.assert_array_equal(boundary_measure(empty, empty), [1.0, 1.0])
    for gt, pred in ((empty, full), (full, empty)):
        np.testing.assert_array_equal(region_similarity(gt, pred), [0.0, 0.0])
        np.testing.assert_array_equal(boundary_measure(gt, pred), [0.0, 0.0])


def test_shifted_square_by_hand():
    # 5x5 square; boundary = the 6x6 ring one pixel up/left (20 pixels); tolerance 1 px (plus).
    gt = square((20, 20), 5, 5, 5)
    one, two = np.roll(gt, 1, axis=1), np.roll(gt, 2, axis=1)
    assert float(region_similarity(gt, one)) == pytest.approx(20 / 30)
    assert float(region_similarity(gt, two)) == pytest.approx(15 / 35)
    # Shift 1: every ring pixel is within 1 px of the other ring. Shift 2: 5 of 6 pixels of
    # the top and of the bottom row match, plus the two side pixels next to those rows on
    # the overlapping side: precision = recall = 12 / 20.
    assert float(boundary_measure(gt, one, bound_th=1)) == 1.0
    assert float(boundary_measure(gt, two, bound_th=1)) == pytest.approx(0.6)


@pytest.mark.parametrize(("offset", "expected_f"), [(8, 1.0), (9, 0.0)])
def test_tolerance_is_8_pixels_at_480p(offset, expected_f):
    # Half-planes: the only boundary is the row above each; right/bottom edges add none.
    gt = np.zeros((480, 854), dtype=bool)
    gt[100:] = True
    pred = np.zeros_like(gt)
    pred[100 + offset :] = True
    assert boundary_map(gt).sum() == 854 and boundary_map(gt)[99].all()
    assert float(boundary_measure(gt, pred)) == expected_f
    assert float(region_similarity(gt, pred)) == pytest.approx((380 - offset) / 380)


def test_void_pixels_leave_both_measures():
    gt = np.array([[1, 1, 0, 0, 0, 0]], dtype=bool)
    pred = np.array([[1, 1, 1, 1, 0, 0]], dtype=bool)
    void = np.array([[0, 0, 0, 1, 0, 0]], dtype=bool)
    assert float(region_similarity(gt, pred)) == 0.5
    assert float(region_similarity(gt, pred, void)) == pytest.approx(2 / 3)
    # One-row frame: boundaries at columns 1 (gt) and 3 (pred), 1 px apart once column 3 is
    # void (pred's boundary moves to column 2), 2 px apart without it.
    assert float(boundary_measure(gt, pred, bound_th=1)) == 0.0
    assert float(boundary_measure(gt, pred, void, bound_th=1)) == 1.0
    assert float(boundary_measure(gt, pred, gt | pred, bound_th=1)) == 1.0  # all void: empty


def points(*yx):
    mask = np.zeros((3, 3), dtype=bool)
    for y, x in yx:
        mask[y, x] = True
    return mask


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        (np.ones((3, 3), bool), points()),  # a full frame has no boundary
        (points((1, 1)), points((0, 0), (0, 1), (1, 0), (1, 1))),
        (points((2, 2)), points((1, 1), (1, 2), (2, 1))),  # bottom-right pixel is never one
        (points((2, 0)), points((1, 0), (2, 0))),  # last row looks only right
        (points((0, 2)), points((0, 1), (0, 2))),  # last column looks only down
        (points((1, 0), (1, 1), (1, 2)), points((0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2))),
    ],
)
def test_boundary_map_rules(mask, expected):
    np.testing.assert_array_equal(boundary_map(mask), expected)


def test_boundary_map_thin_frames():
    np.testing.assert_array_equal(boundary_map(np.array([[1, 1, 0, 1]])), [[0, 1, 1, 0]])
    np.testing.assert_array_equal(boundary_map(np.array([[0], [1], [1]])), [[1], [0], [0]])
    np.testing.assert_array_equal(boundary_map(np.ones((1, 1))), [[0]])


def test_fast_f_equals_full_frame_dilation():
    """The crop and the rectangle decomposition change nothing, whatever the radius."""
    rng = np.random.default_rng(0)
    for radius in (0, 1, 2, 3, 5, 8, 13, 2.5):
        gt = rng.random((40, 50)) > 0.7
        pred = np.roll(gt, 3, axis=0) | (rng.random((40, 50)) > 0.97)
        offsets = np.arange(-radius, radius + 1)
        dx, dy = np.meshgrid(offsets, offsets)
        disk = (dx**2 + dy**2 <= radius**2).astype(np.uint8)
        gt_b, pred_b = boundary_map(gt), boundary_map(pred)
        precision = (pred_b & cv2.dilate(gt_b.astype(np.uint8), disk).astype(bool)).sum()
        recall = (gt_b & cv2.dilate(pred_b.astype(np.uint8), disk).astype(bool)).sum()
        precision, recall = precision / pred_b.sum(), recall / gt_b.sum()
        expected = 2 * precision * recall / (precision + recall)
        bound_th = radius if radius >= 1 else 0.0  # >= 1 is a radius in pixels
        assert float(boundary_measure(gt, pred, bound_th=bound_th)) == pytest.approx(expected)


# --- statistics and the expression score -----------------------------------------------------


def test_object_statistics_by_hand():
    stats = object_statistics([1.0, 1.0, 0.0, 0.0, 0.0])
    assert stats == {"mean": 0.4, "recall": 0.4, "decay": 1.0, "decay_exact": 1.0}
    assert object_statistics([0.5])["recall"] == 0.0  # strictly above 0.5
    with_nan = object_statistics([math.nan, 1.0, 0.0])
    assert with_nan["mean"] == 0.5 and with_nan["recall"] == pytest.approx(1 / 3)


def test_decay_exact_differs_only_past_255_frames():
    x = np.linspace(1.0, 0.0, 300)
    short = object_statistics(x[:200])
    assert short["decay"] == short["decay_exact"]
    long = object_statistics(x)
    # Exact bins: frames 0..75 and 224..299.
    assert long["decay_exact"] == pytest.approx(x[:76].mean() - x[224:].mean())
    assert long["decay"] != pytest.approx(long["decay_exact"])


def test_score_expression_keys_and_values():
    gt = np.stack([square((20, 20), 5, 5, 5), np.zeros((20, 20), bool)])
    pred = np.stack([np.roll(gt[0], 1, axis=1), np.zeros((20, 20), bool)])
    scores = score_expression(gt, pred)
    np.testing.assert_allclose(scores["J"], [20 / 30, 1.0])
    np.testing.assert_allclose(scores["F"], [1.0, 1.0])  # 20x20 -> tolerance 1 px
    assert scores["J_mean"] == pytest.approx((20 / 30 + 1) / 2)
    assert scores["JF_mean"] == pytest.approx((scores["J_mean"] + 1.0) / 2)
    assert {"J_recall", "J_decay", "F_recall", "F_decay"} <= scores.keys()


def test_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        region_similarity(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="void"):
        boundary_measure(np.zeros((2, 3)), np.zeros((2, 3)), void=np.zeros((3, 3)))


def test_fixture_dir_is_found():
    assert (Path(COMMITTED) / "jf_case.npz").is_file()
