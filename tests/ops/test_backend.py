"""Backend choice: once, lazily, with one warning on fallback; RVOS_MSDA_BACKEND forces one."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

from rvos.ops import function

from .conftest import requires_compiled

REPORT_BACKEND = "import rvos.ops as ops; print(ops.backend())"


def run_python(code: str, backend: str) -> subprocess.CompletedProcess:
    env = os.environ | {"RVOS_MSDA_BACKEND": backend}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "backend", [pytest.param("compiled", marks=requires_compiled), "reference"]
)
def test_env_var_forces_backend(backend):
    result = run_python(REPORT_BACKEND, backend)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == backend


def test_env_var_bad_value_is_a_clear_error():
    result = run_python(REPORT_BACKEND, "cuda")
    assert result.returncode != 0
    assert "RVOS_MSDA_BACKEND='cuda': expected 'compiled' or 'reference'" in result.stderr


@pytest.fixture
def no_extension(monkeypatch):
    """As if rvos.ops._C were not built, with the backend not chosen yet."""
    monkeypatch.setitem(sys.modules, "rvos.ops._C", None)  # makes the import raise ImportError
    monkeypatch.setattr(function, "_backend", None)
    monkeypatch.delenv("RVOS_MSDA_BACKEND", raising=False)


@pytest.mark.usefixtures("no_extension")
def test_fallback_warns_once():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [function.backend() for _ in range(3)] == ["reference"] * 3
    assert len(caught) == 1
    assert "rvos.ops._C is not available" in str(caught[0].message)


@pytest.mark.usefixtures("no_extension")
def test_forced_compiled_without_extension_fails(monkeypatch):
    monkeypatch.setenv("RVOS_MSDA_BACKEND", "compiled")
    with pytest.raises(ImportError, match="RVOS_MSDA_BACKEND=compiled but rvos.ops._C"):
        function.backend()


CUDA_TOOLKIT = os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")


@pytest.mark.skipif(not os.path.exists(CUDA_TOOLKIT), reason="no CUDA toolkit on this machine")
@pytest.mark.skipif(os.environ.get("RVOS_BUILD_EXT") == "cpu", reason="CPU-only build requested")
def test_install_compiled_the_cuda_kernels():
    """Where nvcc exists the install must build the CUDA kernels, so CI catches their errors."""
    import importlib

    assert importlib.import_module("rvos.ops._C").with_cuda
