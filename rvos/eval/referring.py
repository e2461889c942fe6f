"""Top-1 IoU metrics shared by A2D/JHMDB-Sentences and RefCOCO (MTTR / ReferFormer style).

Each GT image holds exactly one referred object. The top-1 prediction is the one with the
highest score; on ties the last one listed wins (the official code takes the end of a
stable sort). IoU = (I + 1e-6) / (U + 1e-6) computed in float32, as the official torch
code does, because P@k counts IoU > k and the rounding decides borderline samples.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rvos.errors import DataError

__all__ = [
    "AP_KEYS",
    "THRESHOLDS",
    "coco_map",
    "gt_rle",
    "iou_summary",
    "load_coco",
    "mask_inter_union",
    "top1_by_image",
]

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
AP_KEYS = ("mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")
EPS = np.float32(1e-6)

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet():
    """pycocotools prints progress and tables; route them to the debug log instead."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield
    if buffer.getvalue():
        log.debug("pycocotools:\n%s", buffer.getvalue().rstrip())


def load_coco(gt: str | Path | dict | COCO) -> COCO:
    """A pycocotools COCO object from a path, a loaded dict or an existing COCO."""
    if isinstance(gt, COCO):
        return gt
    with _quiet():
        if isinstance(gt, dict):
            coco = COCO()
            coco.dataset = copy.deepcopy(gt)
            coco.createIndex()
            return coco
        if not Path(gt).is_file():
            raise DataError(f"{gt}: COCO ground-truth file not found")
        return COCO(str(gt))


def _check_single_object(coco: COCO) -> None:
    counts = {img: len(coco.imgToAnns.get(img, [])) for img in coco.imgs}
    wrong = [img for img, n in counts.items() if n != 1]
    if wrong:
        raise DataError(
            f"each GT image must hold exactly one annotation; {len(wrong)} do not, e.g. image "
            f"{wrong[0]} has {counts[wrong[0]]}"
        )


def top1_by_image(coco: COCO, predictions: Iterable[dict]) -> dict:
    """image_id -> its highest-scoring prediction (last listed on ties), for every GT image."""
    _check_single_object(coco)
    best: dict = {}
    for pred in predictions:
        image_id = pred["image_id"]
        if image_id not in coco.imgs:
            raise DataError(f"prediction for image_id {image_id!r}, which the GT does not have")
        if image_id not in best or pred["score"] >= best[image_id]["score"]:
            best[image_id] = pred
    lacking = [img for img in coco.imgs if img not in best]
    if lacking:
        raise DataError(f"{len(lacking)} GT images have no prediction, e.g. image {lacking[0]!r}")
    return best


def gt_rle(coco: COCO, image_id) -> dict:
    """The image's single GT mask as compressed RLE (polygons are rasterized)."""
    return coco.annToRLE(coco.imgToAnns[image_id][0])


def mask_inter_union(gt: dict, pred: dict) -> tuple[int, int]:
    """Pixel counts |G and P|, |G or P| of two compressed RLEs of the same size."""
    if list(gt["size"]) != list(pred["size"]):
        raise DataError(f"prediction mask size {pred['size']} differs from GT {gt['size']}")
    inter = mask_utils.merge([gt, pred], intersect=True)
    union = mask_utils.merge([gt, pred], intersect=False)
    return int(mask_utils.area(inter)), int(mask_utils.area(union))


def iou_summary(inter, union, prefix: str = "") -> dict[str, float]:
    """overall_iou = sum I / sum U, mean_iou and P@k (fraction with IoU > k) from arrays (N,)."""
    inter = np.asarray(inter, dtype=np.float32)
    union = np.asarray(union, dtype=np.float32)
    iou = ((inter + EPS) / (union + EPS)).astype(np.float64)
    out = {
        f"{prefix}overall_iou": float(
            np.sum(inter, dtype=np.float64) / np.sum(union, dtype=np.float64)
        ),
        f"{prefix}mean_iou": float(np.mean(iou)),
    }
    out.update({f"{prefix}P@{k}": float(np.mean(iou > k)) for k in THRESHOLDS})
    return out


def coco_map(coco: COCO, detections: list[dict]) -> dict[str, float]:
    """Class-agnostic COCOeval(iouType='segm', useCats=0): AP_KEYS -> stats[0..5]."""
    with _quiet():
        results = coco.loadRes(copy.deepcopy(detections))
        evaluator = COCOeval(coco, results, iouType="segm")
        evaluator.params.useCats = 0
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {key: float(value) for key, value in zip(AP_KEYS, evaluator.stats[:6], strict=True)}
