"""Size limits on images and videos (rvos.data.media), and how to raise them."""

import numpy as np
import pytest

from rvos.data import media
from rvos.data.demo_a2d import write_mp4
from rvos.data.frame_samples import probe_mp4, read_mp4_frames
from rvos.errors import DataError

from .damage import bomb_png


def test_an_image_above_the_limit_is_refused_from_its_header(tmp_path):
    path = tmp_path / "frame.png"
    bomb_png(path, 8193, 8192)
    with pytest.raises(DataError) as err:
        media.open_image(path)
    assert str(err.value) == (
        f"{path}: image is 8193x8192 = 67117056 pixels, above the limit of 67108864 "
        "(raise rvos.data.media.MAX_IMAGE_PIXELS to accept it)"
    )


def test_raising_the_limit_accepts_it(tmp_path, monkeypatch):
    path = tmp_path / "frame.png"
    bomb_png(path, 8193, 8192)
    monkeypatch.setattr(media, "MAX_IMAGE_PIXELS", 8193 * 8192)
    with media.open_image(path) as image:
        assert image.size == (8193, 8192)


def test_a_video_is_checked_before_decoding_and_the_limit_can_be_raised(tmp_path, monkeypatch):
    path = tmp_path / "clip.mp4"
    write_mp4(path, np.zeros((5, 16, 32, 3), dtype=np.uint8))
    monkeypatch.setattr(media, "MAX_DECODED_BYTES", 4 * 16 * 32 * 3)
    with pytest.raises(DataError, match=r"clip.mp4: 5 frames would take 7.5 KiB decoded, above"):
        read_mp4_frames(path, [1])
    monkeypatch.setattr(media, "MAX_DECODED_BYTES", 5 * 16 * 32 * 3)
    assert probe_mp4(path) == (5, 16, 32)
