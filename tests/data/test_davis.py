"""Ref-DAVIS17: reading the release layout, conversion to Ref-YouTube-VOS, demo writer."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from rvos.config import Params, parse
from rvos.data import davis
from rvos.data.demo import PALETTE
from rvos.data.demo_davis import write_davis
from rvos.data.index import Expression, load_index
from rvos.errors import ConfigError, DataError, UnsafePathError
from rvos.eval.refdavis import N_VARIANTS, evaluate_refdavis, write_variant

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

H, W = 6, 8
FRAMES = ("00000", "00001", "00002")
# Hand-written text files (FORMATS.md §2), as bytes in their release encodings. Lines are out of
# id order, the train sequence is misspelt, object 10 sorts after object 2 only numerically,
# annotator 2 is latin-1 (0xE9 = é), annotator 1 UTF-8 (é = C3 A9), and the annotator-2
# full-video file lacks blackswan's object 2, so the zip cuts that object everywhere.
TEXTS = {
    "Davis17_annot1.txt": b'blackswan 2 "the small duck"\n'
    b'clasic-car 10 "the person"\n'
    b'blackswan 1 "a black swan, tr\xc3\xa8s \xc3\xa9l\xc3\xa9gant"\n'
    b'clasic-car 2 "the red car"\n',
    "Davis17_annot1_full_video.txt": b'clasic-car 2 "the car driving away"\n'
    b'clasic-car 10 "the person  walking"\n'
    b'blackswan 1 "the swan swimming"\n'
    b'blackswan 2 "the duck diving"\n',
    "Davis17_annot2.txt": b'clasic-car 2 "red car"\n'
    b'clasic-car 10 "man in a b\xe9ret"\n'
    b'blackswan 1 "the swan on the lake"\n'
    b'blackswan 2 "duck"\n',
    "Davis17_annot2_full_video.txt": b'clasic-car 10 "person crossing"\r\n'
    b'clasic-car 2 "car going left"\r\n'
    b'blackswan 1 "swan gliding on the lake"\r\n',
}
SEMANTICS = {
    "classic-car": {"2": "car", "10": "person"},
    "blackswan": {"1": "swan", "2": "duck", "3": "rock"},
}


def _labels(objects: list[int], t: int) -> np.ndarray:
    """A (H, W) label map: object i fills column block i (shifted by t), void between blocks."""
    labels = np.zeros((H, W), np.uint8)
    for i, obj in enumerate(objects):
        labels[1:5, 2 * i + t % 2 : 2 * i + t % 2 + 2] = obj
    labels[0, 0] = 255
    return labels


def _write_png(path: Path, labels: np.ndarray) -> None:
    image = Image.fromarray(labels)
    image.putpalette(PALETTE)
    image.save(path)


def build_tiny(root: Path) -> Path:
    """Two sequences written by hand: classic-car (train, objects 2 and 10), blackswan (val)."""
    dav = root / "DAVIS"
    for seq, objects in (("classic-car", [2, 10]), ("blackswan", [1, 2, 3])):
        frames = dav / "JPEGImages" / "480p" / seq
        masks = dav / "Annotations_unsupervised" / "480p" / seq
        frames.mkdir(parents=True)
        masks.mkdir(parents=True)
        for t, name in enumerate(FRAMES):
            Image.new("RGB", (W, H), (40 * t, 90, 200)).save(frames / f"{name}.jpg")
            _write_png(masks / f"{name}.png", _labels(objects, t))
    (dav / "ImageSets" / "2017").mkdir(parents=True)
    (dav / "ImageSets" / "2017" / "train.txt").write_text("classic-car\n")
    (dav / "ImageSets" / "2017" / "val.txt").write_text("blackswan\n\n")
    (dav / "davis_semantics.json").write_text(json.dumps(SEMANTICS))
    (root / "davis_text_annotations").mkdir()
    for name, data in TEXTS.items():
        (root / "davis_text_annotations" / name).write_bytes(data)
    return root


@pytest.fixture
def tiny(tmp_path) -> Path:
    return build_tiny(tmp_path / "ref-davis")


def _snapshot(root: Path) -> dict[str, tuple]:
    return {
        p.relative_to(root).as_posix(): (
            p.stat().st_mode,
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None,
        )
        for p in sorted(root.rglob("*"))
    }


def _load(path: Path):
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------ conversion


def test_conversion_ids_zip_cut_and_encodings(tiny, tmp_path):
    out = tmp_path / "prepared"
    report = davis.convert_davis(tiny, out)
    train = _load(out / "meta_expressions/train/meta_expressions.json")
    assert train == {
        "videos": {
            "classic-car": {
                "expressions": {
                    "0": {"exp": "the red car", "obj_id": "2"},
                    "1": {"exp": "the car driving away", "obj_id": "2"},
                    "2": {"exp": "red car", "obj_id": "2"},
                    "3": {"exp": "car going left", "obj_id": "2"},
                    "4": {"exp": "the person", "obj_id": "10"},
                    "5": {"exp": "the person  walking", "obj_id": "10"},
                    "6": {"exp": "man in a béret", "obj_id": "10"},
                    "7": {"exp": "person crossing", "obj_id": "10"},
                },
                "frames": list(FRAMES),
            }
        }
    }
    valid = _load(out / "meta_expressions/valid/meta_expressions.json")
    assert valid == {
        "videos": {
            "blackswan": {
                "expressions": {
                    "0": {"exp": "a black swan, très élégant", "obj_id": "1"},
                    "1": {"exp": "the swan swimming", "obj_id": "1"},
                    "2": {"exp": "the swan on the lake", "obj_id": "1"},
                    "3": {"exp": "swan gliding on the lake", "obj_id": "1"},
                },
                "frames": list(FRAMES),
            }
        }
    }
    assert report["counts"] == {
        "train": {"sequences": 1, "objects": 2, "expressions": 8, "frames": 3},
        "valid": {"sequences": 1, "objects": 1, "expressions": 4, "frames": 3},
        "files_copied": 12,
    }
    cut = "cut, blackswan has 1 objects in all four text files"
    assert report["skipped_items"] == [
        {"item": "blackswan/2", "reason": f"Davis17_annot1.txt: {cut}"},
        {"item": "blackswan/2", "reason": f"Davis17_annot1_full_video.txt: {cut}"},
        {"item": "blackswan/2", "reason": f"Davis17_annot2.txt: {cut}"},
        {"item": "blackswan/3", "reason": "no expression in any text file"},
    ]
    assert report["skipped"] == 4


def test_conversion_meta_json_and_source(tiny, tmp_path):
    out = tmp_path / "prepared"
    davis.convert_davis(tiny, out)
    assert _load(out / "train/meta.json") == {
        "videos": {
            "classic-car": {"objects": {"2": {"category": "car"}, "10": {"category": "person"}}}
        }
    }
    assert _load(out / "valid/meta.json") == {
        "videos": {
            "blackswan": {
                "objects": {
                    "1": {"category": "swan"},
                    "2": {"category": "duck"},
                    "3": {"category": "rock"},
                }
            }
        }
    }
    assert _load(out / "davis_source.json") == {
        "davis_root": str(tiny / "DAVIS"),
        "image_sets": {"train": "train", "valid": "val"},
    }
    assert sorted(p.name for p in out.iterdir()) == [
        "davis_source.json",
        "meta_expressions",
        "train",
        "train.json",
        "valid",
        "valid.json",
    ]


def test_files_are_copies_and_the_source_is_untouched(tiny, tmp_path):
    before = _snapshot(tiny)
    out = tmp_path / "prepared"
    davis.convert_davis(tiny, out)
    for split, seq in (("train", "classic-car"), ("valid", "blackswan")):
        for kind, source, suffix in (
            ("JPEGImages", "JPEGImages", "jpg"),
            ("Annotations", "Annotations_unsupervised", "png"),
        ):
            names = sorted(p.name for p in (out / split / kind / seq).iterdir())
            assert names == [f"{f}.{suffix}" for f in FRAMES]
            for name in names:
                original = tiny / "DAVIS" / source / "480p" / seq / name
                copy = out / split / kind / seq / name
                assert not copy.samefile(original) and copy.read_bytes() == original.read_bytes()
    assert _snapshot(tiny) == before


def test_prepared_indexes(tiny, tmp_path):
    out = tmp_path / "prepared"
    davis.convert_davis(tiny, out)
    train = load_index(out / "train.json")
    assert (train.dataset, train.split, train.root) == ("davis", "train", out)
    assert (train.frames_dir, train.masks_dir) == ("train/JPEGImages", "train/Annotations")
    video = train.videos["classic-car"]
    assert (video.frames, video.height, video.width) == (FRAMES, H, W)
    assert [(e.exp_id, e.obj_ids) for e in train.expressions] == [
        (str(i), (2,) if i < 4 else (10,)) for i in range(8)
    ]
    assert train.expressions[5] == Expression("classic-car", "5", "the person walking", (10,))
    assert train.expressions[6].text == "man in a béret"
    np.testing.assert_array_equal(
        train.target(train.expressions[4], "00001"), _labels([2, 10], 1) == 10
    )
    valid = load_index(out / "valid.json")
    assert valid.has_masks and valid.masks_dir == "valid/Annotations"
    assert [(e.exp_id, e.obj_ids) for e in valid.expressions] == [(str(a), (1,)) for a in range(4)]
    labels = valid.load_labels("blackswan", "00000")
    np.testing.assert_array_equal(labels, _labels([1, 2, 3], 0))  # void kept as 255


def test_rerun_replaces_the_previous_conversion(tiny, tmp_path):
    out = tmp_path / "prepared"
    first = davis.convert_davis(tiny, out)
    stale = out / "train/JPEGImages/old-sequence"
    stale.mkdir()
    saved = {p: p.read_bytes() for p in sorted(out.rglob("*.json"))}
    assert davis.convert_davis(tiny, out) == first
    assert not stale.exists()
    assert {p: p.read_bytes() for p in sorted(out.rglob("*.json"))} == saved
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_conversion_is_deterministic(tiny, tmp_path):
    davis.convert_davis(tiny, tmp_path / "a")
    davis.convert_davis(tiny, tmp_path / "b")
    for name in (
        "train/meta.json",
        "valid/meta.json",
        "meta_expressions/train/meta_expressions.json",
    ):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    index_a, index_b = _load(tmp_path / "a/valid.json"), _load(tmp_path / "b/valid.json")
    assert {**index_a, "root": None} == {**index_b, "root": None}


def test_expression_variants_match_the_evaluation_protocol():
    assert len(davis.TEXT_FILES) == N_VARIANTS
    assert [name for name, _ in davis.TEXT_FILES] == [
        "Davis17_annot1.txt",
        "Davis17_annot1_full_video.txt",
        "Davis17_annot2.txt",
        "Davis17_annot2_full_video.txt",
    ]


def _params(root: Path, skip_bad: bool) -> Params:
    data = {"ytvos": {"root": "x"}, "refcoco": {"root": "y"}}
    data["davis"] = {"root": str(root), "skip_bad": skip_bad}
    sections = ("base", "demo", "model", "pretrain", "finetune", "evaluate")
    return parse(Params, {"data": data, **{name: {} for name in sections}})


def test_prepare_davis_reads_the_params(tiny, tmp_path):
    (tiny / "DAVIS/ImageSets/2017/val.txt").write_text("blackswan\nghost\n")
    report = davis.prepare_davis(_params(tiny, skip_bad=True), tmp_path / "prepared")
    assert report["skipped_items"][0]["item"] == "ghost"
    with pytest.raises(DataError, match="ghost: no .jpg frames"):
        davis.prepare_davis(_params(tiny, skip_bad=False), tmp_path / "again")


def test_prepare_davis_without_a_root(tmp_path):
    params = _params(tmp_path / "nowhere", skip_bad=False)
    with pytest.raises(ConfigError, match=r"data\.davis\.root = .*directory not found"):
        davis.prepare_davis(params, tmp_path / "prepared")


# ------------------------------------------------------------------------------- bad input


def _fails(root: Path, out: Path, message: str) -> str:
    with pytest.raises(DataError) as err:
        davis.convert_davis(root, out)
    assert message in str(err.value)
    assert not out.exists()  # everything is checked before anything is written
    return str(err.value)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'nosuchseq 1 "a dog"', "sequence 'nosuchseq' is in neither train.txt nor val.txt"),
        (b'blackswan 7 "a dog"', "object 7 of blackswan not in davis_semantics.json [1, 2, 3]"),
        (b"blackswan 1 a dog", "expected: seq obj_id \"expression\", got 'blackswan 1 a dog'"),
        (b'blackswan 1 "a dog', 'expected: seq obj_id "expression"'),
        (b"blackswan 1", 'expected: seq obj_id "expression"'),
        (b'blackswan 1 "  "', "empty expression"),
        (b'blackswan x "a dog"', "object id 'x' is not a positive integer"),
        (b'blackswan 0 "a dog"', "object id '0' is not a positive integer"),
        (b'blackswan 1 "caf\xe9"', "not valid utf-8"),
        (b'blackswan 1 "another swan"', "a second expression for object 1 of blackswan"),
    ],
    ids=[
        "unknown-seq",
        "unknown-obj",
        "no-quotes",
        "open-quote",
        "no-text",
        "empty",
        "id",
        "zero",
        "encoding",
        "duplicate",
    ],
)
def test_bad_text_line(tiny, tmp_path, line, message):
    path = tiny / "davis_text_annotations/Davis17_annot1.txt"
    path.write_bytes(path.read_bytes() + line + b"\n")
    error = _fails(tiny, tmp_path / "prepared", message)
    assert error.startswith(f"{path}, line 5: ")
    assert "skip_bad" in error


def test_bad_text_line_skipped_when_asked(tiny, tmp_path):
    path = tiny / "davis_text_annotations/Davis17_annot2.txt"
    path.write_bytes(path.read_bytes() + b'nosuchseq 1 "a d\xf6g"\n')
    clean = davis.convert_davis(build_tiny(tmp_path / "clean"), tmp_path / "clean-out")
    report = davis.convert_davis(tiny, tmp_path / "prepared", skip_bad=True)
    assert report["skipped_items"][0] == {
        "item": "nosuchseq/1",
        "reason": f"{path}, line 5: sequence 'nosuchseq' is in neither train.txt nor val.txt",
    }
    assert report["skipped_items"][1:] == clean["skipped_items"]
    assert report["counts"] == clean["counts"]


def test_missing_text_file(tiny, tmp_path):
    (tiny / "davis_text_annotations/Davis17_annot2_full_video.txt").unlink()
    _fails(tiny, tmp_path / "prepared", "Davis17_annot2_full_video.txt: file not found")


def test_missing_image_set(tiny, tmp_path):
    (tiny / "DAVIS/ImageSets/2017/val.txt").unlink()
    _fails(tiny, tmp_path / "prepared", "ImageSets/2017/val.txt: file not found")


def test_missing_semantics(tiny, tmp_path):
    (tiny / "DAVIS/davis_semantics.json").unlink()
    _fails(tiny, tmp_path / "prepared", "davis_semantics.json: JSON file not found")


def test_semantics_not_a_mapping(tiny, tmp_path):
    (tiny / "DAVIS/davis_semantics.json").write_text('["car"]')
    _fails(tiny, tmp_path / "prepared", 'davis_semantics.json: expected {seq: {"1": category')


def test_sequence_without_semantics(tiny, tmp_path):
    (tiny / "DAVIS/davis_semantics.json").write_text(json.dumps({"classic-car": {"1": "car"}}))
    _fails(tiny, tmp_path / "prepared", "no entry for sequence 'blackswan'")


def test_malformed_semantics_entry(tiny, tmp_path):
    semantics = {**SEMANTICS, "blackswan": {"one": "swan"}}
    (tiny / "DAVIS/davis_semantics.json").write_text(json.dumps(semantics))
    _fails(tiny, tmp_path / "prepared", 'blackswan: expected {"1": category, ...}')


def test_missing_davis_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    _fails(tmp_path / "empty", tmp_path / "prepared", "DAVIS: directory not found")


def test_missing_mask(tiny, tmp_path):
    (tiny / "DAVIS/Annotations_unsupervised/480p/blackswan/00001.png").unlink()
    _fails(tiny, tmp_path / "prepared", "blackswan: 1 frames have no mask (first: 00001.png)")


def test_missing_mask_skipped_when_asked(tiny, tmp_path):
    (tiny / "DAVIS/Annotations_unsupervised/480p/blackswan/00001.png").unlink()
    report = davis.convert_davis(tiny, tmp_path / "prepared", skip_bad=True)
    assert [item["item"] for item in report["skipped_items"]] == ["blackswan"]
    assert "frames have no mask" in report["skipped_items"][0]["reason"]
    assert report["counts"]["valid"] == {
        "sequences": 0,
        "objects": 0,
        "expressions": 0,
        "frames": 0,
    }
    assert report["counts"]["train"]["expressions"] == 8
    assert load_index(tmp_path / "prepared/valid.json").videos == {}


def test_corrupt_frame(tiny, tmp_path):
    (tiny / "DAVIS/JPEGImages/480p/blackswan/00002.jpg").write_bytes(b"not a jpeg")
    _fails(tiny, tmp_path / "prepared", "blackswan/00002.jpg: not a readable image")


def test_wrong_mask_size(tiny, tmp_path):
    _write_png(
        tiny / "DAVIS/Annotations_unsupervised/480p/blackswan/00001.png", np.zeros((5, 5), np.uint8)
    )
    _fails(tiny, tmp_path / "prepared", "00001.png: mask is 5x5, its frame is 8x6")


def test_mask_not_a_palette_png(tiny, tmp_path):
    Image.new("RGB", (W, H)).save(tiny / "DAVIS/Annotations_unsupervised/480p/blackswan/00000.png")
    _fails(tiny, tmp_path / "prepared", "expected a palette (P) PNG, got mode RGB")


def test_frames_of_different_sizes(tiny, tmp_path):
    Image.new("RGB", (W + 2, H)).save(tiny / "DAVIS/JPEGImages/480p/blackswan/00002.jpg")
    _fails(tiny, tmp_path / "prepared", "00002.jpg: frame is 10x6, the sequence's first is 8x6")


@pytest.mark.parametrize("skip_bad", [False, True])
def test_sequence_name_escaping_the_root_is_never_skipped(tiny, tmp_path, skip_bad):
    (tiny / "DAVIS/ImageSets/2017/val.txt").write_text("blackswan\n../../etc\n")
    with pytest.raises(UnsafePathError, match="val.txt: sequence '../../etc': expected a plain"):
        davis.convert_davis(tiny, tmp_path / "prepared", skip_bad=skip_bad)
    assert not (tmp_path / "prepared").exists()


def test_sequence_listed_in_both_sets(tiny, tmp_path):
    (tiny / "DAVIS/ImageSets/2017/val.txt").write_text("blackswan\nclassic-car\n")
    _fails(tiny, tmp_path / "prepared", "val.txt: sequence 'classic-car' is listed twice")


def test_sequence_without_frames(tiny, tmp_path):
    (tiny / "DAVIS/ImageSets/2017/val.txt").write_text("blackswan\nghost\n")
    _fails(tiny, tmp_path / "prepared", "480p/ghost: no .jpg frames (directory missing or empty)")


@pytest.mark.parametrize("inside", ["DAVIS/converted", "."])
def test_output_overlapping_the_dataset(tiny, inside):
    with pytest.raises(DataError, match="overlaps the dataset root"):
        davis.convert_davis(tiny, tiny / inside)
    assert not (tiny / "DAVIS/converted").exists() and not (tiny / "train").exists()


# ------------------------------------------------------------------------------ demo writer

DEMO = dict(seed=3, train_videos=3, valid_videos=2, frames=4, height=48, width=64)
MOTION_WORDS = {"moving", "going", "heading", "stays", "move", "standing", "round"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("davis") / "demo"
    return root, write_davis(root, progress=False, **DEMO)


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _text_lines(root: Path, name: str, encoding: str) -> list[tuple[str, int, str]]:
    raw = (root / "davis_text_annotations" / name).read_bytes().decode(encoding)
    rows = [line.split(" ", 2) for line in raw.splitlines()]
    return [(seq, int(obj), quoted.strip('"')) for seq, obj, quoted in rows]


def test_demo_is_deterministic(demo, tmp_path):
    root, _ = demo
    write_davis(tmp_path / "again", progress=False, **DEMO)
    assert _hashes(tmp_path / "again") == _hashes(root)
    write_davis(tmp_path / "again", progress=False, **{**DEMO, "seed": 4})
    assert _hashes(tmp_path / "again") != _hashes(root)
    assert [p.name for p in tmp_path.iterdir()] == ["again"]


def test_demo_layout_names_and_encodings(demo):
    root, counts = demo
    dav = root / "DAVIS"
    assert {p.name for p in root.iterdir()} == {"DAVIS", "davis_text_annotations"}
    assert {p.name for p in dav.iterdir()} == {
        "JPEGImages",
        "Annotations_unsupervised",
        "ImageSets",
        "davis_semantics.json",
    }
    train = (dav / "ImageSets/2017/train.txt").read_text().split()
    val = (dav / "ImageSets/2017/val.txt").read_text().split()
    assert {"classic-car", "dogs-scale"} <= set(train) and "motorbike" in val
    assert len(train) == 3 and len(val) == 2 and train == sorted(train)
    assert sorted(p.name for p in (dav / "JPEGImages/480p").iterdir()) == sorted(train + val)
    for seq in train + val:
        names = [f"{t:05d}" for t in range(4)]
        assert sorted(p.stem for p in (dav / "JPEGImages/480p" / seq).iterdir()) == names
        assert (
            sorted(p.stem for p in (dav / "Annotations_unsupervised/480p" / seq).iterdir()) == names
        )
    semantics = _load(dav / "davis_semantics.json")
    assert sorted(semantics) == sorted(train + val)
    text_dir = root / "davis_text_annotations"
    assert sorted(p.name for p in text_dir.iterdir()) == sorted(n for n, _ in davis.TEXT_FILES)
    for name, encoding in davis.TEXT_FILES:
        lines = _text_lines(root, name, encoding)
        seqs = {seq for seq, _, _ in lines}
        assert {"clasic-car", "dog-scale", "motor-bike"} <= seqs
        assert not {"classic-car", "dogs-scale", "motorbike"} & seqs
        assert len(lines) == counts["objects"]
        assert all(text.strip() for _, _, text in lines)
    annot2 = (text_dir / "Davis17_annot2.txt").read_bytes()
    assert b"\xb4" in annot2
    with pytest.raises(UnicodeDecodeError):
        annot2.decode("utf-8")
    assert counts == {
        "sequences": 5,
        "objects": sum(len(v) for v in semantics.values()),
        "expressions": 4 * counts["objects"],
        "frames": 20,
    }


def test_demo_masks_void_on_borders_and_objects_in_first_frame(demo):
    root, _ = demo
    dav = root / "DAVIS"
    semantics = _load(dav / "davis_semantics.json")
    void_seen = False
    for seq, objects in semantics.items():
        assert sorted(int(k) for k in objects) == list(range(1, len(objects) + 1))
        folder = dav / "Annotations_unsupervised/480p" / seq
        for t, png in enumerate(sorted(folder.iterdir())):
            with Image.open(png) as image:
                assert image.mode == "P" and image.size == (64, 48)
                assert image.getpalette()[: 3 * 16] == PALETTE[: 3 * 16]
                labels = np.asarray(image)
            assert set(np.unique(labels)) <= {0, 255, *range(1, len(objects) + 1)}
            void = labels == 255
            near_object = ndimage.binary_dilation((labels > 0) & ~void)
            assert not (void & ~near_object).any()
            void_seen |= bool(void.any())
            if t == 0:
                assert set(np.unique(labels)) - {0, 255} == set(range(1, len(objects) + 1))
    assert void_seen


def test_demo_first_frame_expressions_do_not_describe_motion(demo):
    root, _ = demo
    for name in ("Davis17_annot1.txt", "Davis17_annot2.txt"):
        encoding = dict(davis.TEXT_FILES)[name]
        for _, _, text in _text_lines(root, name, encoding):
            assert not MOTION_WORDS & set(text.lower().replace(",", " ").split()), text
    full = [t for name, enc in davis.TEXT_FILES[1::2] for _, _, t in _text_lines(root, name, enc)]
    assert any(MOTION_WORDS & set(text.lower().split()) for text in full)


def test_demo_round_trip_and_official_scoring(demo, tmp_path):
    root, counts = demo
    out = tmp_path / "prepared"
    report = davis.convert_davis(root, out)
    assert report["skipped"] == 0
    totals = {
        key: sum(report["counts"][split][key] for split in davis.SPLITS)
        for key in ("sequences", "objects", "expressions", "frames")
    }
    assert totals == counts
    assert {"classic-car", "dogs-scale"} <= set(load_index(out / "train.json").videos)
    valid = load_index(out / "valid.json")
    assert "motorbike" in valid.videos
    assert any("´" in e.text for e in valid.expressions)
    # Predictions that are each expression's own ground truth score J&F = 1 on the DAVIS tree.
    predictions = tmp_path / "predictions"
    for seq, video in valid.videos.items():
        labels = np.stack([valid.load_labels(seq, f) for f in video.frames])
        expressions = [e for e in valid.expressions if e.video == seq]
        for a in range(N_VARIANTS):
            objects = [e.obj_ids[0] for e in expressions if int(e.exp_id) % N_VARIANTS == a]
            write_variant(predictions, a, seq, [(labels == o).astype(np.float32) for o in objects])
    source = _load(out / "davis_source.json")
    result = evaluate_refdavis(predictions, source["davis_root"], progress=False)
    assert result["J&F-Mean"] == pytest.approx(1.0)
    assert len(result["per_object"]) == N_VARIANTS * report["counts"]["valid"]["objects"]
