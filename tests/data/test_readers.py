import json
import os
import pickle
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

from rvos.data import refcoco, ytvos
from rvos.data.datasets import ClipDataset, ImageDataset, collate, draw, polygons_to_mask
from rvos.data.index import load_index, save_index
from rvos.data.transforms import ClipTransform
from rvos.errors import DataError


def test_ytvos_train_index(tiny_ytvos):
    index, skipped = ytvos.read_ytvos(tiny_ytvos, "train")
    meta = json.loads((tiny_ytvos / "meta_expressions/train/meta_expressions.json").read_text())
    assert skipped == []
    assert set(index.videos) == set(meta["videos"])
    assert len(index.expressions) == sum(len(v["expressions"]) for v in meta["videos"].values())
    for e in index.expressions:
        assert e.text == " ".join(e.text.split()) and e.text == e.text.lower()
        masks = [index.target(e, f) for f in index.videos[e.video].frames]
        assert any(m.any() for m in masks), f"{e} has an empty target in every frame"


def test_ytvos_valid_excludes_test_videos(tiny_ytvos):
    index, _ = ytvos.read_ytvos(tiny_ytvos, "valid")
    test = json.loads((tiny_ytvos / "meta_expressions/test/meta_expressions.json").read_text())
    assert test["videos"] and not set(test["videos"]) & set(index.videos)
    assert len(index.videos) == 2 and index.has_masks


def test_ytvos_index_round_trip(tiny_ytvos, tmp_path):
    index, _ = ytvos.read_ytvos(tiny_ytvos, "train")
    save_index(index, tmp_path / "train.json")
    assert load_index(tmp_path / "train.json") == index


def test_ytvos_missing_frame_is_skipped_with_reason(tiny_ytvos, tmp_path):
    root = tmp_path / "ytvos"
    shutil.copytree(tiny_ytvos, root)
    video = sorted((root / "train/JPEGImages").iterdir())[0]
    sorted(video.iterdir())[1].unlink()
    index, skipped = ytvos.read_ytvos(root, "train")
    assert video.name not in index.videos
    assert skipped[0]["item"] == video.name and "listed frames missing" in skipped[0]["reason"]


def test_ytvos_malformed_meta(tiny_ytvos, tmp_path):
    root = tmp_path / "ytvos"
    shutil.copytree(tiny_ytvos, root)
    (root / "meta_expressions/train/meta_expressions.json").write_text('{"videos": [')
    with pytest.raises(DataError, match="meta_expressions.json: not valid JSON"):
        ytvos.read_ytvos(root, "train")


def test_clip_dataset_items(tiny_ytvos):
    index, _ = ytvos.read_ytvos(tiny_ytvos, "train")
    dataset = ClipDataset(index, num_frames=3, transform=ClipTransform((32, 48)))
    batch = collate([dataset[0], dataset[1]])
    assert batch["frames"].shape == (2, 3, 3, 32, 48)
    assert batch["masks"].shape == (2, 3, 32, 48)
    assert batch["texts"] == [index.expressions[0].text, index.expressions[1].text]


def test_clip_dataset_several_sentences_per_clip(tiny_ytvos):
    index, _ = ytvos.read_ytvos(tiny_ytvos, "train")
    dataset = ClipDataset(index, num_frames=2, transform=ClipTransform((32, 48)), sentences=3)
    assert len(dataset) == len(index.videos)
    torch.manual_seed(0)
    item = dataset[0]
    video = dataset.groups[0][0].video
    by_text = {e.text: e for e in index.expressions if e.video == video}
    assert item["masks"].shape == (3, 2, 32, 48) and len(item["texts"]) == 3
    assert set(item["texts"]) <= set(by_text)
    if len(by_text) >= 3:  # drawn without replacement while the video has enough
        assert len(set(item["texts"])) == 3
    # Each sentence keeps its own target: the masks differ where the objects differ.
    targets = {e.obj_ids for e in map(by_text.get, item["texts"])}
    if len(targets) > 1:
        assert not all(torch.equal(item["masks"][0], m) for m in item["masks"][1:])
    batch = collate([item, dataset[1]])
    assert batch["frames"].shape == (2, 2, 3, 32, 48) and batch["masks"].shape == (6, 2, 32, 48)
    assert batch["valid"].shape == (6, 2) and batch["valid"].all()
    assert batch["texts"][:3] == item["texts"]


def test_draw_repeats_only_after_every_member():
    torch.manual_seed(0)
    picks = draw(["a", "b"], 5)
    assert sorted(picks[:2]) == ["a", "b"] and sorted(picks[2:4]) == ["a", "b"]


