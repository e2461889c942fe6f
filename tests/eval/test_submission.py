"""Submission zips: completeness and format checks, layouts, atomic writing."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from PIL import Image

from rvos.errors import DataError
from rvos.eval.submission import (
    check_submission,
    competition_videos,
    expected_files,
    save_binary_mask,
    write_submission_zip,
)

META = {
    "videos": {
        "v1": {"expressions": {"0": {"exp": "a"}, "1": {"exp": "b"}}, "frames": ["00000", "00005"]},
        "v2": {"expressions": {"0": {"exp": "c"}}, "frames": ["00010"]},
    }
}


def fill(root, skip=()):
    for rel in expected_files(META):
        if rel not in skip:
            save_binary_mask(root / rel, np.eye(4, 6, dtype=bool))
    return root


def test_expected_files_and_competition_videos():
    assert expected_files(META, ["v2"]) == ["v2/0/00010.png"]
    assert len(expected_files(META)) == 5
    assert competition_videos(META, {"videos": {"v2": {}}}) == ["v1"]
    with pytest.raises(DataError, match="video v3"):
        expected_files(META, ["v3"])


def test_binary_mask_png_is_8bit_0_255(tmp_path):
    save_binary_mask(tmp_path / "m.png", np.array([[0, 1], [2, 0]]))
    with Image.open(tmp_path / "m.png") as image:
        assert image.mode == "L"
        np.testing.assert_array_equal(np.array(image), [[0, 255], [255, 0]])


@pytest.mark.parametrize(("layout", "top"), [("ytvos", "Annotations/"), ("mevis", "")])
def test_zip_layouts(tmp_path, layout, top):
    root = fill(tmp_path / "pred")
    path = write_submission_zip(root, META, tmp_path / "sub.zip", layout=layout)
    with zipfile.ZipFile(path) as archive:
        names = sorted(archive.namelist())
    assert names == sorted(top + rel for rel in expected_files(META))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_incomplete_submission_names_what_is_missing(tmp_path):
    root = fill(tmp_path / "pred", skip={"v1/1/00005.png"})
    save_binary_mask(root / "v2/0/00010.png", np.ones((3, 3)))
    Image.fromarray(np.full((4, 6), 7, np.uint8)).save(root / "v1/0/00000.png")
    missing, malformed = check_submission(root, META, frame_sizes={"v2": (6, 4)})
    assert missing == ["v1/1/00005.png"]
    assert malformed == [
        "v1/0/00000.png: values other than 0 and 255",
        "v2/0/00010.png: size (3, 3), expected (6, 4) (width, height)",
    ]
    with pytest.raises(
        DataError, match=r"1 missing and 1 malformed of 5 PNGs; first: missing v1/1"
    ):
        write_submission_zip(root, META, tmp_path / "sub.zip")
    assert not (tmp_path / "sub.zip").exists()


def test_rgb_png_is_malformed(tmp_path):
    root = fill(tmp_path / "pred")
    Image.new("RGB", (6, 4)).save(root / "v2/0/00010.png")
    _, malformed = check_submission(root, META)
    assert malformed == ["v2/0/00010.png: PNG mode RGB, expected 8-bit grayscale PNG"]
