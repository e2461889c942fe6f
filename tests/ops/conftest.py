"""Shared helpers for the op tests: the reference case, random inputs, the two backends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from rvos.ops import function, ms_deform_attn_reference

COMMITTED = Path(__file__).parent / "fixtures"
ENCODER_SHAPES = [(45, 80), (23, 40), (12, 20), (6, 10)]  # ReferFormer's pyramid, 360x640 input


def shared_fixture_dir() -> Path:
    """$RVOS_SHARED_FIXTURES, else <repo>/../shared/fixtures."""
    env = os.environ.get("RVOS_SHARED_FIXTURES")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared/fixtures"


@pytest.fixture(scope="session")
def msda_case() -> dict[str, torch.Tensor]:
    """Inputs, output and gradients of Deformable-DETR's own reference (float64)."""
    for folder in (COMMITTED, shared_fixture_dir()):
        if (folder / "msda_case.pt").is_file():
            return torch.load(folder / "msda_case.pt", weights_only=True)
    pytest.skip("msda_case.pt not in tests/ops/fixtures, $RVOS_SHARED_FIXTURES or ../shared")


def compiled_available() -> bool:
    try:
        from rvos.ops import _C  # noqa: F401
    except ImportError:
        return False
    return True


def cuda_kernels_available() -> bool:
    if not (compiled_available() and torch.cuda.is_available()):
        return False
    from rvos.ops import _C

    return bool(_C.with_cuda)


requires_compiled = pytest.mark.skipif(
    not compiled_available(), reason="rvos.ops._C is not built (no C++ compiler at install?)"
)
requires_cuda = pytest.mark.skipif(
    not cuda_kernels_available(),
    reason="needs a CUDA device and rvos.ops._C built with CUDA kernels",
)


def compiled_op(*inputs: torch.Tensor) -> torch.Tensor:
    """The compiled op through its autograd Function, whatever backend() chose."""
    return function.MSDeformAttnFunction.apply(*inputs)


@pytest.fixture(
    params=[pytest.param("compiled", marks=requires_compiled), "reference"],
)
def op(request):
    """Each backend as a function with ms_deform_attn's signature."""
    return compiled_op if request.param == "compiled" else ms_deform_attn_reference


@pytest.fixture(params=[pytest.param("compiled", marks=requires_compiled), "reference"])
def use_backend(request, monkeypatch) -> str:
    """Make ms_deform_attn (and so MSDeformAttn) run on each backend in turn."""
    monkeypatch.setattr(function, "_backend", request.param)
    return request.param


def level_start_index(spatial_shapes: torch.Tensor) -> torch.Tensor:
    sizes = spatial_shapes.prod(1)
    return torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])


def make_inputs(
    spatial_shapes: list[tuple[int, int]],
    batch: int = 2,
    queries: int = 3,
    heads: int = 2,
    channels: int = 4,
    points: int = 2,
    dtype: torch.dtype = torch.float64,
    margin: float = 0.1,
    seed: int = 0,
) -> tuple[torch.Tensor, ...]:
    """Random (value, spatial_shapes, level_start_index, locations, weights).

    Locations are uniform in [-margin, 1 + margin], so some fall outside the map.
    """
    gen = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(spatial_shapes, dtype=torch.long)
    keys = int(shapes.prod(1).sum())
    levels = len(spatial_shapes)
    value = torch.randn(batch, keys, heads, channels, generator=gen, dtype=dtype)
    locations = torch.rand(batch, queries, heads, levels, points, 2, generator=gen, dtype=dtype)
    locations = locations * (1 + 2 * margin) - margin
    weights = torch.rand(batch, queries, heads, levels, points, generator=gen, dtype=dtype)
    weights = weights / weights.sum((-1, -2), keepdim=True)
    return value, shapes, level_start_index(shapes), locations, weights
