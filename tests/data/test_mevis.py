"""MeViS: the reader on hand-built trees, the RLE index, prepare, and the demo writer."""

import hashlib
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import ndimage

from rvos.config import MevisData
from rvos.data import demo_mevis, mevis
from rvos.data import index as index_module
from rvos.data.datasets import ClipDataset
from rvos.data.demo_shapes import COLOURS, SHAPES, Actor, Look
from rvos.data.index import load_index, save_index
from rvos.data.transforms import ClipTransform
from rvos.errors import ConfigError, DataError, UnsafePathError

# pycocotools 2.0.x decode warns under numpy 2; harmless.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

H, W = 6, 8
DEMO = dict(seed=1, train_videos=3, valid_u_videos=1, valid_videos=1, frames=6, height=48, width=64)


# ------------------------------------------------------------------ a hand-built MeViS tree


def _box(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def _rle(mask: np.ndarray | None) -> dict | None:
    """COCO compressed RLE with str counts, as mask_dict.json stores it; None stays null."""
    if mask is None:
        return None
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [H, W], "counts": rle["counts"].decode("ascii")}


# Masks per anno id and listed frame. Video "vida" lists its frames in time order; "vidb"
# lists them reversed, so its mask list runs from the last frame to the first.
MASKS = {
    "11": [_box(0, 0, 2, 3), _box(1, 0, 3, 3), _box(2, 0, 4, 3)],
    "12": [_box(3, 4, 6, 8), None, _box(2, 2, 5, 6)],  # absent in frame 00001
    "13": [_box(0, 6, 1, 8), _box(4, 1, 6, 2)],  # vidb: listed 00001 first, then 00000
}
FRAMES = {"vida": ["00000", "00001", "00002"], "vidb": ["00001", "00000"]}


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _write_frames(split_dir: Path, frames: dict[str, list[str]]) -> None:
    for vid, names in frames.items():
        (split_dir / "JPEGImages" / vid).mkdir(parents=True)
        for name in names:
            Image.new("RGB", (W, H), (90, 90, 90)).save(
                split_dir / "JPEGImages" / vid / f"{name}.jpg"
            )


@pytest.fixture
def tree(tmp_path) -> Path:
    """train (2 videos, an expression with two targets, a null frame), valid without masks."""
    root = tmp_path / "mevis"
    _write_frames(root / "train", FRAMES)
    train = {
        "vida": {
            "expressions": {
                "0": {"exp": "The two  Boxes\tmoving down", "obj_id": [0, 1], "anno_id": [11, 12]},
                "1": {"exp": "the box on the left", "obj_id": [0], "anno_id": ["11"]},
            },
            "frames": FRAMES["vida"],
        },
        "vidb": {
            "expressions": {"0": {"exp": "a small bar", "obj_id": [0], "anno_id": [13]}},
            "frames": FRAMES["vidb"],
        },
    }
    _write_json(root / "train" / "meta_expressions.json", {"videos": train})
    _write_json(
        root / "train" / "mask_dict.json",
        {anno: [_rle(m) for m in masks] for anno, masks in MASKS.items()},
    )
    _write_frames(root / "valid", {"vidc": ["00000", "00001"]})
    valid = {
        "vidc": {
            "expressions": {
                "0": {"exp": "the one that turns"},
                "1": {"exp": "both birds", "obj_id": [3, 4], "anno_id": [90, 91]},
            },
            "frames": ["00000", "00001"],
        }
    }
    _write_json(root / "valid" / "meta_expressions.json", {"videos": valid})
    return root


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _prepared(root: Path, out: Path, split: str = "train"):
    return mevis.save_split(mevis.read_mevis(root, split), out)


