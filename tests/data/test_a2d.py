"""A2D-Sentences: hand-built release files, bad input, the demo writer and the window dataset."""

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from rvos.config import A2dData, load_params
from rvos.data import a2d
from rvos.data.demo_a2d import write_a2d
from rvos.data.frame_samples import (
    GT_FILE,
    FrameWindowDataset,
    decode_mask,
    load_frame_index,
    window,
    write_prepared,
)
from rvos.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ClipTransform
from rvos.errors import DataError
from rvos.eval.a2d import evaluate_a2d

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

REPO = Path(__file__).resolve().parents[2]
H, W = 32, 48  # video size of the hand-built tree
LEVELS = [20, 60, 100, 140, 180, 220]  # grey level of each frame of video "vidA"
DEMO = dict(seed=5, train_videos=2, test_videos=2, frames=8, annotated_frames=3)


# --------------------------------------------------------------------- hand-built release


def _mask(rows: slice, cols: slice, notch: tuple[int, int] | None = None) -> np.ndarray:
    """An (H, W) box mask; the notch makes it asymmetric so a missed transpose shows."""
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[rows, cols] = 1
    if notch is not None:
        mask[notch] = 0
    return mask


MASK_3 = _mask(slice(2, 10), slice(5, 20), notch=(2, 5))
MASK_7 = _mask(slice(12, 30), slice(30, 46))
MASK_3_LATER = _mask(slice(4, 12), slice(8, 22), notch=(11, 21))
MASK_TEST = _mask(slice(0, 5), slice(0, 40))


def write_mp4(path: Path, levels: list[int], height: int = H, width: int = W) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24, (width, height))
    for level in levels:
        writer.write(np.full((height, width, 3), level, dtype=np.uint8))
    writer.release()


def write_h5(path: Path, **datasets) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        for key, value in datasets.items():
            handle.create_dataset(key, data=value)


