"""JHMDB-Sentences: hand-built release files, bad input, the demo writer and the window dataset."""

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from rvos.config import JhmdbData, load_params
from rvos.data import jhmdb
from rvos.data.demo_jhmdb import write_jhmdb, write_part_mask
from rvos.data.frame_samples import (
    GT_FILE,
    FrameWindowDataset,
    decode_mask,
    load_frame_index,
    write_prepared,
)
from rvos.data.transforms import ClipTransform
from rvos.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

REPO = Path(__file__).resolve().parents[2]
H, W = 24, 40
FRAMES, MASKED = 6, 5  # vidA has 6 frames but part_mask covers only the first 5
VID, ACTION = "vidA_run", "run"
DEMO = dict(seed=2, videos=4, frames=8, height=48, width=64)


def _part_mask() -> np.ndarray:
    """(H, W, T) with a different, asymmetric box in every frame."""
    masks = np.zeros((H, W, MASKED), dtype=np.uint8)
    for t in range(MASKED):
        masks[2 + t : 10 + t, 3 * t : 3 * t + 12, t] = 1
        masks[2 + t, 3 * t, t] = 0
    return masks


PART_MASK = _part_mask()


def _row(frame: int, query: str = "A Man  running", usable: int = MASKED, vid: str = VID) -> list:
    return [
        vid,
        f"./jhmdb_sentences/Rename_Images/{ACTION}/{vid}/{frame:05d}.png",
        f"./jhmdb_sentences/puppet_mask/{ACTION}/{vid}/puppet_mask.mat",
        usable,
        query,
    ]


def _write_metadata(root: Path, rows: list) -> None:
    (root / "jhmdb_sentences_samples_metadata.json").write_text(json.dumps(rows))


@pytest.fixture
def hand(tmp_path) -> Path:
    """One video: frame t (1-based) is grey level 30 t; 6 PNGs, 5 masked frames, samples on
    frames 2 and 5. Written from FORMATS.md, independent of the demo writer."""
    root = tmp_path / "jhmdb"
    folder = root / "Rename_Images" / ACTION / VID
    folder.mkdir(parents=True)
    for t in range(1, FRAMES + 1):
        Image.fromarray(np.full((H, W, 3), 30 * t, dtype=np.uint8)).save(folder / f"{t:05d}.png")
    mat = root / "puppet_mask" / ACTION / VID / "puppet_mask.mat"
    mat.parent.mkdir(parents=True)
    scipy.io.savemat(str(mat), {"part_mask": PART_MASK})
    (root / "jhmdb_annotation.txt").write_text(
        'video_id,query\nvidA_run,A Man  running\nvidB_sit,"a woman, sitting"\n'
    )
    _write_metadata(root, [_row(2), _row(5)])
    return root


def test_hand_built_samples(hand):
    prepared = jhmdb.read_jhmdb(hand)
    (split,) = prepared.splits
    test = prepared.splits["test"]
    assert split == "test"
    assert [(s.sample_id, s.frame, s.instance, s.text) for s in test.samples] == [
        ("v_vidA_run_f_2", 2, None, "a man running"),
        ("v_vidA_run_f_5", 5, None, "a man running"),
    ]
    video = test.videos[VID]
    assert (video.source, video.kind, video.frames, video.height, video.width) == (
        f"Rename_Images/{ACTION}/{VID}",
        "png",
        MASKED,
        H,
        W,
    )
    assert prepared.skipped == [
        {
            "item": "vidB_sit",
            "reason": "no sample in jhmdb_sentences_samples_metadata.json",
            "split": "test",
        }
    ]
    for sample in test.samples:  # GT = part_mask[..., frame - 1], pixel by pixel
        counts = prepared.masks[VID][sample.sample_id].counts
        np.testing.assert_array_equal(decode_mask(counts, (H, W)), PART_MASK[..., sample.frame - 1])


def test_single_frame_mask_saved_without_its_last_axis(tmp_path):
    """MATLAB drops a trailing singleton dimension: (H, W) means T = 1."""
    path = tmp_path / "puppet_mask.mat"
    scipy.io.savemat(str(path), {"part_mask": PART_MASK[..., 0]})
    masks = jhmdb.read_part_mask(path)
    assert masks.shape == (1, H, W) and masks.dtype == bool
    np.testing.assert_array_equal(masks[0], PART_MASK[..., 0])


