import math

import pytest
import torch

from rvos.models.criterion import LOSSES, SetCriterion
from rvos.models.matcher import ClipMatcher, Targets

WEIGHTS = {"loss_ce": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0, "loss_mask": 2.0, "loss_dice": 5.0}


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def focal(logit, label):
    """Sigmoid focal loss of one logit (alpha 0.25, gamma 2), written out."""
    p = sigmoid(logit)
    if label:
        return 0.25 * (1 - p) ** 2 * -math.log(p)
    return 0.75 * p**2 * -math.log(1 - p)


def criterion(aux_layers=0):
    return SetCriterion(ClipMatcher(), WEIGHTS, aux_layers)


# One frame, input 8 x 8, predictions 2 x 2. The object fills rows 0-3: its inclusive box is
# (0, 0, 7, 3), i.e. (cx, cy, w, h) = (3.5/8, 1.5/8, 7/8, 3/8), and the cell centres (2, 2),
# (2, 6), (6, 2), (6, 6) read [[1, 1], [0, 0]]. Query 1 is the good one.
TOP_HALF = torch.zeros(8, 8)
TOP_HALF[:4] = 1
GOOD_MASK = [[2.0, 1.0], [-1.0, -3.0]]
BAD_MASK = [[-2.0, -2.0], [2.0, 2.0]]
GOOD_BOX = [0.5, 0.25, 0.75, 0.5]  # (0.125, 0, 0.875, 0.5) as corners
BAD_BOX = [0.8, 0.8, 0.2, 0.2]


def first_frame_losses():
    """The losses of the first frame, by hand."""
    ce = focal(2.0, 1) + focal(-1.0, 0)
    l1 = abs(0.5 - 3.5 / 8) + abs(0.25 - 1.5 / 8) + abs(0.75 - 7 / 8) + abs(0.5 - 3 / 8)
    inter = (0.875 - 0.125) * (0.375 - 0.0)
    union = 0.75 * 0.5 + 0.875 * 0.375 - inter
    enclosing = (0.875 - 0.0) * (0.5 - 0.0)
    giou = inter / union - (enclosing - union) / enclosing
    labels = [[1, 1], [0, 0]]
    mask_terms = [focal(GOOD_MASK[i][j], labels[i][j]) for i in range(2) for j in range(2)]
    probs = [sigmoid(v) for row in GOOD_MASK for v in row]
    return ce, l1, 1 - giou, mask_terms, probs


def test_hand_computed_losses_one_frame():
    outputs = {
        "pred_logits": torch.tensor([-1.0, 2.0]).view(1, 1, 2, 1),
        "pred_boxes": torch.tensor([BAD_BOX, GOOD_BOX]).view(1, 1, 2, 4),
        "pred_masks": torch.tensor([BAD_MASK, GOOD_MASK]).view(1, 1, 2, 2, 2),
    }
    masks = TOP_HALF.view(1, 1, 8, 8)
    assert ClipMatcher()(outputs, Targets.from_masks(masks)).tolist() == [1]
    losses = criterion()(outputs, masks)
    ce, l1, giou, mask_terms, probs = first_frame_losses()
    assert l1 == pytest.approx(0.375) and giou == pytest.approx(1 - (2 / 3 - 1 / 28))
    overlap = probs[0] + probs[1]  # the target is [[1, 1], [0, 0]]
    expected = {
        "loss_ce": ce,
        "loss_bbox": l1,
        "loss_giou": giou,
        "loss_mask": sum(mask_terms) / 4,
        "loss_dice": 1 - (2 * overlap + 1) / (sum(probs) + 2 + 1),
    }
    assert set(losses) == set(expected)
    for name, value in expected.items():
        assert losses[name].item() == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_hand_computed_losses_absent_and_unannotated_frames():
    """Frame 0 as above; in frame 1 the object is absent (annotated: its box is all zeros and
    its mask empty); frame 2 is not annotated and must not count, whatever it holds."""
    logits = torch.tensor([[-1.0, 2.0], [0.3, -0.5], [4.0, 6.0]]).view(1, 3, 2, 1)
    boxes = torch.tensor(
        [[BAD_BOX, GOOD_BOX], [[0.7, 0.7, 0.2, 0.2], [0.25, 0.5, 0.5, 0.25]], [GOOD_BOX] * 2]
    ).view(1, 3, 2, 4)
    frame1 = [[-2.0, 0.5], [-1.0, -4.0]]
    pred_masks = torch.tensor(
        [[BAD_MASK, GOOD_MASK], [[[3.0, 3.0], [3.0, 3.0]], frame1], [GOOD_MASK, BAD_MASK]]
    ).view(1, 3, 2, 2, 2)
    outputs = {"pred_logits": logits, "pred_boxes": boxes, "pred_masks": pred_masks}
    masks = torch.stack([TOP_HALF, torch.zeros(8, 8), 1 - TOP_HALF])[None]
    valid = torch.tensor([[True, True, False]])
    assert ClipMatcher()(outputs, Targets.from_masks(masks, valid)).tolist() == [1]
    losses = criterion()(outputs, masks, valid)

    ce, l1, giou, mask_terms, probs = first_frame_losses()
    ce += focal(0.3, 0) + focal(-0.5, 0)  # absent: both queries are negatives
    # (0.25, 0.5, 0.5, 0.25) against (0, 0, 0, 0): corners (0, 0.375, 0.5, 0.625), no overlap,
    # enclosing box (0, 0, 0.5, 0.625)
    l1 += 0.25 + 0.5 + 0.5 + 0.25
    giou += 1 - (0 - (0.5 * 0.625 - 0.5 * 0.25) / (0.5 * 0.625))
    mask_terms += [focal(v, 0) for row in frame1 for v in row]
    probs += [sigmoid(v) for row in frame1 for v in row]
    overlap = probs[0] + probs[1]
    expected = {
        "loss_ce": ce,  # one present object-frame: divided by 1
        "loss_bbox": l1,
        "loss_giou": giou,
        "loss_mask": sum(mask_terms) / 8,
        "loss_dice": 1 - (2 * overlap + 1) / (sum(probs) + 2 + 1),
    }
    for name, value in expected.items():
        assert losses[name].item() == pytest.approx(value, rel=1e-5, abs=1e-6), name


