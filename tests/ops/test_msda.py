"""The op on CPU: both backends against Deformable-DETR's numbers, hand-computed values,
each other, and finite differences; the compiled op's precondition errors."""

from __future__ import annotations

import pytest
import torch

from rvos.ops import ms_deform_attn, ms_deform_attn_reference

from .conftest import ENCODER_SHAPES, compiled_op, make_inputs, requires_compiled

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
INPUT_NAMES = [
    "value",
    "spatial_shapes",
    "level_start_index",
    "sampling_locations",
    "attention_weights",
]
GRAD_INPUTS = (0, 3, 4)  # value, sampling_locations, attention_weights


def forward_backward(op, inputs, grad_output):
    """(output, grad_value, grad_sampling_locations, grad_attention_weights)."""
    leaves = [t.detach().clone().requires_grad_(i in GRAD_INPUTS) for i, t in enumerate(inputs)]
    output = op(*leaves)
    output.backward(grad_output)
    return (output.detach(), *(leaves[i].grad for i in GRAD_INPUTS))


def assert_all_close(actual, expected, tol):
    """Within `tol` of each tensor's scale: location gradients carry a factor W or H (~100),
    and float32 rounds them accordingly in every implementation."""
    names = ("output", "grad_value", "grad_sampling_locations", "grad_attention_weights")
    for name, a, e in zip(names, actual, expected, strict=True):
        atol = tol * max(1.0, e.abs().max().item())
        torch.testing.assert_close(a, e, rtol=tol, atol=atol, msg=lambda m, n=name: f"{n}: {m}")


def with_border_points(inputs):
    """Give queries 0-3 points exactly on the map's border and on the edge of its support.

    In pixels x = -0.5 and W - 0.5 (locations 0 and 1, the outer pixel centres), and x = -1 and
    x = W (one corner still inside with weight 0, and none). Exact in binary for
    power-of-two maps, so every backend takes the same side of each edge.
    """
    value, shapes, starts, locations, weights = inputs
    locations = locations.clone()
    h, w = shapes[:, 0].to(locations.dtype), shapes[:, 1].to(locations.dtype)  # (L,)
    xs = [torch.zeros_like(w), torch.ones_like(w), -0.5 / w, 1 + 0.5 / w]
    ys = [torch.ones_like(h), -0.5 / h, torch.zeros_like(h), 1 + 0.5 / h]
    for q, (x, y) in enumerate(zip(xs, ys, strict=True)):
        locations[:, q, :, :, 0, 0] = x  # (N, M, L) <- (L,)
        locations[:, q, :, :, 0, 1] = y
    return value, shapes, starts, locations, weights


def test_reference_case(op, msda_case):
    inputs = [msda_case[name] for name in INPUT_NAMES]
    actual = forward_backward(op, inputs, msda_case["grad_output"])
    expected = [msda_case[k] for k in ("output", "grad_value", "grad_sampling_locations")]
    expected.append(msda_case["grad_attention_weights"])
    assert_all_close(actual, expected, TOLERANCE[torch.float64])


def test_hand_computed(op):
    # One 2x2 map holding 1 2 / 3 4, one head, one channel, one point per query.
    value = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64).view(1, 4, 1, 1)
    shapes = torch.tensor([[2, 2]])
    xy = [[0.5, 0.5], [0.25, 0.25], [0.75, 0.25], [0.0, 0.25], [0.25, 1.0], [1.5, 0.5]]
    locations = torch.tensor(xy, dtype=torch.float64).view(1, len(xy), 1, 1, 1, 2)
    weights = torch.full((1, len(xy), 1, 1, 1), 2.0, dtype=torch.float64)
    output = op(value, shapes, torch.tensor([0]), locations, weights)
    # centre: mean; pixel centres: exact pixels; half a pixel off the edge: half a pixel; outside: 0
    expected = 2.0 * torch.tensor([2.5, 1.0, 2.0, 0.5, 1.5, 0.0], dtype=torch.float64)
    torch.testing.assert_close(output.view(-1), expected, rtol=0, atol=1e-12)


@requires_compiled
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tiny_matches_reference(dtype):
    inputs = make_inputs([(4, 5), (2, 3), (1, 1)], queries=7, points=3, dtype=dtype, margin=0.3)
    grad_output = torch.randn(2, 7, 2 * 4, dtype=dtype, generator=torch.Generator().manual_seed(1))
    assert_all_close(
        forward_backward(compiled_op, inputs, grad_output),
        forward_backward(ms_deform_attn_reference, inputs, grad_output),
        TOLERANCE[dtype],
    )


@requires_compiled
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_border_points_match_reference(dtype):
    inputs = with_border_points(make_inputs([(4, 8), (2, 4)], queries=5, dtype=dtype))
    grad_output = torch.randn(2, 5, 2 * 4, dtype=dtype, generator=torch.Generator().manual_seed(2))
    actual = forward_backward(compiled_op, inputs, grad_output)
    assert_all_close(
        actual,
        forward_backward(ms_deform_attn_reference, inputs, grad_output),
        TOLERANCE[dtype],
    )
    # x = W in pixels: no corner inside, so no gradient either
    assert actual[2][:, 3, :, :, 0].abs().sum() == 0