def test_hand_tree_union_targets_pixel_by_pixel(tree, tmp_path):
    index = _prepared(tree, tmp_path / "prepared")
    assert index.mask_format == "rle" and index.has_masks
    assert index.frames_dir == "train/JPEGImages" and index.root == tree
    assert index.videos["vidb"].frames == ("00000", "00001")  # sorted, time order
    assert (index.videos["vida"].height, index.videos["vida"].width) == (H, W)
    both, left, bar = index.expressions
    assert both.text == "the two boxes moving down"  # lower-cased, whitespace collapsed
    assert (both.obj_ids, both.anno_ids) == ((0, 1), ("11", "12"))
    assert left.anno_ids == ("11",) and bar.anno_ids == ("13",)
    for t, frame in enumerate(FRAMES["vida"]):
        expected = MASKS["11"][t] | (MASKS["12"][t] if MASKS["12"][t] is not None else False)
        np.testing.assert_array_equal(index.target(both, frame), expected)
        np.testing.assert_array_equal(index.target(left, frame), MASKS["11"][t])
        np.testing.assert_array_equal(index.objects_mask("vida", frame), expected)
    np.testing.assert_array_equal(index.target(both, "00001"), MASKS["11"][1])  # 12 is null
    # vidb's mask list follows its listed frames: position 0 is frame 00001.
    np.testing.assert_array_equal(index.target(bar, "00001"), MASKS["13"][0])
    np.testing.assert_array_equal(index.target(bar, "00000"), MASKS["13"][1])


def test_hand_written_rle_counts_run_down_the_columns(tree, tmp_path):
    """COCO RLE counts run column by column: "06Z1" is 0 off, 6 on, 42 off = column 0 of 6x8."""
    _edit_json(_masks(tree), lambda d: d.update({"13": [{"size": [H, W], "counts": "06Z1"}, None]}))
    index = _prepared(tree, tmp_path / "prepared")
    np.testing.assert_array_equal(index.target(index.expressions[2], "00001"), _box(0, 0, H, 1))
    assert not index.target(index.expressions[2], "00000").any()


def test_hand_tree_per_video_mask_files(tree, tmp_path):
    out = tmp_path / "prepared"
    index = _prepared(tree, out)
    assert index.masks_dir == str(out / "train" / "masks")
    assert sorted(p.name for p in (out / "train" / "masks").iterdir()) == ["vida.json", "vidb.json"]
    vida = json.loads((out / "train" / "masks" / "vida.json").read_text())
    assert set(vida) == {"11", "12"} and vida["12"][1] is None
    vidb = json.loads((out / "train" / "masks" / "vidb.json").read_text())
    assert vidb == {"13": [_rle(MASKS["13"][1]), _rle(MASKS["13"][0])]}  # in index frame order


def test_hand_tree_valid_without_mask_dict(tree, tmp_path):
    split = mevis.read_mevis(tree, "valid")
    assert split.masks is None and split.skipped == []
    index = mevis.save_split(split, tmp_path / "prepared")
    assert not index.has_masks and not (tmp_path / "prepared" / "valid").exists()
    plain, birds = index.expressions
    assert (plain.obj_ids, plain.anno_ids) == ((), ())
    assert (birds.obj_ids, birds.anno_ids) == ((3, 4), ("90", "91"))
    with pytest.raises(DataError, match="this split has no masks"):
        index.target(plain, "00000")


def test_rle_index_round_trip(tree, tmp_path):
    index = _prepared(tree, tmp_path / "prepared")
    saved = json.loads((tmp_path / "prepared" / "train.json").read_text())
    assert saved["mask_format"] == "rle"
    assert [e["anno_ids"] for e in saved["expressions"]] == [["11", "12"], ["11"], ["13"]]
    assert load_index(tmp_path / "prepared" / "train.json") == index


def test_rle_index_has_no_palette_labels(tree, tmp_path):
    index = _prepared(tree, tmp_path / "prepared")
    with pytest.raises(DataError, match="per-video RLE files, not palette PNGs"):
        index.load_labels("vida", "00000")


def test_rle_file_cached_and_reread_when_changed(tree, tmp_path):
    index = _prepared(tree, tmp_path / "prepared")
    expression = index.expressions[1]
    index.target(expression, "00000")
    before = index_module._parse_rle_file.cache_info()
    for frame in FRAMES["vida"]:
        index.target(expression, frame)
    after = index_module._parse_rle_file.cache_info()
    assert after.hits - before.hits == 3 and after.misses == before.misses
    path = index.rle_path("vida")
    _edit_json(path, lambda tracks: tracks.update({"11": [_rle(_box(0, 0, 6, 8))] * 3}))
    assert index.target(expression, "00000").all()


