"""Demo datasets: real on-disk formats, determinism, and masks that match the painted pixels."""

import hashlib
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import ndimage

from rvos.data import demo
from rvos.data.demo_shapes import Actor, Look, davis_palette

# pycocotools 2.0.x decode warns under numpy 2; harmless.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

YTVOS = dict(seed=3, train_videos=1, valid_videos=1, test_videos=1, frames=4, height=48, width=64)
REFCOCO = dict(seed=3, images=6, height=48, width=64)
REFER_SETS = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}
SPLITS = {"unc": {"train", "val", "testA", "testB"}, "umd": {"train", "val", "test"}}
KINDS = {"appearance", "motion", "position"}


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def _agreement(image: np.ndarray, mask: np.ndarray, others: np.ndarray) -> tuple | None:
    """(colour gap, share of the mask interior in the object colour, same for a ring outside).

    A mask that matches the painted object has its interior in one colour and no such pixel
    1-3 px outside it; a mask shifted by even 1-2 px breaks this. None when too small to judge.
    """
    inner = ndimage.binary_erosion(mask)
    ring = ndimage.binary_dilation(mask, iterations=3) & ~ndimage.binary_dilation(mask)
    ring &= ~ndimage.binary_dilation(others)
    if inner.sum() < 4 or ring.sum() < 4:
        return None
    image = image.astype(float)
    colour = image[inner].mean(axis=0)
    gap = np.linalg.norm(colour - np.median(image[ring], axis=0))

    def share(pixels: np.ndarray) -> float:
        return float((np.linalg.norm(pixels - colour, axis=1) < gap / 2).mean())

    return gap, share(image[inner]), share(image[ring])


def _agrees(result: tuple) -> bool:
    gap, inside, outside = result
    return gap > 40 and inside >= 0.9 and outside <= 0.02