@requires_compiled
@pytest.mark.parametrize("queries", [5, 256], ids=["decoder", "encoder-slice"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_referformer_shapes_match_reference(queries, dtype):
    """5 frames, 8 heads x 32 channels, ReferFormer's 4 levels, 4 points."""
    inputs = make_inputs(
        ENCODER_SHAPES, batch=5, queries=queries, heads=8, channels=32, points=4, dtype=dtype
    )
    grad_output = torch.randn(5, queries, 256, dtype=dtype, generator=torch.Generator())
    assert_all_close(
        forward_backward(compiled_op, inputs, grad_output),
        forward_backward(ms_deform_attn_reference, inputs, grad_output),
        TOLERANCE[dtype],
    )


@requires_compiled
def test_backward_is_deterministic():
    """grad_value is accumulated by one owner per (batch, head): no races, same bits each run."""
    inputs = make_inputs(ENCODER_SHAPES[2:], batch=2, queries=64, heads=4, dtype=torch.float32)
    grad_output = torch.randn(2, 64, 16)
    first = forward_backward(compiled_op, inputs, grad_output)
    for _ in range(3):
        for a, b in zip(first, forward_backward(compiled_op, inputs, grad_output), strict=True):
            assert torch.equal(a, b)


def test_gradcheck(op):
    value, shapes, starts, locations, weights = make_inputs(
        [(3, 4), (2, 2)], batch=1, queries=2, channels=3, margin=0.2, seed=3
    )
    inputs = tuple(t.requires_grad_() for t in (value, locations, weights))
    assert torch.autograd.gradcheck(
        lambda v, loc, w: op(v, shapes, starts, loc, w), inputs, eps=1e-6, atol=1e-7
    )


def test_dispatch_casts_to_value_dtype():
    value, shapes, starts, locations, weights = make_inputs([(3, 4)], dtype=torch.float64)
    output = ms_deform_attn(value, shapes, starts, locations.float(), weights.float())
    assert output.dtype == torch.float64
    expected = ms_deform_attn_reference(
        value, shapes, starts, locations.float().double(), weights.float().double()
    )
    torch.testing.assert_close(output, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_on_cpu_is_computed_in_float32(use_backend, dtype):
    value, shapes, starts, locations, weights = make_inputs([(3, 4), (2, 2)], dtype=torch.float32)
    output = ms_deform_attn(value.to(dtype), shapes, starts, locations, weights)
    assert output.dtype == dtype
    rounded = value.to(dtype).float()  # what the op sees; the rest is float32 arithmetic
    expected = ms_deform_attn_reference(rounded, shapes, starts, locations, weights)
    torch.testing.assert_close(output, expected.to(dtype))


def break_input(case: str, inputs):
    """`inputs` with one precondition of the compiled op broken."""
    value, shapes, starts, locations, weights = inputs
    if case == "value_dims":
        value = value[0]
    elif case == "non_contiguous":
        locations = locations.transpose(0, 1).contiguous().transpose(0, 1)
    elif case == "mixed_dtype":
        weights = weights.float()
    elif case == "int32_shapes":
        shapes = shapes.int()
    elif case == "keys_mismatch":
        value = value[:, :-1].contiguous()
    elif case == "bad_start":
        starts = starts + 1
    elif case == "half_on_cpu":
        value, locations, weights = value.half(), locations.half(), weights.half()
    elif case == "weights_shape":
        weights = weights[..., :1].contiguous()
    return value, shapes, starts, locations, weights


@requires_compiled
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("value_dims", r"value must be \(N, S, M, D\)"),
        ("non_contiguous", "sampling_locations must be contiguous"),
        ("mixed_dtype", "must share one dtype"),
        ("int32_shapes", "must be int64"),
        ("keys_mismatch", "spatial_shapes hold 24 pixels but value has S = 23"),
        ("bad_start", r"level_start_index\[0\] is 1"),
        ("half_on_cpu", "CPU kernels support float32 and float64"),
        ("weights_shape", r"attention_weights must be \(N, Lq, M, L, P\)"),
    ],
)
def test_compiled_rejects_bad_inputs(case, message):
    inputs = break_input(case, make_inputs([(4, 5), (2, 2)], queries=2))
    with pytest.raises(RuntimeError, match=message):
        torch.ops.rvos.ms_deform_attn_forward(*inputs)


@requires_compiled
def test_compiled_rejects_bad_grad_output():
    inputs = make_inputs([(4, 5)], queries=2)
    with pytest.raises(RuntimeError, match=r"grad_output must be \(N, Lq, M \* D\)"):
        torch.ops.rvos.ms_deform_attn_backward(*inputs, torch.zeros(2, 2, 7, dtype=torch.float64))
