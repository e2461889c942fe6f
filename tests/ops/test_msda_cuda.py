"""The CUDA kernels against the CPU kernels in float64; skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

from rvos.ops import MSDeformAttn, function

from .conftest import ENCODER_SHAPES, compiled_op, level_start_index, make_inputs, requires_cuda
from .test_msda import assert_all_close, forward_backward

pytestmark = requires_cuda

# Relative to each tensor's scale. float16 / bfloat16 round inputs and results, but the
# kernels accumulate in float32, so the error stays at the format's rounding.
TOLERANCE = {
    torch.float64: 1e-10,
    torch.float32: 1e-5,
    torch.float16: 1e-2,
    torch.bfloat16: 5e-2,
}


def to(inputs, device, dtype):
    return [t.to(device, dtype) if t.is_floating_point() else t.to(device) for t in inputs]


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
@pytest.mark.parametrize("queries", [5, 256], ids=["decoder", "encoder-slice"])
def test_cuda_matches_cpu(dtype, queries):
    inputs = make_inputs(ENCODER_SHAPES, batch=2, queries=queries, heads=8, channels=32, points=4)
    grad_output = torch.randn(2, queries, 256, dtype=torch.float64)
    # The CPU result in float64 on the very inputs the GPU sees, rounded to dtype.
    rounded = to(inputs, "cpu", dtype)
    expected = forward_backward(
        compiled_op, to(rounded, "cpu", torch.float64), grad_output.to(dtype).double()
    )
    actual = forward_backward(
        compiled_op, to(rounded, "cuda", dtype), grad_output.to("cuda", dtype)
    )
    assert all(t.dtype == dtype for t in actual)
    assert_all_close([t.cpu().double() for t in actual], expected, TOLERANCE[dtype])


def test_cuda_gradcheck():
    value, shapes, starts, locations, weights = to(
        make_inputs([(3, 4), (2, 2)], batch=1, queries=2, channels=3, margin=0.2, seed=3),
        "cuda",
        torch.float64,
    )
    inputs = tuple(t.requires_grad_() for t in (value, locations, weights))
    # grad_value's atomics add in a varying order: repeated backwards differ by rounding.
    assert torch.autograd.gradcheck(
        lambda v, loc, w: compiled_op(v, shapes, starts, loc, w),
        inputs,
        eps=1e-6,
        atol=1e-7,
        nondet_tol=1e-12,
    )


def test_cuda_layer_in_half_precision(monkeypatch):
    """The layer under autocast: float16 value with float32 reference points."""
    monkeypatch.setattr(function, "_backend", "compiled")
    shapes = torch.tensor(ENCODER_SHAPES, device="cuda")
    layer = MSDeformAttn().cuda()
    query = torch.randn(2, 5, 256, device="cuda")
    value = torch.randn(2, int(shapes.prod(1).sum()), 256, device="cuda")
    reference_points = torch.rand(2, 5, 4, 2, device="cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        output = layer(query, reference_points, value, shapes, level_start_index(shapes))
    output.float().sum().backward()
    assert output.dtype == torch.float16 and torch.isfinite(output).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


def test_cuda_rejects_inputs_on_two_devices():
    value, shapes, starts, locations, weights = make_inputs([(4, 5)], queries=2)
    with pytest.raises(RuntimeError, match="sampling_locations is on cpu but value is on cuda"):
        torch.ops.rvos.ms_deform_attn_forward(
            value.cuda(), shapes.cuda(), starts.cuda(), locations, weights.cuda()
        )
