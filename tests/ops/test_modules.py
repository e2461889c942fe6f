"""MSDeformAttn: shapes, gradients to every parameter, padding, Deformable-DETR's initialisation."""

from __future__ import annotations

import pytest
import torch

from rvos.ops import MSDeformAttn

from .conftest import level_start_index

SHAPES = torch.tensor([(6, 8), (3, 4)])
KEYS = 60


def layer_inputs(ref_dim: int, seed: int = 0):
    """(query (2, 5, 32), reference_points (2, 5, 2, ref_dim), value (2, 60, 32), padding mask)."""
    gen = torch.Generator().manual_seed(seed)
    query = torch.randn(2, 5, 32, generator=gen, requires_grad=True)
    reference_points = torch.rand(2, 5, 2, ref_dim, generator=gen)
    value = torch.randn(2, KEYS, 32, generator=gen, requires_grad=True)
    padding_mask = torch.zeros(2, KEYS, dtype=torch.bool)
    padding_mask[1, 40:] = True
    return query, reference_points, value, padding_mask


@pytest.mark.parametrize("ref_dim", [2, 4], ids=["points", "boxes"])
def test_forward_backward(use_backend, ref_dim):
    torch.manual_seed(0)
    layer = MSDeformAttn(d_model=32, n_levels=2, n_heads=4, n_points=3)
    query, reference_points, value, padding_mask = layer_inputs(ref_dim)
    output = layer(query, reference_points, value, SHAPES, level_start_index(SHAPES), padding_mask)
    assert output.shape == (2, 5, 32)
    output.square().sum().backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, name
    assert torch.isfinite(query.grad).all() and torch.isfinite(value.grad).all()


def test_padding_is_ignored(use_backend):
    torch.manual_seed(0)
    layer = MSDeformAttn(d_model=32, n_levels=2, n_heads=4, n_points=3)
    query, reference_points, value, padding_mask = layer_inputs(2)
    starts = level_start_index(SHAPES)
    before = layer(query, reference_points, value, SHAPES, starts, padding_mask)
    changed = value.detach().clone()
    changed[padding_mask] = 100.0
    after = layer(query, reference_points, changed, SHAPES, starts, padding_mask)
    torch.testing.assert_close(after, before)


def test_initialisation():
    layer = MSDeformAttn(d_model=32, n_levels=2, n_heads=4, n_points=3)
    offsets = layer.sampling_offsets.bias.detach().view(4, 2, 3, 2)
    # head h points along angle 2*pi*h/4; point p sits p + 1 steps out; same on every level
    directions = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    expected = directions[:, None, None, :] * torch.tensor([1.0, 2.0, 3.0])[None, None, :, None]
    torch.testing.assert_close(offsets, expected.expand(-1, 2, -1, -1), atol=1e-6, rtol=0)
    # uniform attention over the samples at first
    assert layer.attention_weights.weight.abs().sum() == 0
    assert layer.attention_weights.bias.abs().sum() == 0
    assert layer.sampling_offsets.weight.abs().sum() == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="not divisible"):
        MSDeformAttn(d_model=30, n_heads=8)
    layer = MSDeformAttn(d_model=32, n_levels=2, n_heads=4, n_points=3)
    query, _, value, _ = layer_inputs(2)
    with pytest.raises(ValueError, match="must end in 2 .* or 4"):
        layer(query, torch.rand(2, 5, 2, 3), value, SHAPES, level_start_index(SHAPES))