def random_case(n, t, q=4, size=(16, 16), seed=0):
    g = torch.Generator().manual_seed(seed)
    h, w = size[0] // 4, size[1] // 4
    outputs = {
        "pred_logits": torch.randn(n, t, q, 1, generator=g),
        "pred_boxes": torch.rand(n, t, q, 4, generator=g) * 0.8 + 0.1,
        "pred_masks": torch.randn(n, t, q, h, w, generator=g) * 2,
    }
    masks = torch.zeros(n, t, *size)
    for i in range(n):
        for j in range(t):
            y, x = (int(v) for v in torch.randint(0, 8, (2,), generator=g))
            masks[i, j, y : y + 6, x : x + 7] = 1
    return outputs, masks


def test_unannotated_frames_are_left_out():
    outputs, masks = random_case(2, 3, seed=1)
    valid = torch.tensor([[True, False, True], [True, False, True]])
    losses = criterion()(outputs, masks, valid)
    kept = [0, 2]
    sliced = criterion()({k: v[:, kept] for k, v in outputs.items()}, masks[:, kept])
    for name in LOSSES:
        torch.testing.assert_close(losses[name], sliced[name])
    irregular = torch.tensor([[True, False, True], [False, True, True]])
    reference = criterion()(outputs, masks, irregular)
    changed = {k: v.clone() for k, v in outputs.items()}
    garbage = masks.clone()
    for value in changed.values():
        value[~irregular] = torch.rand_like(value[~irregular]) * 0.5 + 0.25
    garbage[~irregular] = 1 - garbage[~irregular]
    again = criterion()(changed, garbage, irregular)
    for name in LOSSES:
        torch.testing.assert_close(again[name], reference[name])
    everything = criterion()(outputs, masks, torch.ones(2, 3, dtype=torch.bool))
    assert all(torch.equal(everything[k], criterion()(outputs, masks)[k]) for k in LOSSES)
    assert not torch.allclose(everything["loss_mask"], losses["loss_mask"])


def test_sums_are_divided_by_the_present_object_frames_of_the_batch():
    outputs, masks = random_case(2, 3, seed=2)
    masks[0, 1] = 0  # sentence 0: two present frames, sentence 1: one
    masks[1, :2] = 0
    together = criterion()(outputs, masks)
    alone = [criterion()({k: v[i : i + 1] for k, v in outputs.items()}, masks[i : i + 1])
             for i in range(2)]  # fmt: skip
    for name in LOSSES:
        combined = (alone[0][name] * 2 + alone[1][name] * 1) / 3
        torch.testing.assert_close(together[name], combined)


def test_target_absent_everywhere_gives_finite_losses_without_positives():
    outputs, masks = random_case(1, 2, q=3, seed=3)
    masks.zero_()
    losses = criterion()(outputs, masks)
    assert all(torch.isfinite(v) for v in losses.values())
    negatives = sum(focal(v, 0) for v in outputs["pred_logits"].flatten().tolist())
    assert losses["loss_ce"].item() == pytest.approx(negatives, rel=1e-5)  # num_boxes is 1


def test_aux_outputs_give_suffixed_keys_that_weight_dict_covers():
    outputs, masks = random_case(2, 2, seed=4)
    aux = [random_case(2, 2, seed=5 + i)[0] for i in range(2)]
    full = criterion(aux_layers=2)
    losses = full({**outputs, "aux_outputs": aux}, masks)
    expected_keys = set(LOSSES) | {f"{k}_{i}" for k in LOSSES for i in range(2)}
    assert set(losses) == expected_keys == set(full.weight_dict)
    assert all(full.weight_dict[f"{k}_1"] == WEIGHTS[k] for k in LOSSES)
    main = criterion()(outputs, masks)
    for i, layer in enumerate(aux):
        alone = criterion()(layer, masks)  # each layer is matched on its own outputs
        for name in LOSSES:
            torch.testing.assert_close(losses[f"{name}_{i}"], alone[name])
            torch.testing.assert_close(losses[name], main[name])


def test_gradients_flow_to_the_predictions():
    outputs, masks = random_case(2, 2, seed=6)
    for value in outputs.values():
        value.requires_grad_(True)
    losses = criterion()(outputs, masks)
    sum(WEIGHTS[k] * v for k, v in losses.items()).backward()
    for name, value in outputs.items():
        assert value.grad is not None and torch.isfinite(value.grad).all(), name
        assert value.grad.abs().sum() > 0, name


def test_loss_weights_must_name_every_loss():
    with pytest.raises(ValueError, match="loss weights must be given"):
        SetCriterion(ClipMatcher(), {**WEIGHTS, "loss_extra": 1.0}, 0)
    with pytest.raises(ValueError, match="loss weights must be given"):
        SetCriterion(ClipMatcher(), {k: v for k, v in WEIGHTS.items() if k != "loss_dice"}, 0)