def test_prepare_writes_index_masks_and_gt(hand, tmp_path):
    params = load_params(REPO / "params.yaml")
    data = dataclasses.replace(params.data, jhmdb=JhmdbData(root=str(hand)))
    report = jhmdb.prepare_jhmdb(dataclasses.replace(params, data=data), tmp_path / "out")
    assert report["counts"] == {
        "test": {"videos": 1, "samples": 2, "expressions": 1, "annotated_frames": 2, "instances": 1}
    }
    assert report["skipped"] == 1
    assert {p.name for p in (tmp_path / "out").iterdir()} == {GT_FILE, "masks", "test.json"}
    gt = json.loads((tmp_path / "out" / GT_FILE).read_text())
    assert [img["id"] for img in gt["images"]] == ["v_vidA_run_f_2", "v_vidA_run_f_5"]
    for number, ann in enumerate(gt["annotations"], start=1):
        assert set(ann) == {"id", "image_id", "category_id", "segmentation", "area", "iscrowd"}
        assert ann["id"] == number and ann["category_id"] == 1
        frame = int(ann["image_id"].rsplit("_", 1)[1])
        assert ann["area"] == PART_MASK[..., frame - 1].sum()


def test_samples_metadata_path_is_configurable(hand, tmp_path):
    elsewhere = tmp_path / "lists" / "frozen.json"
    elsewhere.parent.mkdir()
    shutil.move(hand / "jhmdb_sentences_samples_metadata.json", elsewhere)
    params = load_params(REPO / "params.yaml")
    cfg = JhmdbData(root=str(hand), samples_metadata=str(elsewhere))
    params = dataclasses.replace(params, data=dataclasses.replace(params.data, jhmdb=cfg))
    report = jhmdb.prepare_jhmdb(params, tmp_path / "out")
    assert report["counts"]["test"]["samples"] == 2


def test_window_clamps_to_the_masked_frames(hand, tmp_path):
    write_prepared(jhmdb.read_jhmdb(hand), tmp_path / "out")
    index = load_frame_index(tmp_path / "out/test.json")
    dataset = FrameWindowDataset(index, num_frames=4, transform=ClipTransform((H, W)))
    item = dataset[1]  # frame 5 of 5 usable: frames 3, 4, 5, 5 (frame 6 has no mask)
    assert item["sample_id"] == "v_vidA_run_f_5" and item["texts"] == ["a man running"]
    assert item["valid"].tolist() == [False, False, True, False]
    np.testing.assert_array_equal(item["masks"][0][2].numpy(), PART_MASK[..., 4])
    assert item["masks"][0][[0, 1, 3]].sum() == 0
    frames = index.load_frames(VID, [3, 4, 5, 5])
    assert [np.asarray(f)[0, 0, 0] for f in frames] == [90, 120, 150, 150]


def test_skip_bad_counts_the_bad_rows(hand):
    _write_metadata(hand, [_row(2), _row(5, query="a cat"), _row(3)])
    prepared = jhmdb.read_jhmdb(hand, skip_bad=True)
    assert [s.frame for s in prepared.splits["test"].samples] == [2, 3]
    bad = [s for s in prepared.skipped if s["item"] == "row 1"]
    assert len(bad) == 1 and "differs from jhmdb_annotation.txt" in bad[0]["reason"]


# ---------------------------------------------------------------------------- bad input


def _metadata(*rows):
    return lambda root: _write_metadata(root, list(rows))


def _text(content: str):
    return lambda root: (root / "jhmdb_annotation.txt").write_text(content)


def _mat(**content):
    def mutate(root):
        path = root / "puppet_mask" / ACTION / VID / "puppet_mask.mat"
        scipy.io.savemat(str(path), content)

    return mutate


def _frame(number: int):
    return Path("Rename_Images") / ACTION / VID / f"{number:05d}.png"


def _wrong_size_frames(root):
    for t in range(1, FRAMES + 1):
        Image.new("RGB", (W + 2, H)).save(root / _frame(t))