@pytest.fixture(scope="module")
def ytvos(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("ytvos") / "demo"
    return root, demo.write_ytvos(root, progress=False, **YTVOS)


@pytest.fixture(scope="module")
def refcoco(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("refcoco") / "demo"
    return root, demo.write_refcoco(root, progress=False, **REFCOCO)


def _frame_masks(root: Path, split: str, vid: str, frames: list[str]) -> list[np.ndarray]:
    return [np.asarray(Image.open(root / split / "Annotations" / vid / f"{f}.png")) for f in frames]


# ------------------------------------------------------------------------- Ref-YouTube-VOS


def test_ytvos_is_deterministic(ytvos, tmp_path):
    root, _ = ytvos
    demo.write_ytvos(tmp_path / "again", progress=False, **YTVOS)
    assert _hashes(tmp_path / "again") == _hashes(root)
    demo.write_ytvos(tmp_path / "again", progress=False, **{**YTVOS, "seed": 4})
    assert _hashes(tmp_path / "again") != _hashes(root)
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no temporary leftovers


def test_ytvos_layout_and_json_keys(ytvos):
    root, counts = ytvos
    assert {p.name for p in root.iterdir()} == {
        "train",
        "valid",
        "test",
        "meta_expressions",
        "demo_expression_kinds.json",
    }
    assert {p.name for p in (root / "train").iterdir()} == {
        "JPEGImages",
        "Annotations",
        "meta.json",
    }
    assert {p.name for p in (root / "valid").iterdir()} == {"JPEGImages", "Annotations"}
    assert {p.name for p in (root / "test").iterdir()} == {"JPEGImages"}
    metas = {
        split: _load(root / "meta_expressions" / split / "meta_expressions.json")["videos"]
        for split in ("train", "valid", "test")
    }
    vids = {s: sorted(p.name for p in (root / s / "JPEGImages").iterdir()) for s in metas}
    assert sorted(metas["train"]) == vids["train"]
    assert sorted(metas["test"]) == vids["test"]
    assert sorted(metas["valid"]) == sorted(vids["valid"] + vids["test"])
    names = ["00000", "00005", "00010", "00015"]
    for split, videos in metas.items():
        for vid, video in videos.items():
            assert re.fullmatch(r"[0-9a-f]{10}", vid)
            assert set(video) == {"expressions", "frames"} and video["frames"] == names
            jpeg_dir = root / ("test" if vid in vids["test"] else split) / "JPEGImages" / vid
            jpegs = sorted(p.name for p in jpeg_dir.iterdir())
            assert jpegs == [f"{n}.jpg" for n in names]
            for exp_id, exp in video["expressions"].items():
                assert exp_id.isdecimal() and exp["exp"].strip()
                has_obj = split == "train" or vid in vids["valid"]
                assert set(exp) == ({"exp", "obj_id"} if has_obj else {"exp"})
                assert not has_obj or exp["obj_id"].isdecimal()
    meta = _load(root / "train" / "meta.json")
    assert set(meta) == {"videos"} and sorted(meta["videos"]) == vids["train"]
    for video in meta["videos"].values():
        assert set(video) == {"objects"}
        assert all(set(obj) == {"category", "frames"} for obj in video["objects"].values())
    kinds = _load(root / "demo_expression_kinds.json")
    assert sorted(kinds) == sorted(vids["train"] + vids["valid"])
    for vid, exp_kinds in kinds.items():
        split = "train" if vid in metas["train"] else "valid"
        assert set(exp_kinds) == set(metas[split][vid]["expressions"])
        assert set(exp_kinds.values()) <= KINDS
    all_videos = [v for s in ("train", "valid") for v in metas[s].values()]
    assert counts == {
        "videos": 3,
        "expressions": sum(len(v["expressions"]) for v in all_videos),
        "frames": 12,
        "objects": counts["objects"],
    }
    assert counts["objects"] >= 3


def test_ytvos_masks_are_palette_ids_matching_meta(ytvos):
    root, _ = ytvos
    meta = _load(root / "train" / "meta.json")["videos"]
    palette = davis_palette()
    for vid, video in meta.items():
        frames = [f"{5 * t:05d}" for t in range(4)]
        for f in frames:
            png = Image.open(root / "train" / "Annotations" / vid / f"{f}.png")
            assert png.mode == "P" and png.size == (64, 48)
            assert png.getpalette()[: 3 * 8] == palette[: 3 * 8]
        masks = _frame_masks(root, "train", vid, frames)
        ids = set(np.unique(masks)) - {0}
        assert ids <= {int(k) for k in video["objects"]}
        for obj_id, obj in video["objects"].items():
            assert obj["frames"] == [
                f for f, m in zip(frames, masks, strict=True) if (m == int(obj_id)).any()
            ]


def test_ytvos_expressions_are_unique_and_their_targets_visible(ytvos):
    root, _ = ytvos
    for split in ("train", "valid"):
        videos = _load(root / "meta_expressions" / split / "meta_expressions.json")["videos"]
        for vid, video in videos.items():
            if not (root / split / "Annotations" / vid).exists():
                continue  # a test video listed in the valid json
            masks = _frame_masks(root, split, vid, video["frames"])
            texts = [_normal(e["exp"]) for e in video["expressions"].values()]
            assert len(set(texts)) == len(texts)
            targets = {int(e["obj_id"]) for e in video["expressions"].values()}
            assert targets == set(np.unique(masks)) - {0}  # every object is referred to
            for obj in targets:
                assert any((m == obj).any() for m in masks)


def test_ytvos_masks_match_painted_pixels(ytvos):
    root, _ = ytvos
    judged, shifted = [], []
    for split in ("train", "valid"):
        for vid_dir in (root / split / "Annotations").iterdir():
            for png in sorted(vid_dir.iterdir()):
                ids = np.asarray(Image.open(png))
                jpeg = root / split / "JPEGImages" / vid_dir.name / f"{png.stem}.jpg"
                image = np.asarray(Image.open(jpeg))
                for k in np.unique(ids)[1:]:
                    others = (ids != k) & (ids > 0)
                    result = _agreement(image, ids == k, others)
                    if result is not None:
                        judged.append(_agrees(result))
                        moved = _agreement(image, np.roll(ids == k, 2, axis=1), others)
                        shifted.append(moved is not None and _agrees(moved))
    assert judged and all(judged)
    assert sum(shifted) <= len(shifted) / 4  # the check does catch a 2-pixel misalignment


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(demo, "_write_json", fail)
    with pytest.raises(OSError, match="disk full"):
        demo.write_ytvos(tmp_path / "demo", progress=False, **YTVOS)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_a_foreign_directory(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError):
        demo.write_refcoco(tmp_path / "demo", progress=False, **REFCOCO)
    assert (tmp_path / "demo" / "thesis.tex").read_text() == "precious"


# ------------------------------------------------------------------------------- RefCOCO


def _refs(root: Path, name: str) -> list[dict]:
    with open(root / name / f"refs({REFER_SETS[name]}).p", "rb") as f:
        return pickle.load(f)


def test_refcoco_is_deterministic(refcoco, tmp_path):
    root, _ = refcoco
    demo.write_refcoco(tmp_path / "again", progress=False, **REFCOCO)
    assert _hashes(tmp_path / "again") == _hashes(root)


def test_refcoco_layout_instances_and_refs(refcoco):
    root, counts = refcoco
    assert {p.name for p in root.iterdir()} == {"train2014", *REFER_SETS}
    instances = _load(root / "refcoco" / "instances.json")
    assert set(instances) == {"images", "categories", "annotations"}
    images = {img["id"]: img for img in instances["images"]}
    assert len(images) == counts["images"] == 6
    for img in images.values():
        assert set(img) == {"id", "file_name", "height", "width"}
        assert img["file_name"] == f"COCO_train2014_{img['id']:012d}.jpg"
        assert Image.open(root / "train2014" / img["file_name"]).size == (64, 48)
    assert sorted(p.name for p in (root / "train2014").iterdir()) == sorted(
        img["file_name"] for img in images.values()
    )
    categories = {c["id"]: c for c in instances["categories"]}
    assert all(set(c) == {"id", "name", "supercategory"} for c in categories.values())
    anns = {ann["id"]: ann for ann in instances["annotations"]}
    assert len(anns) == counts["annotations"]
    for ann in anns.values():
        assert set(ann) == {
            "id",
            "image_id",
            "category_id",
            "segmentation",
            "area",
            "bbox",
            "iscrowd",
        }
        assert ann["image_id"] in images and ann["category_id"] in categories
        assert ann["iscrowd"] == 0 and all(len(p) >= 6 for p in ann["segmentation"])
        img = images[ann["image_id"]]
        rle = mask_utils.merge(
            mask_utils.frPyObjects(ann["segmentation"], img["height"], img["width"])
        )
        assert ann["area"] == float(mask_utils.area(rle)) > 0
        assert ann["bbox"] == [float(v) for v in mask_utils.toBbox(rle)]
    total_refs = total_sents = 0
    for name, split_by in REFER_SETS.items():
        assert _load(root / name / "instances.json") == instances
        refs = _refs(root, name)
        assert [r["ref_id"] for r in refs] == list(range(len(refs)))
        sent_ids = [s["sent_id"] for r in refs for s in r["sentences"]]
        assert len(set(sent_ids)) == len(sent_ids)
        for ref in refs:
            assert set(ref) == {
                "ref_id",
                "ann_id",
                "image_id",
                "category_id",
                "split",
                "sent_ids",
                "file_name",
                "sentences",
            }
            ann = anns[ref["ann_id"]]
            assert (ref["image_id"], ref["category_id"]) == (ann["image_id"], ann["category_id"])
            assert ref["split"] in SPLITS[split_by]
            stem = images[ref["image_id"]]["file_name"].removesuffix(".jpg")
            assert re.fullmatch(re.escape(stem) + r"_\d+\.jpg", ref["file_name"])
            assert 1 <= len(ref["sentences"]) <= 3
            assert ref["sent_ids"] == [s["sent_id"] for s in ref["sentences"]]
            for sent in ref["sentences"]:
                assert set(sent) == {"tokens", "raw", "sent", "sent_id"}
                assert (
                    sent["sent"] == _normal(sent["raw"]) and sent["tokens"] == sent["sent"].split()
                )
        for image_id in images:  # expressions are unique within an image
            sents = [s["sent"] for r in refs if r["image_id"] == image_id for s in r["sentences"]]
            assert len(set(sents)) == len(sents)
        splits = {r["image_id"]: r["split"] for r in refs}
        assert all(r["split"] == splits[r["image_id"]] for r in refs)  # one split per image
        total_refs += len(refs)
        total_sents += len(sent_ids)
    assert (counts["refs"], counts["sentences"]) == (total_refs, total_sents)


def test_refcoco_polygons_are_the_painted_regions(refcoco):
    root, _ = refcoco
    instances = _load(root / "refcoco" / "instances.json")
    results = []
    for img in instances["images"]:
        image = np.asarray(Image.open(root / "train2014" / img["file_name"]))
        anns = [a for a in instances["annotations"] if a["image_id"] == img["id"]]
        masks = [
            mask_utils.decode(mask_utils.frPyObjects(a["segmentation"], *image.shape[:2])).any(2)
            for a in anns
        ]
        for k, mask in enumerate(masks):
            others = np.any([m for j, m in enumerate(masks) if j != k], axis=0)
            assert not (mask & others).any()  # still images never overlap
            results.append(_agreement(image, mask, others))
    judged = [r for r in results if r is not None]
    assert len(judged) >= len(results) / 2
    assert all(_agrees(r) for r in judged)


def test_refcoco_expression_styles(refcoco):
    root, _ = refcoco
    words = {
        name: [s["tokens"] for r in _refs(root, name) for s in r["sentences"]]
        for name in REFER_SETS
    }
    location = {"left", "right", "top", "bottom", "above", "below", "leftmost", "rightmost"}
    assert not any(location & set(tokens) for tokens in words["refcoco+"])
    mean_length = {name: np.mean([len(t) for t in tokens]) for name, tokens in words.items()}
    assert mean_length["refcocog"] > mean_length["refcoco"] > mean_length["refcoco+"]


# ---------------------------------------------------------------------- expression logic


def _actor(xs, shape="triangle", colour="red", motion="still", direction=(0, 0)) -> Actor:
    centres = np.stack([np.asarray(xs, float), np.full(len(xs), 24.0)], axis=1)
    return Actor(Look(shape, colour, "large"), 6.0, 0.0, np.zeros(2), centres, motion, direction)


def test_twins_are_told_apart_by_motion_only():
    twins = [_actor([10, 10, 10, 10]), _actor([20, 30, 40, 50], motion="linear", direction=(1, 0))]
    for seed in range(10):
        said = demo.describe(np.random.default_rng(seed), twins, "ytvos")
        assert all(said) and all(kind != "appearance" for obj in said for kind, _ in obj)
        for kind, text in said[1]:
            assert kind == "position" or "right" in text


def test_positions_only_when_true_in_every_frame():
    crossing = [_actor([10, 20, 40, 50]), _actor([50, 40, 20, 10], shape="square", colour="blue")]
    for seed in range(10):
        said = demo.describe(np.random.default_rng(seed), crossing, "ytvos")
        assert not [text for obj in said for kind, text in obj if kind == "position"]


def test_left_and_right_survive_a_horizontal_flip(ytvos, refcoco):
    """A flip swaps the substrings 'left' and 'right'; no other word may contain them."""
    videos = _load(ytvos[0] / "meta_expressions" / "valid" / "meta_expressions.json")["videos"]
    texts = [e["exp"] for video in videos.values() for e in video["expressions"].values()]
    texts += [
        s["raw"] for name in REFER_SETS for r in _refs(refcoco[0], name) for s in r["sentences"]
    ]
    for word in {w for text in texts for w in _normal(text).split()}:
        if "left" in word or "right" in word:
            assert word in {"left", "right", "leftmost", "rightmost"}
