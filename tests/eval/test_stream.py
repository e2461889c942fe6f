"""Folder and zip mask sources read the same PNGs; reports are written atomically."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rvos.errors import DataError
from rvos.eval.report import plot_bars, write_csv
from rvos.eval.stream import open_masks


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "masks"
    (root / "seq" / "0").mkdir(parents=True)
    index = Image.fromarray(np.array([[0, 1], [2, 0]], np.uint8))
    index.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
    index.save(root / "seq" / "0" / "00000.png")
    Image.fromarray(np.array([[0, 255]], np.uint8)).save(root / "seq" / "0" / "00001.png")
    return root


def test_folder_and_zip_agree(tree, tmp_path):
    archive = shutil.make_archive(str(tmp_path / "masks"), "zip", tree.parent, "masks")
    with open_masks(tree) as folder, open_masks(archive, prefix="masks") as packed:
        for source in (folder, packed):
            assert source.exists("seq") and source.exists("seq", "0", "00000.png")
            assert not source.exists("other")
            assert source.list("seq") == ["0"]
            assert source.list("seq", "0") == ["00000.png", "00001.png"]
            np.testing.assert_array_equal(
                source.read_index("seq", "0", "00000.png"), [[0, 1], [2, 0]]
            )
            gray = source.read_gray("seq", "0", "00000.png")
            assert gray[0, 0] == 0 and gray[0, 1] > 0 and gray[1, 0] > 0  # palette colours
            np.testing.assert_array_equal(source.read_gray("seq", "0", "00001.png"), [[0, 255]])


def test_errors_name_the_location(tree, tmp_path):
    with open_masks(tree) as source:
        with pytest.raises(DataError, match=r"seq/0/00009\.png: mask file not found"):
            source.read_index("seq", "0", "00009.png")
    Image.new("RGB", (2, 2)).save(tree / "rgb.png")
    with open_masks(tree) as source, pytest.raises(DataError, match="single-channel index PNG"):
        source.read_index("rgb.png")
    with pytest.raises(DataError, match="folder of PNG masks or a .zip"):
        open_masks(tmp_path / "nowhere")


def test_report_files(tmp_path):
    table = pd.DataFrame({"name": ["a", "b"], "J": [0.5, 1.0], "F": [0.25, 0.75]})
    write_csv(table, tmp_path / "out" / "t.csv")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "t.csv"), table)
    plot_bars(table, "name", ["J", "F"], tmp_path / "out" / "t.png", "title")
    assert (tmp_path / "out" / "t.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["t.csv", "t.png"]