BAD_INPUT = {
    "annotation missing": (
        lambda root: (root / "jhmdb_annotation.txt").unlink(),
        "jhmdb_annotation.txt: file not found",
    ),
    "annotation header": (
        _text("vid,sentence\nvidA_run,a man\n"),
        "line 1: expected the header video_id,query",
    ),
    "annotation field count": (
        _text("video_id,query\nvidA_run\n"),
        "line 2: expected 2 fields (video_id,query), got 1",
    ),
    "second sentence": (
        _text("video_id,query\nvidA_run,a man running\nvidA_run,a man\n"),
        "line 3: video 'vidA_run' has a second sentence",
    ),
    "metadata missing": (
        lambda root: (root / "jhmdb_sentences_samples_metadata.json").unlink(),
        "file not found (the frozen sample list that MTTR ships",
    ),
    "metadata not JSON": (
        lambda root: (root / "jhmdb_sentences_samples_metadata.json").write_text("[[1,"),
        "jhmdb_sentences_samples_metadata.json: not valid JSON",
    ),
    "metadata not a list": (
        lambda root: (root / "jhmdb_sentences_samples_metadata.json").write_text("{}"),
        "expected a list of [vid, frame_path, mask_path, ...]",
    ),
    "row length": (
        _metadata(_row(2)[:4]),
        "row 0: expected [vid, frame_path, mask_path, n_usable, query]",
    ),
    "n_usable not an integer": (
        _metadata(_row(2, usable="5")),
        "row 0: n_usable '5' is not a positive integer",
    ),
    "path escapes the root": (
        _metadata([VID, f"./x/Rename_Images/../../../{VID}/00002.png", *_row(2)[2:]]),
        "escapes the dataset root",
    ),
    "absolute path": (
        _metadata([VID, f"/data/Rename_Images/{ACTION}/{VID}/00002.png", *_row(2)[2:]]),
        "escapes the dataset root",
    ),
    "frame path of another video": (
        _metadata([VID, *_row(2, vid="vidB_sit")[1:]]),
        "expected Rename_Images/<action>/vidA_run/NNNNN.png",
    ),
    "frame path outside Rename_Images": (
        _metadata([VID, f"./jhmdb_sentences/images/{ACTION}/{VID}/00002.png", *_row(2)[2:]]),
        "does not lead into Rename_Images/",
    ),
    "mask path": (
        _metadata([*_row(2)[:2], f"./jhmdb_sentences/puppet_mask/{ACTION}/{VID}/m.mat", 5, "a"]),
        "expected puppet_mask/<action>/vidA_run/puppet_mask.mat",
    ),
    "frame past n_usable": (
        _metadata(_row(5, usable=4)),
        "row 0: frame 5 is outside the usable frames 1..4",
    ),
    "n_usable past the masks": (
        _metadata(_row(2, usable=6)),
        "n_usable 6 exceeds the 5 masked frames",
    ),
    "video without sentence": (
        _metadata(_row(2, vid="vidC_jump")),
        "row 0: video 'vidC_jump' is not in jhmdb_annotation.txt",
    ),
    "query differs": (
        _metadata(_row(2, query="a dog")),
        "row 0: query 'a dog' differs from jhmdb_annotation.txt",
    ),
    "empty query": (_metadata(_row(2, query="  ")), "row 0: empty query"),
    "repeated sample": (_metadata(_row(2), _row(2)), "row 1: sample v_vidA_run_f_2 repeated"),
    "rows disagree": (
        _metadata(_row(2), _row(3, usable=4)),
        "rows of vidA_run disagree on action folder or n_usable",
    ),
    "frame folder missing": (
        lambda root: shutil.rmtree(root / "Rename_Images"),
        "vidA_run: frame directory not found",
    ),
    "frame missing": (
        lambda root: (root / _frame(3)).unlink(),
        "vidA_run: frame 00003.png missing (n_usable = 5)",
    ),
    "corrupt frame": (
        lambda root: (root / _frame(2)).write_bytes(b"not a png"),
        "00002.png: not a readable image",
    ),
    "frame size differs from the mask": (
        _wrong_size_frames,
        "frame is 42x24 but part_mask is 40x24",
    ),
    "mask file missing": (
        lambda root: (root / "puppet_mask" / ACTION / VID / "puppet_mask.mat").unlink(),
        "puppet_mask.mat: file not found",
    ),
    "corrupt mask file": (
        lambda root: (root / "puppet_mask" / ACTION / VID / "puppet_mask.mat").write_bytes(b"x"),
        "puppet_mask.mat: not a readable MATLAB file",
    ),
    "mask key missing": (_mat(mask=PART_MASK), "missing key 'part_mask' (found ['mask'])"),
    "mask values": (_mat(part_mask=PART_MASK * 255), "holds values [0, 255]; expected 0/1"),
    "mask dimensions": (
        _mat(part_mask=PART_MASK[None]),
        "'part_mask' has shape (1, 24, 40, 5) and class uint8; expected a numeric (H, W, T)",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUT, ids=list(BAD_INPUT))
def test_bad_input_is_a_data_error_naming_the_problem(hand, case):
    mutate, message = BAD_INPUT[case]
    mutate(hand)
    with pytest.raises(DataError) as err:
        jhmdb.read_jhmdb(hand)
    assert message in str(err.value)


# ------------------------------------------------------------------------------- demo


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("jhmdb") / "demo"
    return root, write_jhmdb(root, progress=False, **DEMO)


def test_demo_is_deterministic(demo, tmp_path):
    root, _ = demo
    write_jhmdb(tmp_path / "again", progress=False, **DEMO)
    assert _hashes(tmp_path / "again") == _hashes(root)
    write_jhmdb(tmp_path / "again", progress=False, **{**DEMO, "seed": 3})
    assert _hashes(tmp_path / "again") != _hashes(root)
    assert [p.name for p in tmp_path.iterdir()] == ["again"]


def test_demo_layout(demo):
    root, counts = demo
    assert {p.name for p in root.iterdir()} == {
        "Rename_Images",
        "puppet_mask",
        "jhmdb_annotation.txt",
        "jhmdb_sentences_samples_metadata.json",
    }
    lines = (root / "jhmdb_annotation.txt").read_text().splitlines()
    assert lines[0] == "video_id,query" and len(lines) == 1 + DEMO["videos"]
    rows = json.loads((root / "jhmdb_sentences_samples_metadata.json").read_text())
    assert counts == {"videos": 4, "frames": 32, "samples": len(rows), "short_masks": 2}
    short = 0
    for vid, frame_path, mask_path, usable, query in rows:
        assert frame_path.startswith("./jhmdb_sentences/Rename_Images/") and vid in frame_path
        assert mask_path.endswith(f"/{vid}/puppet_mask.mat") and query.strip()
        frames = sorted((root / frame_path[len("./jhmdb_sentences/") :]).parent.iterdir())
        assert [p.name for p in frames] == [f"{t:05d}.png" for t in range(1, 9)]
        content = scipy.io.loadmat(str(root / mask_path[len("./jhmdb_sentences/") :]))
        assert content["part_mask"].shape == (48, 64, usable)
        assert content["part_mask"].dtype == np.uint8
        short += usable < 8
    assert short > 0


def test_demo_round_trip(demo, tmp_path):
    root, _ = demo
    prepared = jhmdb.read_jhmdb(root)
    assert prepared.skipped == []
    write_prepared(prepared, tmp_path / "out")
    index = load_frame_index(tmp_path / "out/test.json")
    assert len(index.samples) == len(prepared.splits["test"].samples) >= 3 * DEMO["videos"] - 2
    for sample in index.samples:
        mask = index.target(sample)
        (frame,) = index.load_frames(sample.video, [sample.frame])
        pixels = np.asarray(frame, dtype=float)[mask]
        assert mask.any() and np.ptp(pixels.mean(axis=1)) < 80  # one painted colour


def test_part_mask_writer_is_byte_stable(tmp_path):
    masks = PART_MASK.transpose(2, 0, 1).astype(bool)
    write_part_mask(tmp_path / "a.mat", masks)
    write_part_mask(tmp_path / "b.mat", masks)
    assert (tmp_path / "a.mat").read_bytes() == (tmp_path / "b.mat").read_bytes()
    np.testing.assert_array_equal(jhmdb.read_part_mask(tmp_path / "a.mat"), masks)
