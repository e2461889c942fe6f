"""A2D/JHMDB and RefCOCO metrics against MTTR / ReferFormer numbers and hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from rvos.errors import DataError
from rvos.eval.a2d import evaluate_a2d
from rvos.eval.refcoco import box_iou, evaluate_refcoco, generalized_box_iou
from rvos.eval.referring import iou_summary

from .conftest import COMMITTED


def load(name):
    return json.loads((COMMITTED / name).read_text())


def test_a2d_matches_official():
    case = load("a2d_case.json")
    result = evaluate_a2d(case["gt"], case["detections"])
    assert result.keys() == case["expected"].keys()
    for key, value in case["expected"].items():
        assert result[key] == pytest.approx(value, abs=1e-12), key


def test_refcoco_matches_official():
    case = load("refcoco_case.json")
    result = evaluate_refcoco(case["gt"], case["predictions"])
    assert result.keys() == case["expected"].keys()
    for key, value in case["expected"].items():
        assert result[key] == pytest.approx(value, abs=1e-12), key


def test_iou_rounds_in_float32_like_the_official_code():
    # 70000 / 100000 is 0.7 in float32, which is below 0.7 in float64: not a hit at P@0.7.
    out = iou_summary([7, 70000, 0], [10, 100000, 0])
    assert out["P@0.7"] == pytest.approx(2 / 3)  # 7/10 (+1e-6 terms) and empty/empty count
    assert out["P@0.6"] == 1.0
    assert out["overall_iou"] == pytest.approx(70007 / 100010)
    assert out["mean_iou"] == pytest.approx((0.7 + 0.7 + 1.0) / 3, abs=1e-6)


def rle(mask):
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    encoded["counts"] = encoded["counts"].decode()
    return encoded


def tiny_gt():
    gt = np.zeros((4, 5), bool)
    gt[1:3, 1:4] = True  # 6 pixels
    return {
        "images": [{"id": 1, "height": 4, "width": 5}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": rle(gt),
                "area": 6.0,
                "bbox": [1.0, 1.0, 3.0, 2.0],
                "iscrowd": 0,
            }
        ],
        "categories": [{"id": 1, "name": "object"}],
    }, gt


def test_a2d_top1_by_hand_and_ties_take_the_last():
    coco, gt = tiny_gt()
    half = gt.copy()
    half[:, 3:] = False  # 4 of 6 pixels
    detections = [
        {"image_id": 1, "category_id": 1, "segmentation": rle(gt), "score": 0.8},
        {"image_id": 1, "category_id": 1, "segmentation": rle(half), "score": 0.8},
    ]
    result = evaluate_a2d(coco, detections)
    assert result["mean_iou"] == pytest.approx(4 / 6, abs=1e-6)  # the later of the tie
    assert result["P@0.6"] == 1.0 and result["P@0.7"] == 0.0
    assert result["mAP"] == pytest.approx(1.0)  # the perfect mask ranks first at equal score
    with pytest.raises(DataError, match="no prediction"):
        evaluate_a2d(coco, [])


def test_box_iou_and_giou_by_hand():
    iou, inter, union = box_iou([[0, 0, 2, 2], [4, 4, 5, 5]], [1, 1, 3, 3])
    np.testing.assert_allclose(inter, [1, 0])
    np.testing.assert_allclose(union, [7, 5])
    np.testing.assert_allclose(iou, [1 / 7, 0], atol=1e-6)
    # Hull of [0,0,2,2] and [1,1,3,3] is 9: GIoU = 1/7 - (9 - 7) / 9.
    np.testing.assert_allclose(
        generalized_box_iou([[0, 0, 2, 2]], [1, 1, 3, 3]), [1 / 7 - 2 / 9], atol=1e-6
    )
    with pytest.raises(DataError, match="x2 >= x1"):
        box_iou([[2, 0, 1, 1]], [0, 0, 1, 1])


def test_refcoco_giou_ranks_by_score():
    coco, gt = tiny_gt()
    preds = [
        {"image_id": 1, "bbox": [10, 10, 11, 11], "score": 0.9, "segmentation": rle(~gt)},
        {"image_id": 1, "bbox": [1, 1, 4, 3], "score": 0.5, "segmentation": rle(gt)},
    ]
    result = evaluate_refcoco(coco, preds)
    assert result["bbox_giou_P@1"] == 0.0 and result["bbox_giou_P@5"] == 1.0
    assert result["bbox_P@0.5"] == 0.0 and result["segm_mean_iou"] == pytest.approx(0, abs=1e-6)
