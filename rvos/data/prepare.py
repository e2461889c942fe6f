"""The `prepare` stage's work per dataset: validate, index, convert, count.

Each preparer writes its index files into `out`, replaced as a whole only once complete
(rvos.io.atomic_dir: an interrupted run leaves the previous output or none), and returns a report
{"counts": {...}, "skipped": n, "skipped_items": [{"item", "reason"}]} that DVC tracks as
metrics, so a dataset that silently lost samples shows up in `dvc metrics diff`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rvos.config import Params, dataset_root
from rvos.data import a2d, davis, jhmdb, mevis, refcoco, ytvos
from rvos.data.index import save_index
from rvos.io import atomic_dir, write_json, write_text

LAYOUTS = {
    "ytvos": "the Ref-YouTube-VOS directory with train/, valid/, meta_expressions/",
    "refcoco": "the directory holding refcoco/, refcoco+/, refcocog/",
    "davis": davis.LAYOUT,
    "mevis": mevis.LAYOUT,
    "a2d": a2d.LAYOUT,
    "jhmdb": jhmdb.LAYOUT,
}


def check_root(params: Params, dataset: str) -> Path:
    """The dataset's root directory, or a one-line error naming data.<dataset>.root."""
    return dataset_root(params, dataset, LAYOUTS[dataset])


def prepare_ytvos(params: Params, out: Path) -> dict:
    cfg = params.data.ytvos
    root = check_root(params, "ytvos")
    indexes, skipped = {}, []
    for split in ytvos.SPLITS:
        indexes[split], dropped = ytvos.read_ytvos(root, split)
        skipped += [{**item, "split": split} for item in dropped]
    if cfg.holdout_videos:
        indexes["train"], indexes["holdout"] = ytvos.hold_out(
            indexes["train"], cfg.holdout_videos, cfg.holdout_seed
        )
    with atomic_dir(out, marker="train.json") as staging:
        if "holdout" in indexes:
            holdout = "".join(f"{vid}\n" for vid in indexes["holdout"].videos)
            write_text(staging / "holdout.txt", holdout)
        for split, index in indexes.items():
            save_index(index, staging / f"{split}.json")
    counts = {split: index.counts() for split, index in indexes.items()}
    return {"counts": counts, "skipped": len(skipped), "skipped_items": skipped}


def prepare_refcoco(params: Params, out: Path) -> dict:
    cfg = params.data.refcoco
    root = check_root(params, "refcoco")
    images = root / cfg.images
    counts, skipped, files = {}, [], {}
    with atomic_dir(out, marker="index.json") as staging:
        for name in cfg.datasets:
            per_split, dropped = refcoco.convert(root, name, images)
            for split, coco in per_split.items():
                path = staging / f"instances_{name}_{split}.json"
                write_json(path, coco, indent=None)
                files.setdefault(split, []).append(path.name)
                counts[f"{name}_{split}"] = _refcoco_counts(coco)
            skipped += dropped
        write_json(staging / "index.json", {"images": str(images), "files": files})
    return {"counts": counts, "skipped": len(skipped), "skipped_items": skipped}


def _refcoco_counts(coco: dict) -> dict[str, int]:
    return {
        "sentences": len(coco["images"]),
        "images": len({img["original_id"] for img in coco["images"]}),
        "objects": len({ann["original_id"] for ann in coco["annotations"]}),
    }


PREPARERS: dict[str, Callable[[Params, Path], dict]] = {
    "ytvos": prepare_ytvos,
    "refcoco": prepare_refcoco,
    "davis": davis.prepare_davis,
    "mevis": mevis.prepare_mevis,
    "a2d": a2d.prepare_a2d,
    "jhmdb": jhmdb.prepare_jhmdb,
}