def _csv(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


@pytest.fixture
def hand(tmp_path) -> Path:
    """vidA (train): frame 2 holds instances 3 and 7, frame 4 only 3; vidB (test): frame 1
    holds instance 0; vidM is missed. Written from FORMATS.md, independent of the demo writer."""
    root = tmp_path / "a2d"
    _csv(
        root / "Release/videoset.csv",
        [
            "vidA,11,0,1.2,240,320,6,2,0",
            "vidB,21,0,0.5,240,320,3,1,1",
            "vidM,31,0,0.5,240,320,3,1,0",
        ],
    )
    write_mp4(root / "Release/clips320H/vidA.mp4", LEVELS)
    write_mp4(root / "Release/clips320H/vidB.mp4", [50, 90, 130])
    write_mp4(root / "Release/clips320H/vidM.mp4", [50, 90, 130])
    notes = root / "text_annotations"
    _csv(
        notes / "a2d_annotation.txt",
        [
            "video_id,instance_id,query",
            "vidA,3,The Man  RUNNING",
            "vidA,1 (copy),the man running",
            'vidA,7,"a dog, barking"',
            "vidA,9,a cat that never appears",
            "vidB,0,the red car",
            "vidM,0,a missed bird",
        ],
    )
    _csv(notes / "a2d_missed_videos.txt", ["vidM"])
    shots = notes / "a2d_annotation_with_instances"
    write_h5(
        shots / "vidA/00002.h5",
        instance=np.array([3, 7], dtype=np.int64),
        reMask=np.stack([MASK_3.T, MASK_7.T]),  # (N, W, H)
        reBBox=np.array([[5, 30], [2, 12], [20, 46], [10, 30]], dtype=np.float64),
        id=np.array([[11.0, 21.0]]),
    )
    write_h5(
        shots / "vidA/00004.h5",
        instance=np.array([3.0]),
        reMask=MASK_3_LATER.T,  # (W, H) when N = 1
        reBBox=np.array([[8.0], [4.0], [22.0], [12.0]]),
    )
    write_h5(
        shots / "vidB/00001.h5",
        instance=np.array([[0]], dtype=np.int32),
        reMask=MASK_TEST.T.astype(bool),
        reBBox=np.array([0, 0, 40, 5], dtype=np.int32),
    )
    write_h5(
        shots / "vidM/00001.h5",
        instance=np.array([0]),
        reMask=MASK_TEST.T,
        reBBox=np.array([0, 0, 40, 5]),
    )
    return root


def test_hand_built_samples_follow_the_reference(hand):
    prepared = a2d.read_a2d(hand)
    train, test = prepared.splits["train"], prepared.splits["test"]
    assert [(s.sample_id, s.frame, s.instance, s.text) for s in train.samples] == [
        ("v_vidA_f_2_i_3", 2, 3, "the man running"),
        ("v_vidA_f_4_i_3", 4, 3, "the man running"),
        ("v_vidA_f_2_i_7", 2, 7, "a dog, barking"),
    ]
    assert [s.sample_id for s in test.samples] == ["v_vidB_f_1_i_0"]
    video = train.videos["vidA"]
    assert (video.source, video.kind, video.frames, video.height, video.width) == (
        "Release/clips320H/vidA.mp4",
        "mp4",
        6,
        H,
        W,
    )
    assert prepared.skipped == [
        {
            "item": "vidM",
            "reason": "listed in text_annotations/a2d_missed_videos.txt",
            "split": "train",
        },
        {"item": "vidA/1 (copy)", "reason": "duplicated annotation row '1 (copy)'"},
        {
            "item": "vidA/9",
            "reason": "instance 9 is in none of the 2 annotated frames",
            "split": "train",
        },
    ]


def test_transposed_masks_are_read_pixel_by_pixel(hand):
    masks = a2d.read_a2d(hand).masks
    expected = {
        ("vidA", "v_vidA_f_2_i_3"): MASK_3,
        ("vidA", "v_vidA_f_2_i_7"): MASK_7,
        ("vidA", "v_vidA_f_4_i_3"): MASK_3_LATER,
        ("vidB", "v_vidB_f_1_i_0"): MASK_TEST,
    }
    for (vid, sid), mask in expected.items():
        np.testing.assert_array_equal(decode_mask(masks[vid][sid].counts, (H, W)), mask)
    assert masks["vidA"]["v_vidA_f_2_i_7"].box == (30.0, 12.0, 46.0, 30.0)
    assert masks["vidB"]["v_vidB_f_1_i_0"].box == (0.0, 0.0, 40.0, 5.0)


def test_frame_annotation_variants(tmp_path):
    """Shapes and dtypes the release may use: (1, N) float ids, (1, W, H) masks, (1, 4) box."""
    path = tmp_path / "00001.h5"
    write_h5(
        path,
        instance=np.array([[2.0]]),
        reMask=MASK_3.T[None].astype(np.float64),
        reBBox=np.array([[5, 2, 20, 10]], dtype=np.uint16),
    )
    annotation = a2d.read_frame_annotation(path)
    assert annotation.instances == (2,)
    np.testing.assert_array_equal(annotation.masks[0], MASK_3.astype(bool))
    np.testing.assert_array_equal(annotation.boxes, [[5, 2, 20, 10]])


def test_prepare_writes_index_masks_and_gt(hand, tmp_path):
    params = load_params(REPO / "params.yaml")
    data = dataclasses.replace(params.data, a2d=A2dData(root=str(hand)))
    report = a2d.prepare_a2d(dataclasses.replace(params, data=data), tmp_path / "out")
    assert report["counts"] == {
        "train": {
            "videos": 1,
            "samples": 3,
            "expressions": 2,
            "annotated_frames": 2,
            "instances": 2,
        },
        "test": {
            "videos": 1,
            "samples": 1,
            "expressions": 1,
            "annotated_frames": 1,
            "instances": 1,
        },
    }
    assert report["skipped"] == 3 == len(report["skipped_items"])
    train = load_frame_index(tmp_path / "out/train.json")
    assert train.masks_dir == tmp_path / "out/masks" and train.root == hand
    np.testing.assert_array_equal(train.target(train.samples[2]), MASK_7)
    gt = json.loads((tmp_path / "out" / GT_FILE).read_text())
    assert gt["categories"] == [{"id": 1, "name": "referred"}]
    assert gt["images"] == [{"id": "v_vidB_f_1_i_0", "height": H, "width": W}]
    (ann,) = gt["annotations"]
    assert ann["id"] == 1 and ann["image_id"] == "v_vidB_f_1_i_0" and ann["category_id"] == 1
    assert ann["bbox"] == [0.0, 0.0, 40.0, 5.0] and ann["area"] == MASK_TEST.sum()
    assert ann["iscrowd"] == 0 and isinstance(ann["segmentation"]["counts"], str)
    np.testing.assert_array_equal(decode_mask(ann["segmentation"]["counts"], (H, W)), MASK_TEST)
    perfect = [{**ann, "score": 0.9} for ann in gt["annotations"]]
    assert evaluate_a2d(gt, perfect)["mAP"] == pytest.approx(1.0)


def test_frames_are_decoded_with_1_based_numbers(hand):
    prepared = a2d.read_a2d(hand)
    index = _index(prepared, hand, "train")
    frames = index.load_frames("vidA", [1, 3, 6, 3])
    means = [np.asarray(f, dtype=float).mean() for f in frames]
    assert means == pytest.approx([LEVELS[0], LEVELS[2], LEVELS[5], LEVELS[2]], abs=6)


def _index(prepared, root, split, out=None):
    out = out or root.parent / "prepared"
    write_prepared(prepared, out)
    return load_frame_index(out / f"{split}.json")


def test_window_is_centred_and_clamped():
    assert window(4, 5, 10) == [2, 3, 4, 5, 6]
    assert window(1, 4, 10) == [1, 1, 1, 2]
    assert window(10, 4, 10) == [8, 9, 10, 10]
    assert window(2, 1, 3) == [2]


def test_window_dataset_item(hand):
    index = _index(a2d.read_a2d(hand), hand, "train")
    dataset = FrameWindowDataset(index, num_frames=4, transform=ClipTransform((H, W)))
    item = dataset[1]  # v_vidA_f_4_i_3: frames 2, 3, 4, 5 with the target on frame 4
    assert item["sample_id"] == "v_vidA_f_4_i_3" and item["texts"] == ["the man running"]
    assert item["frames"].shape == (4, 3, H, W) and item["masks"].shape == (1, 4, H, W)
    assert item["valid"].tolist() == [False, False, True, False]
    np.testing.assert_array_equal(item["masks"][0][2].numpy(), MASK_3_LATER)
    assert item["masks"][0][[0, 1, 3]].sum() == 0
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    pixels = (item["frames"].mean(dim=(2, 3)) * std + mean) * 255
    assert pixels.mean(dim=1).tolist() == pytest.approx([LEVELS[i] for i in (1, 2, 3, 4)], abs=6)


def test_skip_bad_counts_a_bad_video_and_keeps_the_rest(hand):
    (hand / "Release/clips320H/vidB.mp4").unlink()
    prepared = a2d.read_a2d(hand, skip_bad=True)
    assert len(prepared.splits["train"].samples) == 3 and not prepared.splits["test"].samples
    (bad,) = [s for s in prepared.skipped if s["item"] == "vidB"]
    assert "vidB.mp4: video file not found" in bad["reason"] and bad["split"] == "test"


# ---------------------------------------------------------------------------- bad input


def _rewrite(relative: str, lines: list[str]):
    return lambda root: _csv(root / relative, lines)


def _text_rows(*rows: str):
    return _rewrite("text_annotations/a2d_annotation.txt", ["video_id,instance_id,query", *rows])


def _h5(name: str, **datasets):
    def mutate(root):
        path = root / "text_annotations/a2d_annotation_with_instances" / name
        path.unlink(missing_ok=True)
        write_h5(path, **datasets)

    return mutate


def _remove(relative: str):
    def mutate(root):
        path = root / relative
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return mutate


def _garbage(relative: str):
    return lambda root: (root / relative).write_bytes(b"\x00not a real file" * 20)


GOOD_1 = dict(instance=np.array([0]), reMask=MASK_TEST.T, reBBox=np.array([0, 0, 40, 5]))

BAD_INPUT = {
    "videoset missing": (_remove("Release/videoset.csv"), "videoset.csv: file not found"),
    "missed list missing": (
        _remove("text_annotations/a2d_missed_videos.txt"),
        "a2d_missed_videos.txt: file not found",
    ),
    "text file missing": (
        _remove("text_annotations/a2d_annotation.txt"),
        "a2d_annotation.txt: file not found",
    ),
    "videoset column count": (
        _rewrite("Release/videoset.csv", ["vidA,11,0,1.2,240,320,6,2,0", "vidB,1,1"]),
        "videoset.csv: line 2: expected 9 columns, got 3",
    ),
    "videoset subset": (
        _rewrite("Release/videoset.csv", ["vidA,11,0,1.2,240,320,6,2,2"]),
        "line 1: subset '2' is not 0 (train) or 1 (test)",
    ),
    "videoset repeated video": (
        _rewrite("Release/videoset.csv", ["vidA,1,0,1,1,1,1,1,0", "vidA,1,0,1,1,1,1,1,1"]),
        "line 2: video 'vidA' listed twice",
    ),
    "text header": (
        _rewrite("text_annotations/a2d_annotation.txt", ["vid,instance,query", "vidA,3,x"]),
        "line 1: expected the header video_id,instance_id,query",
    ),
    "text field count": (
        _text_rows("vidA,3"),
        "line 2: expected 3 fields (video_id,instance_id,query), got 2",
    ),
    "instance id not an integer": (
        _text_rows("vidA,three,a man"),
        "line 2: instance_id 'three' is not an integer",
    ),
    "empty query": (_text_rows("vidA,3,   "), "a2d_annotation.txt: line 2: empty query"),
    "unknown video": (
        _text_rows("vidZ,3,a man"),
        "line 2: video 'vidZ' is not in Release/videoset.csv",
    ),
    "repeated instance": (
        _text_rows("vidA,3,a man", "vidA,3,another man"),
        "line 3: repeats the instance of line 2",
    ),
    "video missing": (_remove("Release/clips320H/vidA.mp4"), "vidA.mp4: video file not found"),
    "corrupt video": (
        _garbage("Release/clips320H/vidA.mp4"),
        "vidA.mp4: not a readable video",
    ),
    "annotation folder missing": (
        _remove("text_annotations/a2d_annotation_with_instances/vidA"),
        "vidA: directory not found (the annotated frames of vidA)",
    ),
    "no h5 files": (
        lambda root: [
            p.unlink()
            for p in (root / "text_annotations/a2d_annotation_with_instances/vidB").iterdir()
        ],
        "vidB: no .h5 annotation files",
    ),
    "corrupt h5": (
        _garbage("text_annotations/a2d_annotation_with_instances/vidA/00002.h5"),
        "00002.h5: not a readable HDF5 file",
    ),
    "h5 key missing": (
        _h5("vidB/00001.h5", instance=np.array([0]), reBBox=np.array([0, 0, 1, 1])),
        "00001.h5: missing key(s) ['reMask'] (expected instance, reMask, reBBox)",
    ),
    "mask count differs from instances": (
        _h5("vidB/00001.h5", **{**GOOD_1, "reMask": np.stack([MASK_TEST.T] * 2)}),
        "'reMask' has shape (2, 48, 32); expected (W, H) or (1, W, H) for 1 instance(s)",
    ),
    "mask not transposed": (
        _h5("vidB/00001.h5", **{**GOOD_1, "reMask": MASK_TEST}),
        "00001.h5: reMask is 32x48 (width x height) but",
    ),
    "mask size differs from video": (
        _h5("vidB/00001.h5", **{**GOOD_1, "reMask": np.zeros((40, 30), np.uint8)}),
        "00001.h5: reMask is 40x30 (width x height) but",
    ),
    "mask values": (
        _h5("vidB/00001.h5", **{**GOOD_1, "reMask": MASK_TEST.T * 255}),
        "'reMask' holds values [0, 255]; expected 0/1",
    ),
    "instance not integral": (
        _h5("vidB/00001.h5", **{**GOOD_1, "instance": np.array([0.5])}),
        "'instance' holds non-integer values [0.5]",
    ),
    "instance empty": (
        _h5("vidB/00001.h5", **{**GOOD_1, "instance": np.zeros(0)}),
        "'instance' has shape (0,)",
    ),
    "instance repeated": (
        _h5(
            "vidA/00002.h5",
            instance=np.array([3, 3]),
            reMask=np.stack([MASK_3.T] * 2),
            reBBox=np.zeros((4, 2)),
        ),
        "'instance' repeats an id: [3, 3]",
    ),
    "box shape": (
        _h5(
            "vidA/00002.h5",
            instance=np.array([3, 7]),
            reMask=np.stack([MASK_3.T, MASK_7.T]),
            reBBox=np.zeros((2, 4)),
        ),
        "'reBBox' has shape (2, 4) and dtype float64; expected (4, 2)",
    ),
    "frame past the video end": (
        lambda root: shutil.copy(
            root / "text_annotations/a2d_annotation_with_instances/vidB/00001.h5",
            root / "text_annotations/a2d_annotation_with_instances/vidB/00004.h5",
        ),
        "00004.h5: frame 4 is outside",
    ),
    "frame 0": (_h5("vidB/00000.h5", **GOOD_1), "00000.h5: frame 0 is outside"),
    "h5 name": (_h5("vidB/first.h5", **GOOD_1), "first.h5: expected a frame number as file name"),
    "video id escapes the root": (
        lambda root: (
            _rewrite("Release/videoset.csv", ["../vidA,1,0,1,1,1,1,1,0"])(root),
            _text_rows("../vidA,3,a man")(root),
        ),
        "a2d_annotation.txt: line 2: video_id '../vidA': expected a plain file or folder name",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUT, ids=list(BAD_INPUT))
def test_bad_input_is_a_data_error_naming_the_problem(hand, case):
    mutate, message = BAD_INPUT[case]
    mutate(hand)
    with pytest.raises(DataError) as err:
        a2d.read_a2d(hand)
    assert message in str(err.value)


def test_prepared_index_errors(tmp_path):
    with pytest.raises(DataError, match="train.json: prepared index not found"):
        load_frame_index(tmp_path / "train.json")
    (tmp_path / "train.json").write_text('{"dataset": "a2d"}')
    with pytest.raises(DataError, match="train.json: not a valid prepared frame index"):
        load_frame_index(tmp_path / "train.json")


def test_missing_mask_file_names_it(hand, tmp_path):
    index = _index(a2d.read_a2d(hand), hand, "train", tmp_path / "out")
    (tmp_path / "out/masks/vidA.json").unlink()
    with pytest.raises(DataError, match="vidA.json: JSON file not found"):
        index.target(index.samples[0])


# ------------------------------------------------------------------------------- demo


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("a2d") / "demo"
    return root, write_a2d(root, height=96, width=128, progress=False, **DEMO)


def test_demo_is_deterministic(demo, tmp_path):
    root, _ = demo
    write_a2d(tmp_path / "again", height=96, width=128, progress=False, **DEMO)
    assert _hashes(tmp_path / "again") == _hashes(root)
    write_a2d(tmp_path / "again", height=96, width=128, progress=False, **{**DEMO, "seed": 6})
    assert _hashes(tmp_path / "again") != _hashes(root)
    assert [p.name for p in tmp_path.iterdir()] == ["again"]


def test_demo_layout(demo):
    root, counts = demo
    assert {p.name for p in root.iterdir()} == {"Release", "text_annotations"}
    rows = [line.split(",") for line in (root / "Release/videoset.csv").read_text().splitlines()]
    assert all(len(row) == 9 for row in rows) and [r[8] for r in rows] == ["0"] * 3 + ["1"] * 2
    vids = [row[0] for row in rows]
    missed = (root / "text_annotations/a2d_missed_videos.txt").read_text().split()
    assert missed == [vids[2]]
    text = (root / "text_annotations/a2d_annotation.txt").read_text().splitlines()
    assert text[0] == "video_id,instance_id,query" and text[2].split(",")[1] == "1 (copy)"
    assert counts == {
        "videos": 5,
        "missed_videos": 1,
        "sentences": len(text) - 2,
        "annotated_frames": 15,
    }
    for vid in vids:
        capture = cv2.VideoCapture(str(root / f"Release/clips320H/{vid}.mp4"))
        assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 8
        ok, frame = capture.read()
        assert ok and frame.shape == (96, 128, 3)
        h5s = sorted((root / "text_annotations/a2d_annotation_with_instances" / vid).iterdir())
        assert len(h5s) == 3 and all(p.stem.isdigit() and len(p.stem) == 5 for p in h5s)
        for path in h5s:
            with h5py.File(path, "r") as handle:
                assert set(handle) == {"instance", "reMask", "reBBox", "id"}
                n = len(handle["instance"])
                shape = (128, 96) if n == 1 else (n, 128, 96)
                assert handle["reMask"].shape == shape and handle["reBBox"].shape == (4, n)


def test_demo_round_trip(demo, tmp_path):
    root, _ = demo
    prepared = a2d.read_a2d(root)
    reasons = [s["reason"] for s in prepared.skipped]
    assert reasons[:2] == [
        "listed in text_annotations/a2d_missed_videos.txt",
        "duplicated annotation row '1 (copy)'",
    ]
    assert all("annotated frames" in r for r in reasons[2:])
    assert len(prepared.splits["train"].videos) == 2 and len(prepared.splits["test"].videos) == 2
    index = _index(prepared, root, "test", tmp_path / "out")
    judged, moved = [], []
    for sample in index.samples:
        mask = index.target(sample)
        assert mask.any() and sample.text == " ".join(sample.text.lower().split())
        (frame,) = index.load_frames(sample.video, [sample.frame])
        image = np.asarray(frame, dtype=float)
        judged.append(_painted_on(image, mask))
        moved.append(_painted_on(image, np.roll(mask, 2, axis=1)))
    assert judged and all(judged) and not any(moved)


def _painted_on(image: np.ndarray, mask: np.ndarray) -> bool:
    """The mask's interior has one colour, which no pixel 2-3 px outside it has. A mask moved
    by 2 px fails this, so the lossy video still shows whether masks and pixels line up."""
    inner = ndimage.binary_erosion(mask)
    ring = ndimage.binary_dilation(mask, iterations=3) & ~ndimage.binary_dilation(mask)
    colour = np.median(image[inner], axis=0)

    def share(pixels: np.ndarray) -> float:
        return float((np.linalg.norm(pixels - colour, axis=1) < 30).mean())

    return share(image[inner]) >= 0.88 and share(image[ring]) <= 0.02


def test_demo_windows_load(demo, tmp_path):
    root, _ = demo
    index = _index(a2d.read_a2d(root), root, "train", tmp_path / "out")
    dataset = FrameWindowDataset(index, num_frames=3, transform=ClipTransform((48, 64)))
    item = dataset[0]
    assert item["frames"].shape == (3, 3, 48, 64) and item["valid"].tolist() == [0, 1, 0]
    target = index.target(index.samples[0]).astype(np.uint8)
    resized = np.asarray(Image.fromarray(target).resize((64, 48), Image.NEAREST))
    assert item["masks"][0][1].sum() > 0 and (item["masks"][0][1].numpy() == resized).mean() > 0.97
    assert item["masks"][0][[0, 2]].sum() == 0
