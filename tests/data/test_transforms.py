import numpy as np
import pytest
import torch
from PIL import Image

from rvos.data.transforms import ClipTransform, frames_to_tensor, swap_left_right


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