def test_clip_dataset_over_rle_index(tree, tmp_path):
    index = _prepared(tree, tmp_path / "prepared")
    item = ClipDataset(index, num_frames=2, transform=ClipTransform((H, W)))[0]
    assert item["frames"].shape == (2, 3, H, W) and item["masks"].shape == (1, 2, H, W)
    assert item["texts"] == ["the two boxes moving down"] and item["masks"].sum() > 0


# -------------------------------------------------------------------- palette indexes


def test_palette_index_without_new_fields_still_loads(tmp_path):
    """An index JSON written before mask_format and anno_ids existed."""
    labels = np.array([[0, 1, 1, 255], [2, 2, 0, 255]], dtype=np.uint8)
    png = Image.fromarray(labels, mode="P")
    png.putpalette([0, 0, 0] * 256)
    (tmp_path / "train" / "Annotations" / "v").mkdir(parents=True)
    png.save(tmp_path / "train" / "Annotations" / "v" / "00000.png")
    old = {
        "dataset": "ytvos",
        "split": "train",
        "root": str(tmp_path),
        "frames_dir": "train/JPEGImages",
        "masks_dir": "train/Annotations",
        "videos": {"v": {"frames": ["00000"], "height": 2, "width": 4}},
        "expressions": [{"video": "v", "exp_id": "0", "text": "a cat", "obj_ids": [2]}],
    }
    _write_json(tmp_path / "old.json", old)
    index = load_index(tmp_path / "old.json")
    assert index.mask_format == "palette" and index.expressions[0].anno_ids == ()
    np.testing.assert_array_equal(index.target(index.expressions[0], "00000"), labels == 2)
    np.testing.assert_array_equal(
        index.objects_mask("v", "00000"), [[0, 1, 1, 0], [1, 1, 0, 0]]
    )  # 255 is void, not an object
    save_index(index, tmp_path / "again.json")
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["mask_format"] == "palette" and "anno_ids" not in again["expressions"][0]
    assert load_index(tmp_path / "again.json") == index


def test_index_with_unknown_mask_format(tmp_path):
    path = tmp_path / "bad.json"
    raw = {
        "dataset": "mevis",
        "split": "train",
        "root": ".",
        "frames_dir": "train/JPEGImages",
        "masks_dir": None,
        "mask_format": "polygons",
        "videos": {},
        "expressions": [],
    }
    _write_json(path, raw)
    with pytest.raises(DataError, match=r"bad.json: not a valid prepared index .*'polygons'"):
        load_index(path)


# -------------------------------------------------------------------------- bad input


def _meta(root: Path) -> Path:
    return root / "train" / "meta_expressions.json"


def _masks(root: Path) -> Path:
    return root / "train" / "mask_dict.json"


def _set_exp(vid: str, exp_id: str, **fields):
    return lambda root: _edit_json(
        _meta(root), lambda m: m["videos"][vid]["expressions"][exp_id].update(fields)
    )


def _corrupt_jpeg(root: Path) -> None:
    (root / "train" / "JPEGImages" / "vida" / "00000.jpg").write_bytes(b"not a jpeg")


def _rename_video(root: Path) -> None:
    _edit_json(_meta(root), lambda m: m["videos"].update({"../vida": m["videos"].pop("vida")}))


_IMAGES, _META, _MASK_DICT = (
    "train/JPEGImages",
    "train/meta_expressions.json",
    "train/mask_dict.json",
)


def _frames_of(vid: str, frames: list):
    return lambda root: _edit_json(_meta(root), lambda m: m["videos"][vid].update(frames=frames))


