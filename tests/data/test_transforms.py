import numpy as np
import pytest
import torch
from PIL import Image

from rvos.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipTransform,
    crop_box,
    frames_to_tensor,
    swap_left_right,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the cat on the left", "the cat on the right"),
        ("the leftmost dog right of the car", "the rightmost dog left of the car"),
        ("Left person, RIGHT hand", "Right person, LEFT hand"),
        ("a bright light", "a bleft light"),  # substring swap, as the reference code does
        ("the red square", "the red square"),
    ],
)
def test_swap_left_right(text, expected):
    assert swap_left_right(text) == expected
    assert swap_left_right(swap_left_right(text)) == text


def test_flip_swaps_mask_and_words_together():
    image = np.zeros((6, 8, 3), dtype=np.uint8)
    image[:, :2] = 255  # bright stripe on the left
    mask = np.zeros((6, 8), dtype=bool)
    mask[:, :2] = True
    torch.manual_seed(0)
    clip, target, text = ClipTransform((6, 8), hflip=1.0)([Image.fromarray(image)], [mask], "left")
    assert text == "right"
    assert target[0, :, -2:].all() and not target[0, :, :-2].any()
    assert clip[0, 0, 0, -1] > clip[0, 0, 0, 0]  # the bright stripe moved right


def test_resize_shapes_and_normalisation():
    frames = [Image.fromarray(np.full((20, 30, 3), 124, dtype=np.uint8))] * 3
    masks = [np.ones((20, 30), dtype=bool)] * 3
    clip, target, _ = ClipTransform((10, 16))(frames, masks, "x")
    assert clip.shape == (3, 3, 10, 16) and target.shape == (3, 10, 16)
    assert set(target.unique().tolist()) == {1.0}
    assert torch.allclose(
        frames_to_tensor(frames, (20, 30))[0, 0],
        torch.tensor((124 / 255 - 0.485) / 0.229),
        atol=1e-4,
    )


def test_crop_always_keeps_the_whole_target():
    mask = np.zeros((60, 100), dtype=bool)
    mask[40:50, 80:95] = True  # near the bottom-right corner
    for seed in range(30):
        torch.manual_seed(seed)
        top, left, h, w = crop_box(60, 100, mask, scale=0.3)
        assert (h, w) == (18, 30)
        assert top <= 40 and top + h >= 50 and left <= 80 and left + w >= 95
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 100


def test_crop_grows_to_fit_a_large_target_and_ignores_an_empty_one():
    mask = np.zeros((60, 100), dtype=bool)
    mask[5:55, 10:90] = True
    assert crop_box(60, 100, mask, scale=0.2)[2:] == (50, 80)
    torch.manual_seed(0)
    tops = {crop_box(60, 100, np.zeros((60, 100), bool), 0.5)[0] for _ in range(50)}
    assert len(tops) > 5 and max(tops) <= 30


def test_cropped_clip_shows_the_target_bigger_and_keeps_it():
    frames = [Image.fromarray(np.zeros((64, 96, 3), dtype=np.uint8))] * 2
    mask = np.zeros((64, 96), dtype=bool)
    mask[30:34, 40:46] = True
    transform = ClipTransform((32, 48), crop_scale=(0.5, 0.5))
    torch.manual_seed(0)
    _, target, _ = transform(frames, [mask, mask], "x")
    plain = ClipTransform((32, 48))(frames, [mask, mask], "x")[1]
    assert target.sum() > 3 * plain.sum()


def test_jitter_keeps_grey_grey_and_changes_the_clip_consistently():
    grey = Image.fromarray(np.full((8, 8, 3), 100, dtype=np.uint8))
    red = Image.fromarray(np.tile(np.array([200, 30, 30], dtype=np.uint8), (8, 8, 1)))
    torch.manual_seed(3)
    clip, _, _ = ClipTransform((8, 8), jitter=0.4)([grey, red], [np.zeros((8, 8), bool)] * 2, "x")
    std, mean = torch.tensor(IMAGENET_STD), torch.tensor(IMAGENET_MEAN)
    rgb = clip * std.view(3, 1, 1) + mean.view(3, 1, 1)
    assert torch.allclose(rgb[0, 0], rgb[0, 1], atol=1e-5)  # grey has no hue to shift
    assert not torch.allclose(rgb[0, 0], torch.tensor(100 / 255), atol=1e-3)
    assert (rgb[1, 0] > rgb[1, 1]).all() and (rgb[1, 0] > rgb[1, 2]).all()  # red stays red


def test_crop_scale_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="crop_scale"):
        ClipTransform((8, 8), crop_scale=(0.0, 1.0))
