"""A2D-Sentences / JHMDB-Sentences metrics (MTTR `metrics.py`, ReferFormer `evaluate_a2d`).

Input: the GT COCO file of FORMATS.md §4 (one annotation per image, category 1) and
detections `{"image_id", "segmentation": RLE, "score", "category_id": 1}`, every query's
mask of every sample scored by its referring probability.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pycocotools.coco import COCO

from rvos.errors import DataError
from rvos.eval.referring import (
    coco_map,
    gt_rle,
    iou_summary,
    load_coco,
    mask_inter_union,
    top1_by_image,
)

__all__ = ["evaluate_a2d"]


def evaluate_a2d(gt: str | Path | dict | COCO, detections: Iterable[dict]) -> dict[str, float]:
    """mAP over all detections plus top-1 IoU metrics.

    Keys: "mAP" (COCO 0.50:0.95), "AP50", "AP75", "AP_small", "AP_medium", "AP_large"
    (COCOeval segm, useCats=0, stats[0..5]); "overall_iou", "mean_iou", "P@0.5".."P@0.9"
    of each image's top-1 mask; "top1_mAP": COCO mAP of the top-1 masks alone.
    """
    coco = load_coco(gt)
    detections = list(detections)
    for i, det in enumerate(detections):
        if not {"image_id", "segmentation", "score"} <= det.keys():
            raise DataError(f"detection {i} lacks image_id, segmentation or score: {sorted(det)}")
    top1 = top1_by_image(coco, detections)
    counts = [mask_inter_union(gt_rle(coco, img), top1[img]["segmentation"]) for img in coco.imgs]
    inter, union = zip(*counts, strict=True)
    return {
        **coco_map(coco, detections),
        **iou_summary(inter, union),
        "top1_mAP": coco_map(coco, [top1[img] for img in coco.imgs])["mAP"],
    }