# (name, change to the tree, file named, item skipped, reason pattern)
BAD_ITEMS = [
    (
        "missing_frame",
        lambda root: (root / "train" / "JPEGImages" / "vida" / "00002.jpg").unlink(),
        _IMAGES,
        "vida",
        r"1 listed frames missing in .*vida \(first: 00002.jpg\)",
    ),
    ("corrupt_frame", _corrupt_jpeg, _IMAGES, "vida", r".*vida/00000.jpg: not a readable image"),
    (
        "frame_listed_twice",
        _frames_of("vida", ["00000", "00001", "00002", "00000"]),
        _IMAGES,
        "vida",
        "a frame is listed twice",
    ),
    (
        "empty_frames",
        _frames_of("vida", []),
        _IMAGES,
        "vida",
        "expected a non-empty list of frame names",
    ),
    (
        "anno_id_not_in_mask_dict",
        lambda root: _edit_json(_masks(root), lambda d: d.pop("12")),
        _MASK_DICT,
        "vida/0",
        "anno_id '12' not found",
    ),
    (
        "mask_list_length",
        lambda root: _edit_json(_masks(root), lambda d: d["13"].pop()),
        _MASK_DICT,
        "vidb/0",
        "anno_id '13': 1 masks for 2 frames",
    ),
    (
        "rle_size",
        lambda root: _edit_json(_masks(root), lambda d: d["12"][2].update(size=[H, W + 1])),
        _MASK_DICT,
        "vida/0",
        r"anno_id '12', frame 2: RLE size \[6, 9\], frame size \[6, 8\]",
    ),
    (
        "uncompressed_rle",
        lambda root: _edit_json(_masks(root), lambda d: d["13"][0].update(counts=[0, 48])),
        _MASK_DICT,
        "vidb/0",
        "anno_id '13', frame 0: not a compressed RLE or null",
    ),
    ("empty_expression", _set_exp("vida", "1", exp="  \t "), _META, "vida/1", "empty expression"),
    (
        "obj_and_anno_lengths",
        _set_exp("vida", "0", obj_id=[0]),
        _META,
        "vida/0",
        r"obj_id \[0\] and anno_id \[11, 12\] differ in length",
    ),
    (
        "no_anno_id",
        lambda root: _edit_json(
            _meta(root), lambda m: m["videos"]["vidb"]["expressions"]["0"].pop("anno_id")
        ),
        _META,
        "vidb/0",
        "no anno_id although the split has mask_dict.json",
    ),
    (
        "empty_anno_id",
        _set_exp("vidb", "0", obj_id=[], anno_id=[]),
        _META,
        "vidb/0",
        r"anno_id is empty \(no target object\)",
    ),
    (
        "obj_id_not_integer",
        _set_exp("vidb", "0", obj_id=["zero"]),
        _META,
        "vidb/0",
        r"obj_id \['zero'\]: expected integers",
    ),
    (
        "anno_id_not_a_list",
        _set_exp("vidb", "0", anno_id=13),
        _META,
        "vidb/0",
        "anno_id 13: expected a list",
    ),
]
_CASES = pytest.mark.parametrize(
    ("change", "source", "item", "reason"),
    [c[1:] for c in BAD_ITEMS],
    ids=[c[0] for c in BAD_ITEMS],
)


@_CASES
def test_bad_item_is_an_error_naming_the_file(tree, change, source, item, reason):
    change(tree)
    message = re.escape(f"{source}: {item}: ") + reason + r".*\(set data.mevis.skip_bad: true"
    with pytest.raises(DataError, match=message):
        mevis.read_mevis(tree, "train")


@_CASES
def test_bad_item_is_skipped_with_its_reason(tree, change, source, item, reason):
    change(tree)
    split = mevis.read_mevis(tree, "train", skip_bad=True)
    assert [s["item"] for s in split.skipped] == [item]
    assert re.search(reason, split.skipped[0]["reason"])
    assert split.skipped[0]["reason"].endswith(f"({Path(source).name})")
    kept = {f"{e.video}/{e.exp_id}" for e in split.index.expressions}
    assert item not in kept and item not in split.index.videos
    assert kept  # the other items survive


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _frames_of("vida", ["00000", "../../secret"]),
            r"videos\['vida'\].frames '../../secret': expected a plain file or folder name",
        ),
        (_rename_video, "video id '../vida': expected a plain file or folder name"),
    ],
    ids=["frame", "video"],
)
@pytest.mark.parametrize("skip_bad", [False, True])
def test_names_escaping_the_root_are_never_skipped(tree, change, message, skip_bad):
    change(tree)
    with pytest.raises(UnsafePathError, match=r"train/meta_expressions.json: " + message):
        mevis.read_mevis(tree, "train", skip_bad=skip_bad)


def test_missing_meta_expressions(tree):
    _meta(tree).unlink()
    with pytest.raises(DataError, match=r"train/meta_expressions.json: JSON file not found"):
        mevis.read_mevis(tree, "train")