def test_refcoco_conversion(tiny_refcoco):
    per_split, skipped = refcoco.convert(tiny_refcoco, "refcoco", tiny_refcoco / "train2014")
    refs = pickle.loads((tiny_refcoco / "refcoco/refs(unc).p").read_bytes())
    assert skipped == [] and set(per_split) == {"train", "val", "testA", "testB"}
    total = sum(len(coco["images"]) for coco in per_split.values())
    assert total == sum(len(r["sentences"]) for r in refs)
    train = per_split["train"]
    assert [img["id"] for img in train["images"]] == list(range(1, len(train["images"]) + 1))
    for img, ann in zip(train["images"], train["annotations"], strict=True):
        assert ann["image_id"] == img["id"] and img["caption"] == img["caption"].lower()
        mask = polygons_to_mask(ann["segmentation"], img["height"], img["width"])
        assert abs(int(mask.sum()) - ann["area"]) <= 0.05 * ann["area"] + 4


def test_image_dataset(tiny_refcoco, tmp_path):
    per_split, _ = refcoco.convert(tiny_refcoco, "refcocog", tiny_refcoco / "train2014")
    path = tmp_path / "train.json"
    path.write_text(json.dumps(per_split["train"]))
    dataset = ImageDataset([path], tiny_refcoco / "train2014", ClipTransform((48, 64)))
    item = dataset[0]
    assert item["frames"].shape == (1, 3, 48, 64) and item["masks"].sum() > 0


class _RunsCommand:
    """Unpickling this calls `call(*args)`: what a hostile refs file would smuggle in."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return (self.call, self.args)


# (callable, its arguments given the marker file, how the refused global is named); protocol 2
# writes Python-2 module names (subprocess is "commands" there).
HOSTILE_CALLS = {
    "os.system": (os.system, lambda m: (f"touch {m}",), r"(posix|os)\.system"),
    "subprocess.call": (subprocess.call, lambda m: (["touch", str(m)],), r"(subprocess|commands)"),
    "open": (open, lambda m: (str(m), "w"), r"(builtins|io|__builtin__)\.open"),
}


@pytest.mark.parametrize("case", HOSTILE_CALLS)
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_hostile_refs_pickle_is_refused(tmp_path, case, protocol):
    call, arguments, refused = HOSTILE_CALLS[case]
    marker = tmp_path / "pwned"
    path = tmp_path / "refs(unc).p"
    hostile = _RunsCommand(call, *arguments(marker))
    path.write_bytes(pickle.dumps([{"ref_id": 0, "x": hostile}], protocol))
    with pytest.raises(DataError, match=re.escape(str(path)) + ": refuses to load " + refused):
        refcoco.read_refs(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x80\x02]q\x00(K\x01", b"not a pickle at all", b"\x80\x02}q\x00(]q\x01K\x01s."],
    ids=["empty", "truncated", "text", "unhashable key"],
)
def test_corrupt_refs_pickle_names_the_file(tmp_path, payload):
    path = tmp_path / "refs(unc).p"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=re.escape(f"{path}: not a readable pickle")):
        refcoco.read_refs(path)


def test_refs_pickle_with_latin1_bytes(tmp_path):
    # A Python-2 pickle of a non-ASCII byte string (SHORT_BINSTRING opcode).
    raw = b"\x80\x02]q\x00}q\x01U\x04sentq\x02U\x04caf\xe9q\x03sa."
    path = tmp_path / "refs(unc).p"
    path.write_bytes(raw)
    assert refcoco.read_refs(path) == [{"sent": "café"}]


def test_sample_frames_sorted_and_bounded():
    from rvos.data.datasets import sample_frames

    torch.manual_seed(0)
    picks = sample_frames(10, 4)
    assert picks == sorted(picks) and len(set(picks)) == 4 and max(picks) < 10
    assert len(sample_frames(2, 5)) == 5 and np.max(sample_frames(2, 5)) < 2


def test_sample_frames_local_neighbours():
    """ReferFormer's sampling: a centre frame, a neighbour 1..interval frames before it and
    one after it (clamped to the video), and the rest of the clip anywhere."""
    from rvos.data.datasets import sample_frames

    torch.manual_seed(0)
    for _ in range(200):
        before, centre, after = sample_frames(30, 3, interval=2)
        assert 1 <= centre - before <= 2 or before == 0
        assert 1 <= after - centre <= 2 or after == 29
    spread = [sample_frames(30, 5, interval=2) for _ in range(200)]
    assert all(p == sorted(p) and 0 <= p[0] and p[-1] < 30 for p in spread)
    assert sum(p[-1] - p[0] > 10 for p in spread) > 100
    assert sample_frames(1, 3, interval=3) == [0, 0, 0]
    with pytest.raises(ValueError, match="interval"):
        sample_frames(10, 3, interval=-1)
