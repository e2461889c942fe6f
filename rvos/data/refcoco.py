"""RefCOCO / RefCOCO+ / RefCOCOg read from their release files (FORMATS.md §6).

    <root>/<dataset>/instances.json      COCO-style images, categories, polygon annotations
    <root>/<dataset>/refs(<split_by>).p  Python-2 pickle: a list of ref dicts

`convert` writes the per-sentence COCO-style files that image pretraining and RefCOCO
evaluation read (one image entry and one annotation per sentence). The pickle goes
through a restricted unpickler that refuses every global, so a hostile file cannot run
code: the real refs files hold only lists, dicts, strings and numbers.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

from rvos.data.index import normalize_text
from rvos.data.media import check_pixels
from rvos.data.paths import plain_name
from rvos.errors import DataError
from rvos.io import read_json

SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}
SPLITS = {"unc": ("train", "val", "testA", "testB"), "umd": ("train", "val", "test")}


class _PlainDataUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, path: Path, encoding: str):
        super().__init__(file, encoding=encoding)
        self.path = path

    def find_class(self, module: str, name: str):
        raise DataError(
            f"{self.path}: refuses to load {module}.{name}: a refs pickle holds only plain "
            "lists, dicts, strings and numbers"
        )


def read_refs(path: str | Path) -> list[dict]:
    """Load a refs pickle without executing anything it names."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    try:
        refs = _load_plain(data, path)
    except _CORRUPT_PICKLE as err:
        raise DataError(f"{path}: not a readable pickle ({type(err).__name__}: {err})") from None
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise DataError(f"{path}: expected a list of ref dicts")
    return refs


# What a truncated or corrupt pickle raises; a refused global is a DataError of its own.
_CORRUPT_PICKLE = (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError)


def _load_plain(data: bytes, path: Path) -> object:
    try:
        return _PlainDataUnpickler(io.BytesIO(data), path, "ASCII").load()
    except UnicodeDecodeError:  # Python-2 byte strings that are not ASCII
        return _PlainDataUnpickler(io.BytesIO(data), path, "latin1").load()


def convert(root: str | Path, dataset: str, images_dir: str | Path) -> tuple[dict, list[dict]]:
    """Per-split COCO-style dicts {split: coco} for one dataset, and the skipped refs."""
    if dataset not in SPLIT_BY:
        raise DataError(f"RefCOCO dataset {dataset!r}: expected one of {tuple(SPLIT_BY)}")
    root, images_dir = Path(root), Path(images_dir)
    split_by = SPLIT_BY[dataset]
    instances_path = root / dataset / "instances.json"
    instances = read_json(instances_path)
    try:
        images = {img["id"]: img for img in instances["images"]}
        anns = {ann["id"]: ann for ann in instances["annotations"]}
        categories = instances["categories"]
    except (KeyError, TypeError) as err:
        raise DataError(f"{instances_path}: not COCO-style instances ({err!r})") from None
    on_disk = set(os.listdir(images_dir)) if images_dir.is_dir() else set()
    if not on_disk:
        raise DataError(f"{images_dir}: no images found (expected COCO train2014 images)")

    out = {s: {"images": [], "annotations": [], "categories": categories} for s in SPLITS[split_by]}
    skipped: list[dict] = []
    refs_path = root / dataset / f"refs({split_by}).p"
    for ref in read_refs(refs_path):
        reason = _check_ref(ref, images, anns, on_disk, out, instances_path)
        if reason:
            skipped.append({"item": f"{dataset}/ref {ref.get('ref_id')}", "reason": reason})
            continue
        image, ann, coco = images[ref["image_id"]], anns[ref["ann_id"]], out[ref["split"]]
        for sentence in ref["sentences"]:
            new_id = len(coco["images"]) + 1
            coco["images"].append(
                {
                    "file_name": image["file_name"],
                    "height": image["height"],
                    "width": image["width"],
                    "original_id": image["id"],
                    "id": new_id,
                    "caption": normalize_text(sentence["sent"]),
                    "dataset_name": dataset,
                }
            )
            coco["annotations"].append(
                {
                    "segmentation": ann["segmentation"],
                    "area": ann["area"],
                    "iscrowd": ann.get("iscrowd", 0),
                    "bbox": ann["bbox"],
                    "category_id": ann["category_id"],
                    "image_id": new_id,
                    "id": new_id,
                    "original_id": ann["id"],
                }
            )
    return out, skipped


def _check_ref(
    ref: dict, images: dict, anns: dict, on_disk: set[str], out: dict, instances_path: Path
) -> str:
    """Why a ref is unusable ('' when it is fine); a hostile image entry raises."""
    missing = [k for k in ("ann_id", "image_id", "split", "sentences") if k not in ref]
    if missing:
        return f"missing fields {missing}"
    if ref["split"] not in out:
        return f"unknown split {ref['split']!r}"
    if ref["image_id"] not in images:
        return f"image_id {ref['image_id']} not in instances.json"
    if ref["ann_id"] not in anns:
        return f"ann_id {ref['ann_id']} not in instances.json"
    reason = _check_image(images[ref["image_id"]], on_disk, instances_path)
    if reason:
        return reason
    if not isinstance(anns[ref["ann_id"]].get("segmentation"), list):
        return "annotation has no polygon segmentation"
    sentences = ref["sentences"]
    if not isinstance(sentences, list) or not all(
        isinstance(s, dict) and isinstance(s.get("sent"), str) for s in sentences
    ):
        return "sentences: expected a list of {'sent': text, ...}"
    if not sentences or not all(normalize_text(s["sent"]) for s in sentences):
        return "empty sentence"
    return ""


def _check_image(image: dict, on_disk: set[str], instances_path: Path) -> str:
    """Why an instances.json image entry is unusable ('' when fine); its masks are rasterised
    at its width x height, so an escaping name or an absurd size raises."""
    key = f"images[id={image['id']}]"
    name = plain_name(image.get("file_name"), source=instances_path, key=f"{key}.file_name")
    if name not in on_disk:
        return f"image {name} not found"
    width, height = image.get("width"), image.get("height")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        return f"image {name}: width {width!r} and height {height!r} are not positive integers"
    check_pixels(instances_path, f"{key} ({name})", width, height)
    return ""