def test_missing_mask_dict_in_train(tree):
    _masks(tree).unlink()
    with pytest.raises(DataError, match=r"train/mask_dict.json: JSON file not found"):
        mevis.read_mevis(tree, "train")


def test_malformed_meta_expressions(tree):
    _meta(tree).write_text('{"videos": {')
    with pytest.raises(DataError, match="meta_expressions.json: not valid JSON"):
        mevis.read_mevis(tree, "train")


def test_meta_expressions_without_videos(tree):
    _write_json(_meta(tree), {"vida": {}})
    with pytest.raises(DataError, match=r"meta_expressions.json: expected \{'videos'"):
        mevis.read_mevis(tree, "train")


def test_video_without_frames_key(tree):
    _edit_json(_meta(tree), lambda m: m["videos"]["vidb"].pop("frames"))
    with pytest.raises(DataError, match=r"video 'vidb': missing key 'frames'"):
        mevis.read_mevis(tree, "train", skip_bad=True)


def test_mask_dict_not_a_mapping(tree):
    _write_json(_masks(tree), [1, 2])
    with pytest.raises(DataError, match=r"mask_dict.json: expected \{anno_id"):
        mevis.read_mevis(tree, "train")


def test_unknown_split(tree):
    with pytest.raises(DataError, match=r"split 'test': expected one of"):
        mevis.read_mevis(tree, "test")


def test_missing_per_video_mask_file(tree, tmp_path):
    index = _prepared(tree, tmp_path / "prepared")
    index.rle_path("vida").unlink()
    with pytest.raises(DataError, match=r"vida.json: per-video mask file not found"):
        index.target(index.expressions[0], "00000")


# ---------------------------------------------------------------------------- prepare


def _params(root: Path, skip_bad: bool = False) -> SimpleNamespace:
    return SimpleNamespace(data=SimpleNamespace(mevis=MevisData(str(root), skip_bad)))


def test_prepare_hand_tree_report(tree, tmp_path):
    report = mevis.prepare_mevis(_params(tree), tmp_path / "out")
    assert report == {
        "counts": {
            "train": {
                "videos": 2,
                "expressions": 3,
                "frames": 5,
                "objects": 3,
                "multi_object_expressions": 1,
                "has_masks": True,
            },
            "valid": {
                "videos": 1,
                "expressions": 2,
                "frames": 2,
                "objects": 2,
                "multi_object_expressions": 1,
                "has_masks": False,
            },
        },
        "skipped": 0,
        "skipped_items": [],
    }
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"train.json", "train", "valid.json"}


def test_prepare_counts_skips_per_split(tree, tmp_path):
    _set_exp("vida", "1", exp="")(tree)
    report = mevis.prepare_mevis(_params(tree, skip_bad=True), tmp_path / "out")
    assert report["skipped"] == 1
    assert report["skipped_items"] == [
        {"item": "vida/1", "reason": "empty expression (meta_expressions.json)", "split": "train"}
    ]
    assert report["counts"]["train"]["expressions"] == 2


def test_prepare_missing_root(tmp_path):
    with pytest.raises(ConfigError, match=r"data.mevis.root = .*: directory not found"):
        mevis.prepare_mevis(_params(tmp_path / "nowhere"), tmp_path / "out")


def test_prepare_root_without_splits(tmp_path):
    with pytest.raises(DataError, match="none of the MeViS splits"):
        mevis.prepare_mevis(_params(tmp_path), tmp_path / "out")


# ----------------------------------------------------------------------- demo writer


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("mevis") / "demo"
    return root, demo_mevis.write_mevis(root, progress=False, **DEMO)


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _load(path: Path):
    return json.loads(path.read_text())


def _decode(rle: dict) -> np.ndarray:
    return mask_utils.decode(rle).astype(bool)


def test_demo_is_deterministic(demo, tmp_path):
    root, _ = demo
    demo_mevis.write_mevis(tmp_path / "again", progress=False, **DEMO)
    assert _hashes(tmp_path / "again") == _hashes(root)
    demo_mevis.write_mevis(tmp_path / "again", progress=False, **{**DEMO, "seed": 2})
    assert _hashes(tmp_path / "again") != _hashes(root)
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no temporary leftovers


