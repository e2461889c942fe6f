"""`ms_deform_attn`: the compiled op when it is built, else the PyTorch reference.

The backend is chosen once, on first use: `compiled` when the extension `rvos.ops._C` imports,
otherwise `reference` with one warning. RVOS_MSDA_BACKEND=compiled|reference forces one (a
forced `compiled` that cannot load is an error, never a silent fallback).
"""

from __future__ import annotations

import importlib
import os
import warnings

import torch
from torch.autograd.function import once_differentiable

from rvos.ops.reference import ms_deform_attn_reference

BACKENDS = ("compiled", "reference")
ENV_VAR = "RVOS_MSDA_BACKEND"
EXTENSION = "rvos.ops._C"  # importing it registers torch.ops.rvos.*

_backend: str | None = None


def backend() -> str:
    """The backend `ms_deform_attn` uses: "compiled" or "reference", fixed at first call."""
    global _backend
    if _backend is None:
        _backend = _choose_backend()
    return _backend


def _choose_backend() -> str:
    forced = os.environ.get(ENV_VAR, "")
    if forced not in ("", *BACKENDS):
        raise ValueError(f"{ENV_VAR}={forced!r}: expected 'compiled' or 'reference', or unset")
    if forced == "reference":
        return "reference"
    try:
        importlib.import_module(EXTENSION)
    except ImportError as err:
        if forced == "compiled":
            raise ImportError(
                f"{ENV_VAR}=compiled but rvos.ops._C does not import ({err}); rebuild it with "
                "`pip install --no-build-isolation -e .` (needs a C++ compiler)"
            ) from err
        warnings.warn(
            f"rvos.ops._C is not available ({err}); multi-scale deformable attention uses the "
            "slower PyTorch reference. To build it, reinstall where a C++ compiler is found: "
            "`pip install --no-build-isolation -e .`",
            RuntimeWarning,
            stacklevel=3,
        )
        return "reference"
    return "compiled"


class MSDeformAttnFunction(torch.autograd.Function):
    """Autograd around torch.ops.rvos.ms_deform_attn_{forward,backward} (contiguous inputs)."""

    @staticmethod
    def forward(
        ctx, value, spatial_shapes, level_start_index, sampling_locations, attention_weights
    ):
        inputs = (value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        ctx.save_for_backward(*inputs)
        return torch.ops.rvos.ms_deform_attn_forward(*inputs)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        grad_value, grad_locations, grad_weights = torch.ops.rvos.ms_deform_attn_backward(
            *ctx.saved_tensors, grad_output.contiguous()
        )
        return grad_value, None, None, grad_locations, grad_weights


def ms_deform_attn(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Multi-scale deformable attention on the chosen backend.

    Shapes as in `ms_deform_attn_reference`: value (N, S, M, D), spatial_shapes (L, 2) int64,
    level_start_index (L,) int64, sampling_locations (N, Lq, M, L, P, 2) in [0, 1],
    attention_weights (N, Lq, M, L, P); returns (N, Lq, M * D). Locations and weights are cast
    to value's dtype (under autocast they often arrive in float32 beside a float16 value). The
    CPU kernels compute half and bfloat16 inputs in float32 and return value's dtype.
    """
    if not value.is_cuda and value.dtype in (torch.float16, torch.bfloat16):
        output = ms_deform_attn(
            value.float(),
            spatial_shapes,
            level_start_index,
            sampling_locations.float(),
            attention_weights.float(),
        )
        return output.to(value.dtype)
    sampling_locations = sampling_locations.to(value.dtype)
    attention_weights = attention_weights.to(value.dtype)
    if backend() == "reference":
        return ms_deform_attn_reference(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights
        )
    if value.is_cuda and not importlib.import_module(EXTENSION).with_cuda:
        raise RuntimeError(
            "rvos.ops._C was built without CUDA kernels (no CUDA toolkit at install time): "
            "reinstall with CUDA_HOME set, or set RVOS_MSDA_BACKEND=reference"
        )
    return MSDeformAttnFunction.apply(
        value.contiguous(),
        spatial_shapes.contiguous(),
        level_start_index.contiguous(),
        sampling_locations.contiguous(),
        attention_weights.contiguous(),
    )
