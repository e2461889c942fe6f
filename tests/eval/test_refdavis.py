"""Ref-DAVIS17: index maps as the ReferFormer protocol builds them, PNGs, mean of 4 variants."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rvos.eval.davis_eval import GLOBAL_COLUMNS, evaluate_davis
from rvos.eval.refdavis import (
    davis_palette,
    evaluate_refdavis,
    index_map,
    write_index_pngs,
    write_variant,
)


def test_index_map_threshold_background_and_ties():
    probs = np.array(
        [
            [0.49, 0.5, 0.9, 0.7, 0.0],  # object 0
            [0.30, 0.6, 0.9, 0.8, 0.0],  # object 1
        ],
        dtype=np.float32,
    )
    # < 0.5 -> 0, so 0.49 and 0.3 lose to the 0.1 background; 0.9 vs 0.9 goes to object 0.
    np.testing.assert_array_equal(index_map(probs), [0, 2, 1, 2, 0])
    assert index_map(probs).dtype == np.uint8


def test_palette_is_the_davis_one():
    palette = davis_palette()
    assert len(palette) == 768
    assert palette[:12] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]
    assert palette[255 * 3 : 256 * 3] == [224, 224, 192]  # void colour


def test_write_variant_frame_by_frame(tmp_path):
    t, h, w = 3, 4, 5
    obj0 = np.zeros((t, h, w), np.float32)
    obj1 = np.zeros((t, h, w), np.float32)
    obj0[:, :2] = 0.8
    obj1[:, 1:3] = 0.9
    write_variant(tmp_path, 2, "seq", [obj0, obj1])
    files = sorted(p.name for p in (tmp_path / "anno_2" / "seq").iterdir())
    assert files == ["00000.png", "00001.png", "00002.png"]
    with Image.open(tmp_path / "anno_2" / "seq" / "00001.png") as image:
        assert image.mode == "P"
        np.testing.assert_array_equal(np.array(image)[:, 0], [1, 2, 2, 0])
    with pytest.raises(ValueError, match="variant"):
        write_variant(tmp_path, 4, "seq", [obj0])


def test_mean_of_the_four_variants(tmp_path):
    gt = np.zeros((4, 24, 32), np.uint8)
    gt[:, 4:12, 4:12], gt[:, 14:22, 16:30] = 1, 2
    root = tmp_path / "DAVIS"
    write_index_pngs(root / "Annotations_unsupervised" / "480p" / "s", gt)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("s\n")
    preds = tmp_path / "pred"
    for variant in range(4):
        shifted = [np.roll((gt == k).astype(np.float32), variant, axis=2) for k in (1, 2)]
        write_variant(preds, variant, "s", shifted)
    result = evaluate_refdavis(preds, root, out_dir=tmp_path / "out", progress=False)
    singles = [evaluate_davis(root, preds / f"anno_{a}", progress=False).summary for a in range(4)]
    for key in GLOBAL_COLUMNS:
        assert result[key] == pytest.approx(np.mean([s[key] for s in singles]), abs=1e-15)
    assert result["variants"][0]["J-Mean"] == 1.0  # variant 0 is the GT itself
    assert result["J-Mean"] < 1.0
    assert set(result["per_object"]["variant"]) == {0, 1, 2, 3}
    assert (tmp_path / "out" / "global_results-val.csv").is_file()
    assert (tmp_path / "out" / "anno_3" / "per-object_results-val.png").is_file()