def test_demo_layout(demo):
    root, counts = demo
    assert {p.name for p in root.iterdir()} == {
        "train",
        "valid_u",
        "valid",
        "demo_expression_kinds.json",
    }
    files = {"JPEGImages", "meta_expressions.json", "mask_dict.json"}
    assert {p.name for p in (root / "train").iterdir()} == files
    assert {p.name for p in (root / "valid_u").iterdir()} == files
    assert {p.name for p in (root / "valid").iterdir()} == files - {"mask_dict.json"}
    names = [f"{t:05d}" for t in range(DEMO["frames"])]
    expressions, multi = 0, 0
    for split, videos in [("train", 3), ("valid_u", 1), ("valid", 1)]:
        meta = _load(root / split / "meta_expressions.json")
        assert set(meta) == {"videos"} and len(meta["videos"]) == videos
        assert sorted(meta["videos"]) == sorted(
            p.name for p in (root / split / "JPEGImages").iterdir()
        )
        for vid, video in meta["videos"].items():
            assert re.fullmatch(r"[0-9a-f]{10}", vid) and video["frames"] == names
            jpegs = sorted((root / split / "JPEGImages" / vid).iterdir())
            assert [p.name for p in jpegs] == [f"{n}.jpg" for n in names]
            assert Image.open(jpegs[0]).size == (DEMO["width"], DEMO["height"])
            for exp_id, exp in video["expressions"].items():
                assert exp_id.isdecimal() and exp["exp"] == " ".join(exp["exp"].split())
                if split == "valid":
                    assert set(exp) == {"exp"}
                    continue
                assert set(exp) == {"exp", "obj_id", "anno_id"}
                assert len(exp["obj_id"]) == len(exp["anno_id"]) >= 1
                assert all(isinstance(i, int) for i in exp["obj_id"] + exp["anno_id"])
                multi += len(exp["anno_id"]) > 1
            expressions += len(video["expressions"])
    assert counts["videos"] == 5 and counts["frames"] == 5 * DEMO["frames"]
    assert counts["expressions"] == expressions and counts["multi_object_expressions"] >= multi > 0


def test_demo_mask_dict_rles_with_nulls(demo):
    root, counts = demo
    nulls = 0
    for split in ("train", "valid_u"):
        meta = _load(root / split / "meta_expressions.json")["videos"]
        masks = _load(root / split / "mask_dict.json")
        used = {
            str(a) for v in meta.values() for e in v["expressions"].values() for a in e["anno_id"]
        }
        assert used == set(masks)  # every object is referred to
        for track in masks.values():
            assert len(track) == DEMO["frames"]
            for rle in track:
                if rle is None:
                    nulls += 1
                    continue
                assert set(rle) == {"size", "counts"} and isinstance(rle["counts"], str)
                assert rle["size"] == [DEMO["height"], DEMO["width"]] and _decode(rle).any()
            assert any(rle is not None for rle in track)
    assert nulls == counts["absent_masks"] > 0


def _agrees(image: np.ndarray, mask: np.ndarray, others: np.ndarray) -> bool | None:
    """Whether the mask's interior is one colour that a 1-3 pixel ring around it lacks; None
    when the object is too small or too crowded to judge."""
    inner = ndimage.binary_erosion(mask)
    ring = ndimage.binary_dilation(mask, iterations=3) & ~ndimage.binary_dilation(mask)
    ring &= ~ndimage.binary_dilation(others)
    if inner.sum() < 4 or ring.sum() < 4:
        return None
    colour = image[inner].mean(axis=0)

    def share(pixels: np.ndarray) -> float:
        return float((np.linalg.norm(pixels - colour, axis=1) < 40).mean())

    return share(image[inner]) >= 0.9 and share(image[ring]) <= 0.05


