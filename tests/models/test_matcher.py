import pytest
import torch

from rvos.models.matcher import ClipMatcher, Targets, mask_boxes, subsample_masks

COSTS = ("cost_class", "cost_bbox", "cost_giou", "cost_mask", "cost_dice")


def random_outputs(n, t, q, h, w, seed=0):
    """Outputs of a query-based model: (N, T, Q, ...) logits, boxes in (0, 1), mask logits."""
    g = torch.Generator().manual_seed(seed)
    return {
        "pred_logits": torch.randn(n, t, q, 1, generator=g),
        "pred_boxes": torch.rand(n, t, q, 4, generator=g) * 0.8 + 0.1,
        "pred_masks": torch.randn(n, t, q, h, w, generator=g) * 2,
    }


def random_masks(n, t, h, w, seed=0, absent=0.3):
    """(N, T, H, W) rectangles at random places; a frame is empty with probability `absent`."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, t, h, w)
    for i in range(n):
        for j in range(t):
            if torch.rand(1, generator=g) < absent:
                continue
            y0, x0 = (int(torch.randint(0, s - 4, (1,), generator=g)) for s in (h, w))
            y1 = int(torch.randint(y0 + 2, h + 1, (1,), generator=g))
            x1 = int(torch.randint(x0 + 2, w + 1, (1,), generator=g))
            masks[i, j, y0:y1, x0:x1] = 1
    return masks


def ideal_query(outputs, targets, index):
    """Make query `index` of every sentence the target itself: a confident score where the
    object is present, its box, and mask logits ±10 on its mask."""
    small = subsample_masks(targets.masks, outputs["pred_masks"].shape[-2:])
    outputs["pred_logits"][:, :, index, 0] = torch.where(targets.present, 8.0, -8.0)
    outputs["pred_boxes"][:, :, index] = targets.boxes
    outputs["pred_masks"][:, :, index] = small * 20 - 10


def test_batched_equals_one_sentence_at_a_time():
    outputs = random_outputs(5, 3, 6, 8, 12, seed=1)
    masks = random_masks(5, 3, 32, 48, seed=1)
    annotated = torch.rand(5, 3, generator=torch.Generator().manual_seed(2)) > 0.3
    targets = Targets.from_masks(masks, annotated)
    matcher = ClipMatcher()
    batched = matcher(outputs, targets)
    cost = matcher.cost(outputs, targets)
    assert batched.shape == (5,) and cost.shape == (5, 6)
    for i in range(5):
        one = {k: v[i : i + 1] for k, v in outputs.items()}
        alone = Targets.from_masks(masks[i : i + 1], annotated[i : i + 1])
        assert matcher(one, alone).tolist() == [batched[i].item()]
        torch.testing.assert_close(matcher.cost(one, alone)[0], cost[i])
    assert len(set(batched.tolist())) > 1  # the sentences do not all pick the same query


def test_empty_target_matches_without_nan():
    outputs = random_outputs(3, 4, 5, 8, 8, seed=3)
    masks = random_masks(3, 4, 32, 32, seed=3, absent=0.0)
    masks[1] = 0  # the object of sentence 1 is absent in every frame
    annotated = torch.ones(3, 4, dtype=torch.bool)
    annotated[2] = False  # and sentence 2 has no annotated frame at all
    targets = Targets.from_masks(masks, annotated)
    assert not targets.present[1].any() and (targets.boxes[1] == 0).all()
    matcher = ClipMatcher()
    cost = matcher.cost(outputs, targets)
    assert torch.isfinite(cost).all()
    matched = matcher(outputs, targets)
    assert ((matched >= 0) & (matched < 5)).all()


@pytest.mark.parametrize("seed", range(4))
def test_query_that_equals_the_target_is_chosen(seed):
    outputs = random_outputs(3, 3, 7, 8, 10, seed=seed)
    targets = Targets.from_masks(random_masks(3, 3, 32, 40, seed=seed))
    index = seed + 2
    ideal_query(outputs, targets, index)
    assert ClipMatcher()(outputs, targets).tolist() == [index] * 3


def _outputs_for(quantity, query, n_queries=4):
    """One sentence, two frames. Query `query` has the right `quantity` (logits, boxes or
    masks) and the wrong other two; every other query has only `quantity` wrong."""
    masks = torch.zeros(1, 2, 32, 32)
    masks[:, :, 8:20, 8:20] = 1
    targets = Targets.from_masks(masks)
    small = subsample_masks(masks, (8, 8))[:, :, None]
    right = {
        "pred_logits": torch.full((1, 2, n_queries, 1), 6.0),
        "pred_boxes": targets.boxes[:, :, None].repeat(1, 1, n_queries, 1),
        "pred_masks": (small * 16 - 8).repeat(1, 1, n_queries, 1, 1),
    }
    wrong = {
        "pred_logits": -right["pred_logits"],
        "pred_boxes": torch.tensor([0.9, 0.9, 0.1, 0.1]).expand_as(right["pred_boxes"]),
        "pred_masks": -right["pred_masks"],
    }
    outputs = {}
    for key in right:
        first, second = (wrong, right) if key == quantity else (right, wrong)
        outputs[key] = first[key].clone()
        outputs[key][:, :, query] = second[key][:, :, query]
    return outputs, targets


@pytest.mark.parametrize(
    ("cost", "quantity", "query"),
    [
        ("cost_class", "pred_logits", 0),
        ("cost_bbox", "pred_boxes", 1),
        ("cost_giou", "pred_boxes", 2),
        ("cost_mask", "pred_masks", 3),
        ("cost_dice", "pred_masks", 1),
    ],
)
def test_a_single_nonzero_weight_selects_by_that_cost(cost, quantity, query):
    outputs, targets = _outputs_for(quantity, query)
    only = ClipMatcher(**{name: float(name == cost) for name in COSTS})
    assert only(outputs, targets).item() == query
    assert ClipMatcher()(outputs, targets).item() != query  # the other costs outvote it


def test_l1_and_giou_costs_disagree_where_they_should():
    """A box with the target's centre but a fifth of its size is closer in L1; one three times
    larger overlaps more (IoU 1/9 against 1/25)."""
    masks = torch.zeros(1, 1, 40, 40)
    masks[:, :, 18:22, 18:22] = 1  # inclusive extent 3 px: box (0.4875, 0.4875, 0.075, 0.075)
    targets = Targets.from_masks(masks)
    cx, cy, w, h = targets.boxes[0, 0].tolist()
    boxes = torch.tensor([[cx, cy, w / 5, h / 5], [cx, cy, w * 3, h * 3], [0.9, 0.1, w, h]])
    outputs = {
        "pred_logits": torch.zeros(1, 1, 3, 1),
        "pred_boxes": boxes[None, None],
        "pred_masks": torch.zeros(1, 1, 3, 10, 10),
    }
    l1 = ClipMatcher(cost_class=0, cost_bbox=1, cost_giou=0, cost_mask=0, cost_dice=0)
    giou = ClipMatcher(cost_class=0, cost_bbox=0, cost_giou=1, cost_mask=0, cost_dice=0)
    assert l1(outputs, targets).item() == 0 and giou(outputs, targets).item() == 1
    torch.testing.assert_close(
        l1.cost(outputs, targets)[0, :2], torch.tensor([0.8 * (w + h), 2 * (w + h)])
    )
    torch.testing.assert_close(giou.cost(outputs, targets)[0, :2], -torch.tensor([1 / 25, 1 / 9]))


def test_class_cost_reads_present_frames_and_box_cost_annotated_frames():
    outputs = random_outputs(1, 3, 4, 8, 8, seed=5)
    masks = random_masks(1, 3, 32, 32, seed=5, absent=0.0)
    masks[0, 1] = 0  # absent but annotated
    annotated = torch.tensor([[True, True, False]])
    targets = Targets.from_masks(masks, annotated)
    only_class = ClipMatcher(cost_class=1, cost_bbox=0, cost_giou=0, cost_mask=0, cost_dice=0)
    only_bbox = ClipMatcher(cost_class=0, cost_bbox=1, cost_giou=0, cost_mask=0, cost_dice=0)
    changed = {k: v.clone() for k, v in outputs.items()}
    changed["pred_logits"][:, 1:] = torch.randn(1, 2, 4, 1) * 5  # absent and unannotated
    torch.testing.assert_close(only_class.cost(changed, targets), only_class.cost(outputs, targets))
    unannotated = {k: v.clone() for k, v in outputs.items()}
    unannotated["pred_boxes"][:, 2] = torch.rand(1, 4, 4)
    unannotated["pred_masks"][:, 2] = torch.randn(1, 4, 8, 8) * 5
    torch.testing.assert_close(ClipMatcher().cost(unannotated, targets),
                               ClipMatcher().cost(outputs, targets))  # fmt: skip
    absent = {k: v.clone() for k, v in outputs.items()}
    absent["pred_boxes"][:, 1] = torch.rand(1, 4, 4)
    assert not torch.allclose(only_bbox.cost(absent, targets), only_bbox.cost(outputs, targets))
    # the L1 cost is the mean over the two annotated frames, the absent one against (0, 0, 0, 0)
    expected = (outputs["pred_boxes"][0, :2] - targets.boxes[0, :2, None]).abs().sum(-1).mean(0)
    torch.testing.assert_close(only_bbox.cost(outputs, targets)[0], expected)


def test_all_weights_zero_is_an_error():
    with pytest.raises(ValueError, match="all matching costs are 0"):
        ClipMatcher(**dict.fromkeys(COSTS, 0))


def test_mask_boxes_are_inclusive_normalised_extents():
    masks = torch.zeros(1, 4, 10, 20, dtype=torch.bool)
    masks[0, 0, 2:6, 3:9] = True  # rows 2..5, columns 3..8
    masks[0, 1, 9, 19] = True  # a single pixel in the bottom-right corner
    masks[0, 2, 0, 0] = masks[0, 2, 4, 10] = True  # two blobs: the extent spans both
    present = masks.flatten(2).any(-1)
    boxes = mask_boxes(masks, present)
    expected = torch.tensor(
        [
            [5.5 / 20, 3.5 / 10, 5 / 20, 3 / 10],
            [19 / 20, 9 / 10, 0.0, 0.0],
            [5 / 20, 2 / 10, 10 / 20, 4 / 10],
            [0.0, 0.0, 0.0, 0.0],
        ]
    )
    assert boxes.dtype == torch.float32
    torch.testing.assert_close(boxes[0], expected)
    targets = Targets.from_masks(masks.float(), torch.tensor([[True, True, False, True]]))
    # A single pixel has an empty box: no object to detect there, as ReferFormer counts it.
    assert targets.present.tolist() == [[True, False, False, False]]
    assert (targets.boxes[0, 1:] == 0).all()  # nor do thin or unannotated frames carry a box


def test_subsample_masks_picks_cell_centres():
    masks = torch.arange(16 * 24, dtype=torch.float32).view(1, 1, 16, 24)
    small = subsample_masks(masks, (4, 6))  # 4 x 4 cells: pixel (4i + 2, 4j + 2)
    assert small.shape == (1, 1, 4, 6)
    for i in range(4):
        for j in range(6):
            assert small[0, 0, i, j] == (4 * i + 2) * 24 + (4 * j + 2)
    wide = subsample_masks(masks, (8, 6))  # 2 x 4 cells: pixel (2i + 1, 4j + 2)
    assert wide[0, 0, 3, 5] == (2 * 3 + 1) * 24 + (4 * 5 + 2)
    for size in ((5, 6), (4, 7), (32, 48)):
        with pytest.raises(ValueError, match="not a multiple"):
            subsample_masks(masks, size)
