"""Build the compiled op `rvos.ops._C`; everything else about the package is in pyproject.toml.

The extension always holds the C++ CPU kernels, and the CUDA kernels too whenever a CUDA
toolkit is found ($CUDA_HOME, $CUDA_PATH, /usr/local/cuda, then the nvcc on PATH). With no
C++ compiler (or no torch in the build environment) the install goes on without it and
`rvos.ops` falls back to the PyTorch reference; once a compiler is there, a compile error
fails the install, so CI catches it. TORCH_CUDA_ARCH_LIST defaults to Ampere and Hopper
(8.0;9.0). RVOS_BUILD_EXT: unset builds what it can; 1 makes a missing extension an error;
cpu leaves the CUDA kernels out (a quick local build); 0 skips the extension.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
CSRC = Path("rvos/ops/csrc")  # relative: setuptools wants source paths relative to setup.py
DEFAULT_CUDA_ARCHS = "8.0;9.0"
BUILD_MODES = ("", "0", "1", "cpu")


def find_cuda_home() -> str | None:
    """A CUDA toolkit with nvcc and its headers.

    Checked here rather than left to torch, whose guess from a wrapper script such as
    /usr/local/bin/nvcc is /usr/local, which fails at link time (cannot find -lcudart).
    """
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parent.parent))
    for home in map(Path, filter(None, candidates)):
        if (home / "bin/nvcc").is_file() and (home / "include/cuda_runtime.h").is_file():
            return str(home)
    return None


def nvidia_wheel_includes() -> list[str]:
    """Headers of the CUDA libraries that torch's wheels ship (cusparse.h, cublas_v2.h, ...).

    A bare toolkit may lack them while ATen's CUDA headers include them.
    """
    spec = importlib.util.find_spec("nvidia")
    roots = spec.submodule_search_locations if spec and spec.submodule_search_locations else []
    return sorted(
        str(p) for root in roots for p in Path(root).glob("cu[0-9]*/include") if p.is_dir()
    )


def skip(reason: str) -> tuple[list, dict]:
    """No extension: fatal under RVOS_BUILD_EXT=1, a loud note otherwise."""
    if os.environ.get("RVOS_BUILD_EXT") == "1":
        raise RuntimeError(f"RVOS_BUILD_EXT=1 but rvos.ops._C cannot be built: {reason}")
    print(
        f"WARNING: building rvos without rvos.ops._C ({reason}); multi-scale deformable "
        "attention will use the slower PyTorch reference.",
        file=sys.stderr,
    )
    return [], {}


def extensions() -> tuple[list, dict]:
    """(ext_modules, cmdclass) for setup()."""
    mode = os.environ.get("RVOS_BUILD_EXT", "")
    if mode not in BUILD_MODES:
        raise ValueError(f"RVOS_BUILD_EXT={mode!r}: expected one of 0, 1, cpu, or unset")
    if mode == "0":
        return [], {}
    if importlib.util.find_spec("torch") is None:
        return skip("torch is not importable here; install with --no-build-isolation")
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        return skip("no C++ compiler found")

    cuda_home = None if mode == "cpu" else find_cuda_home()
    if cuda_home:
        # torch.utils.cpp_extension reads CUDA_HOME when first imported.
        os.environ["CUDA_HOME"] = cuda_home
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
    # ninja compiles in parallel; a venv's pip run without activating it has it off PATH.
    scripts = str(Path(sys.executable).parent)
    if shutil.which("ninja") is None and shutil.which("ninja", path=scripts):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
    from torch.utils import cpp_extension

    sources = [str(CSRC / "bindings.cpp"), str(CSRC / "cpu/ms_deform_attn_cpu.cpp")]
    include_dirs = [str(ROOT / CSRC)]
    # -fopenmp-simd enables only the `omp simd` loop pragmas: no OpenMP runtime is linked.
    compile_args = {"cxx": ["-O3", "-fopenmp-simd"]}
    if cuda_home:
        print(f"rvos.ops._C: CPU and CUDA kernels, CUDA_HOME={cuda_home}", file=sys.stderr)
        extension = cpp_extension.CUDAExtension(
            "rvos.ops._C",
            sources + [str(CSRC / "cuda/ms_deform_attn_cuda.cu")],
            include_dirs=include_dirs + nvidia_wheel_includes(),
            define_macros=[("WITH_CUDA", None)],
            extra_compile_args=compile_args | {"nvcc": ["-O3"]},
        )
    else:
        why = "RVOS_BUILD_EXT=cpu" if mode == "cpu" else "no CUDA toolkit found"
        print(f"rvos.ops._C: CPU kernels only ({why})", file=sys.stderr)
        extension = cpp_extension.CppExtension(
            "rvos.ops._C", sources, include_dirs=include_dirs, extra_compile_args=compile_args
        )
    return [extension], {"build_ext": cpp_extension.BuildExtension}


ext_modules, cmdclass = extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
