"""RefCOCO / RefCOCO+ / RefCOCOg referring metrics (ReferFormer `engine.evaluate`, MDETR).

Input: a GT COCO file with one image entry and one annotation per sentence
(`instances_<ds>_<split>.json`, FORMATS.md §6) and predictions
`{"image_id", "score", "bbox": [x1, y1, x2, y2] absolute pixels, "segmentation": RLE}`
(the mask is optional). Box IoU and GIoU follow the official float32 torch arithmetic,
1e-6 terms included.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from rvos.errors import DataError
from rvos.eval.referring import gt_rle, iou_summary, load_coco, mask_inter_union, top1_by_image

__all__ = ["box_iou", "evaluate_refcoco", "generalized_box_iou"]

GIOU_RANKS = (1, 5, 10)
EPS = np.float32(1e-6)


def _boxes(boxes) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if (boxes[:, 2:] < boxes[:, :2]).any():
        raise DataError(f"boxes must be [x1, y1, x2, y2] with x2 >= x1, y2 >= y1: {boxes.tolist()}")
    return boxes


def box_iou(pred, gt) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(IoU, intersection, union) of xyxy boxes pred (N, 4) vs one gt (4,), float32 (N,)."""
    pred, gt = _boxes(pred), _boxes(gt)[0]
    area_pred = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    area_gt = (gt[2] - gt[0]) * (gt[3] - gt[1])
    wh = np.clip(np.minimum(pred[:, 2:], gt[2:]) - np.maximum(pred[:, :2], gt[:2]), 0, None)
    inter = wh[:, 0] * wh[:, 1]
    union = area_pred + area_gt - inter
    return (inter + EPS) / (union + EPS), inter, union


def generalized_box_iou(pred, gt) -> np.ndarray:
    """GIoU (N,) of xyxy boxes pred (N, 4) vs one gt (4,), float32, 1e-6 terms as ReferFormer."""
    iou, _, union = box_iou(pred, gt)
    pred, gt = _boxes(pred), _boxes(gt)[0]
    wh = np.clip(np.maximum(pred[:, 2:], gt[2:]) - np.minimum(pred[:, :2], gt[:2]), 0, None)
    hull = wh[:, 0] * wh[:, 1]
    return iou - ((hull - union) + EPS) / (hull + EPS)


def _gt_xyxy(coco: COCO, image_id) -> list[float]:
    x, y, w, h = coco.imgToAnns[image_id][0]["bbox"]
    return [x, y, x + w, y + h]


def evaluate_refcoco(gt: str | Path | dict | COCO, predictions: Iterable[dict]) -> dict[str, float]:
    """Top-1 mask and box metrics per sentence, plus MDETR-style GIoU hit rates.

    Keys: "segm_overall_iou", "segm_mean_iou", "segm_P@0.5".."segm_P@0.9" (when every
    prediction has a mask); "bbox_overall_iou", "bbox_mean_iou", "bbox_P@0.5".."bbox_P@0.9"
    (IoU > k); "bbox_giou_P@1", "@5", "@10": fraction of sentences whose k best boxes
    (by score, then box, descending) include one with GIoU >= 0.5.
    """
    coco = load_coco(gt)
    predictions = list(predictions)
    top1 = top1_by_image(coco, predictions)
    images = list(coco.imgs)
    boxes = [box_iou(top1[img]["bbox"], _gt_xyxy(coco, img)) for img in images]
    out = iou_summary([b[1][0] for b in boxes], [b[2][0] for b in boxes], prefix="bbox_")
    if all("segmentation" in pred for pred in predictions):
        counts = [mask_inter_union(gt_rle(coco, img), top1[img]["segmentation"]) for img in images]
        inter, union = zip(*counts, strict=True)
        out.update(iou_summary(inter, union, prefix="segm_"))

    ranked: dict = {img: [] for img in images}
    for pred in predictions:
        ranked[pred["image_id"]].append((pred["score"], list(pred["bbox"])))
    hits = np.zeros(len(GIOU_RANKS))
    for img in images:
        order = sorted(ranked[img], reverse=True)
        giou = generalized_box_iou([box for _, box in order], _gt_xyxy(coco, img))
        hits += [giou[:k].max() >= 0.5 for k in GIOU_RANKS]
    rates = hits / len(images)
    out.update({f"bbox_giou_P@{k}": float(r) for k, r in zip(GIOU_RANKS, rates, strict=True)})
    return out
