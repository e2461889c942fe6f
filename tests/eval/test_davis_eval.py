"""DAVIS-2017 evaluation of a results tree against the official evaluator's numbers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from rvos.errors import DataError
from rvos.eval.davis_eval import (
    GLOBAL_COLUMNS,
    evaluate_davis,
    evaluate_semisupervised,
    evaluate_unsupervised,
)
from rvos.eval.refdavis import write_index_pngs

from .conftest import COMMITTED

TASKS = {"unsupervised": "unsup", "semi-supervised": "semi"}


@pytest.fixture(scope="module")
def davis_tree(tmp_path_factory):
    """The fixture's label maps written as a DAVIS tree plus one results folder per task."""
    root = tmp_path_factory.mktemp("davis")
    expected = json.loads((COMMITTED / "davis_tree.json").read_text())
    with np.load(COMMITTED / "davis_tree.npz") as data:
        arrays = {key: data[key] for key in data.files}
    names = expected["sequences"]  # the official order of val.txt
    (root / "DAVIS/ImageSets/2017").mkdir(parents=True)
    (root / "DAVIS/ImageSets/2017/val.txt").write_text("\n".join(names) + "\n")
    for name in names:
        for folder in ("Annotations", "Annotations_unsupervised"):
            write_index_pngs(root / "DAVIS" / folder / "480p" / name, arrays[f"gt_{name}"])
        for task, key in TASKS.items():
            write_index_pngs(root / task / name, arrays[f"{key}_{name}"])
    return root, expected


@pytest.mark.parametrize("task", list(TASKS))
def test_matches_official_evaluator(davis_tree, task, tmp_path):
    root, expected = davis_tree
    result = evaluate_davis(
        root / "DAVIS", root / task, task=task, out_dir=tmp_path, progress=False
    )
    for key in GLOBAL_COLUMNS:
        assert result.summary[key] == pytest.approx(expected[task][key], abs=1e-12), key
    objects = expected[task]["objects"]
    table = result.per_object
    assert table["Sequence"].tolist() == objects["names"]
    for metric in ("J", "F"):
        for short, long in (("M", "Mean"), ("R", "Recall"), ("D", "Decay")):
            np.testing.assert_allclose(
                table[f"{metric}-{long}"], objects[metric][short], atol=1e-12
            )
    written = pd.read_csv(tmp_path / "global_results-val.csv")
    assert written.columns.tolist() == GLOBAL_COLUMNS
    assert written["J&F-Mean"][0] == pytest.approx(expected[task]["J&F-Mean"], abs=1e-12)
    assert len(pd.read_csv(tmp_path / "per-object_results-val.csv")) == len(objects["names"])
    assert (tmp_path / "per-object_results-val.png").read_bytes()[:4] == b"\x89PNG"


def test_results_from_a_zip_score_the_same(davis_tree, tmp_path):
    root, expected = davis_tree
    archive = shutil.make_archive(str(tmp_path / "res"), "zip", root, "unsupervised")
    result = evaluate_davis(root / "DAVIS", archive, results_prefix="unsupervised", progress=False)
    assert result.summary["J&F-Mean"] == pytest.approx(
        expected["unsupervised"]["J&F-Mean"], abs=1e-12
    )


def test_unsupervised_matching_by_hand():
    # Two GT objects; prediction ids swapped and one extra proposal: the matching undoes it.
    gt = np.zeros((2, 10, 10), np.uint8)
    gt[:, :4, :4], gt[:, 6:, 6:] = 1, 2
    pred = np.zeros_like(gt)
    pred[:, :4, :4], pred[:, 6:, 6:], pred[:, 0, 9] = 2, 1, 3
    j, f, pairs = evaluate_unsupervised(gt, pred, n_objects=2)
    np.testing.assert_array_equal(j, 1.0)
    np.testing.assert_array_equal(f, 1.0)
    assert pairs == [(2, 1), (1, 2)]  # rows follow the prediction id, as the official rows


def test_unsupervised_pads_missing_ids_and_limits_proposals():
    gt = np.zeros((3, 8, 8), np.uint8)
    gt[:, 2:5, 2:5] = 1
    gt[:, 6:, :2] = 2
    pred = np.where(gt == 1, 1, 0).astype(np.uint8)
    j, _, pairs = evaluate_unsupervised(gt, pred, n_objects=2)
    assert sorted(pairs) == [(1, 1), (2, 2)]  # id 2 is an empty padding mask
    np.testing.assert_array_equal(j[[g for g, _ in pairs].index(2)], 0.0)
    with pytest.raises(DataError, match="at most 20"):
        evaluate_unsupervised(gt, np.full_like(gt, 21), n_objects=2)


def test_semisupervised_rejects_unknown_ids():
    gt = np.ones((2, 4, 4), np.uint8)
    with pytest.raises(DataError, match="index 2 but the sequence has 1"):
        evaluate_semisupervised(gt, gt * 2, n_objects=1)


def test_missing_results_name_the_sequence(davis_tree, tmp_path):
    root, _ = davis_tree
    with pytest.raises(DataError, match="results for sequence alpha not found"):
        evaluate_davis(root / "DAVIS", tmp_path, sequences=["alpha"], progress=False)