def test_demo_masks_match_painted_pixels(demo):
    root, _ = demo
    judged, shifted = [], []
    for split in ("train", "valid_u"):
        meta = _load(root / split / "meta_expressions.json")["videos"]
        masks = _load(root / split / "mask_dict.json")
        for vid, video in meta.items():
            annos = {str(a) for e in video["expressions"].values() for a in e["anno_id"]}
            for t, frame in enumerate(video["frames"]):
                image = np.asarray(Image.open(root / split / "JPEGImages" / vid / f"{frame}.jpg"))
                decoded = {a: _decode(masks[a][t]) for a in annos if masks[a][t] is not None}
                for anno, mask in decoded.items():
                    others = np.zeros_like(mask)
                    for other, other_mask in decoded.items():
                        others |= other_mask if other != anno else False
                    result = _agrees(image.astype(float), mask, others)
                    if result is not None:
                        judged.append(result)
                        moved = _agrees(image.astype(float), np.roll(mask, 2, axis=1), others)
                        shifted.append(bool(moved))
    assert len(judged) > 20 and all(judged)
    assert sum(shifted) <= len(shifted) / 4  # the check does catch a 2-pixel misalignment


def test_demo_expressions_motion_kinds(demo):
    root, _ = demo
    kinds = _load(root / "demo_expression_kinds.json")
    all_kinds = []
    for split in ("train", "valid_u", "valid"):
        meta = _load(root / split / "meta_expressions.json")["videos"]
        assert set(kinds[split]) == set(meta)
        for vid, video in meta.items():
            assert set(kinds[split][vid]) == set(video["expressions"])
            texts = [e["exp"] for e in video["expressions"].values()]
            assert len(set(texts)) == len(texts)
            for exp_id, kind in kinds[split][vid].items():
                all_kinds.append(kind)
                if kind == "motion_only":
                    words = set(texts[int(exp_id)].split())
                    assert not words & (set(COLOURS) | {"small", "large"})
                    assert not words & (set(SHAPES) | {s + "s" for s in SHAPES}) - {"circle"}
                    if split != "valid":  # only valid's expressions list no objects
                        assert len(video["expressions"][exp_id]["obj_id"]) == 1
    assert set(all_kinds) == {"appearance", "motion", "motion_only"}


def test_scene_crowds_differ_only_in_motion():
    crowds = 0
    for seed in range(40):
        scene = demo_mevis.sample_scene(np.random.default_rng([3, seed]), 6, 48, 64, (2, 5))
        by_look: dict[Look, list[tuple]] = {}
        for actor in scene.actors:
            by_look.setdefault(actor.look, []).append((actor.motion, actor.direction))
        for motions in by_look.values():
            assert len(set(motions)) == len(motions)  # motion tells identical objects apart
        crowds += any(len(m) > 1 for m in by_look.values())
    assert 10 < crowds < 35  # most videos, not all


def test_scene_enter_and_leave_texts_match_visibility():
    said_about = {"enters": 0, "leaves": 0}
    for seed in range(40):
        rng = np.random.default_rng([7, seed])
        scene = demo_mevis.sample_scene(rng, 6, 48, 64, (2, 5))
        visible = (scene.ids[:, None] == np.arange(1, len(scene.actors) + 1)[:, None, None]).any(
            axis=(2, 3)
        )  # (T, K)
        assert visible.sum(axis=0).min() * 3 >= 6  # each object in a third of the frames
        for _, text, target in demo_mevis.group_expressions(rng, scene.facts):
            if "entering" in text or "into view" in text:
                assert not visible[0, list(target)].any() and visible[:, list(target)].any()
                said_about["enters"] += 1
            if "leaving" in text or "out of view" in text:
                assert not visible[-1, list(target)].any() and visible[:, list(target)].any()
                said_about["leaves"] += 1
    assert min(said_about.values()) > 0


def test_demo_left_and_right_survive_a_horizontal_flip(demo):
    root, _ = demo
    for split in ("train", "valid_u", "valid"):
        meta = _load(root / split / "meta_expressions.json")["videos"]
        for video in meta.values():
            for exp in video["expressions"].values():
                for word in exp["exp"].split():
                    if "left" in word or "right" in word:
                        assert word in {"left", "right"}


