"""MeViS J&F against MeViS tools/eval_mevis.py numbers, from folders and from a zip."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from rvos.errors import DataError
from rvos.eval.mevis import evaluate_mevis, expression_target

from .conftest import COMMITTED


@pytest.fixture(scope="module")
def mevis_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("mevis")
    with np.load(COMMITTED / "mevis_pred.npz") as data:
        for key in data.files:
            path = root / "pred" / (key.replace("__", "/") + ".png")
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(data[key]).save(path)
    meta = json.loads((COMMITTED / "mevis_meta_expressions.json").read_text())
    masks = json.loads((COMMITTED / "mevis_mask_dict.json").read_text())
    return root, meta, masks, json.loads((COMMITTED / "mevis_expected.json").read_text())


def check(result, expected):
    for key in ("J", "F", "J&F"):
        assert result[key] == pytest.approx(expected[key], abs=1e-12), key
    table = result["per_expression"]
    for row in table.itertuples():
        j, f = expected["per_expression"][f"{row.video}_{row.exp_id}"]
        assert (row.J, row.F) == pytest.approx((j, f), abs=1e-12), (row.video, row.exp_id)


def test_matches_official_from_folder(mevis_case, tmp_path):
    root, meta, masks, expected = mevis_case
    result = evaluate_mevis(meta, masks, root / "pred", out_dir=tmp_path, progress=False)
    check(result, expected)
    assert result["per_expression"].query("missing")["video"].unique().tolist() == ["vid3"]
    written = pd.read_csv(tmp_path / "per-expression_results.csv")
    assert len(written) == len(expected["per_expression"])
    assert (tmp_path / "per-video_results.png").read_bytes()[:4] == b"\x89PNG"


def test_matches_official_from_zip(mevis_case, tmp_path):
    root, meta, masks, expected = mevis_case
    archive = shutil.make_archive(str(tmp_path / "sub"), "zip", root / "pred")
    check(evaluate_mevis(meta, masks, archive, progress=False), expected)


def test_target_is_the_union_and_null_is_absent():
    a = np.array([[1, 0, 0], [0, 0, 0]], np.uint8)
    b = np.array([[0, 0, 0], [0, 0, 1]], np.uint8)
    enc = [mask_utils.encode(np.asfortranarray(m)) for m in (a, b)]
    target = expression_target({"1": [enc[0], None], "2": [enc[1], None]}, [1, 2], 2)
    np.testing.assert_array_equal(target[0], a | b)
    assert not target[1].any()
    with pytest.raises(DataError, match="no annotation 3"):
        expression_target({}, [3], 1)


def test_missing_frame_is_named(mevis_case, tmp_path):
    root, meta, masks, _ = mevis_case
    pred = tmp_path / "pred"
    shutil.copytree(root / "pred", pred)
    (pred / "vid0" / "1" / "00002.png").unlink()
    with pytest.raises(DataError, match=r"vid0/1/00002\.png: mask file not found"):
        evaluate_mevis(meta, masks, pred, progress=False)