def test_demo_prepared_targets_are_the_mask_dict_unions(demo, tmp_path):
    root, counts = demo
    report = mevis.prepare_mevis(_params(root), tmp_path / "out")
    assert report["skipped"] == 0 and set(report["counts"]) == {"train", "valid_u", "valid"}
    assert sum(c["expressions"] for c in report["counts"].values()) == counts["expressions"]
    index = load_index(tmp_path / "out" / "train.json")
    masks = _load(root / "train" / "mask_dict.json")
    for expression in index.expressions:
        frames = index.videos[expression.video].frames
        for t, frame in enumerate(frames):
            present = [masks[a][t] for a in expression.anno_ids if masks[a][t] is not None]
            expected = np.any([_decode(r) for r in present], axis=0) if present else False
            np.testing.assert_array_equal(index.target(expression, frame), expected)


# -------------------------------------------------------------------- expression logic


def _actor(shape, colour, motion="still", direction=(0, 0), size="large") -> Actor:
    centres = np.zeros((4, 2))
    return Actor(Look(shape, colour, size), 6.0, 0.0, np.zeros(2), centres, motion, direction)


# (actor, in view per frame): heading, still, circle, wave, leaving and entering objects.
SCENE = [
    (_actor("square", "red", "linear", (-1, 0)), [1, 1, 1, 1]),
    (_actor("square", "blue", "linear", (-1, 1)), [1, 1, 1, 1]),
    (_actor("circle", "red", size="small"), [1, 1, 1, 1]),
    (_actor("star", "green", "circle"), [1, 1, 1, 1]),
    (_actor("square", "red", "wave", (1, 0)), [1, 1, 1, 0]),
    (_actor("diamond", "yellow", "linear", (0, -1), size="small"), [0, 1, 1, 1]),
]
COUNTS = {"two": 2, "three": 3, "four": 4, "five": 5}


def _truth(text: str, actor: Actor, seen: list[int]) -> bool:
    """Whether `text` is true of one actor, read from the words alone."""
    words = text.replace("in a circle", "").split()
    for attr, values in [("size", {"small", "large"}), ("colour", set(COLOURS))]:
        said = values & set(words)
        if said and getattr(actor.look, attr) not in said:
            return False
    shapes = {w.removesuffix("s") for w in words} & set(SHAPES)
    if shapes and actor.look.shape not in shapes:
        return False
    checks = [
        ("in a circle" in text, actor.motion == "circle"),
        ("still" in text or "not move" in text, actor.motion == "still"),
        (
            "in motion" in text or "is moving" in text or "are moving" in text,
            actor.motion != "still",
        ),
        ("entering" in text or "into view" in text, not seen[0] and seen[-1]),
        ("leaving" in text or "out of view" in text, seen[0] and not seen[-1]),
        ("wavy" in text, actor.motion == "wave"),
    ]
    for axis, (low, high) in enumerate([("left", "right"), ("up", "down")]):
        for word, sign in ((low, -1), (high, 1)):
            if word in words:
                checks.append(
                    (True, actor.motion in ("linear", "wave") and actor.direction[axis] == sign)
                )
    return all(holds for said, holds in checks if said)


def test_group_expressions_are_true_of_exactly_their_targets():
    facts = [demo_mevis.object_facts(a, np.array(seen, bool)) for a, seen in SCENE]
    kinds, sizes = set(), set()
    for seed in range(30):
        for kind, text, target in demo_mevis.group_expressions(np.random.default_rng(seed), facts):
            expected = {i for i, (actor, seen) in enumerate(SCENE) if _truth(text, actor, seen)}
            assert set(target) == expected, text
            words = text.split()
            number = next((COUNTS[w] for w in words if w in COUNTS), None)
            assert number in (None, len(target)), text
            kinds.add(kind)
            sizes.add(len(target))
    assert kinds == {"appearance", "motion", "motion_only"}
    assert 1 in sizes and max(sizes) >= 3


def test_object_facts_enter_and_leave():
    mover = _actor("star", "red", "linear", (1, 1))
    keys = demo_mevis.object_facts(mover, np.array([0, 1, 1], bool)).motions
    assert keys == {("moving",), ("dir", 1, 1), ("dir", 1, 0), ("dir", 0, 1), ("enters",)}
    keys = demo_mevis.object_facts(mover, np.array([1, 1, 0], bool)).motions
    assert ("leaves",) in keys and ("enters",) not in keys
    assert demo_mevis.object_facts(_actor("star", "red"), np.ones(3, bool)).motions == {("still",)}
