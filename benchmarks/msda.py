"""Compiled multi-scale deformable attention against the PyTorch reference, side by side.

    python benchmarks/msda.py [--repeats 7] [--threads 2] [--shapes encoder decoder]
    python benchmarks/msda.py --case CASE.pt     # check both backends against a case file

A case file has the layout of tests/ops/fixtures/msda_case.pt: the op's inputs, `output`,
`grad_output` and the three gradients it produces; the largest error of each backend is
printed, and the exit status is 1 when one exceeds --tolerance.

Shapes are ReferFormer's on CPU in float32: 5 frames, 8 heads x 32 channels, levels 45x80,
23x40, 12x20, 6x10, 4 points; the encoder has Lq = 4780 queries, the decoder Lq = 5. Forward
and forward+backward runs of both backends are interleaved and the ratio of the medians is
printed: absolute times vary 20-35% between runs on shared machines, the ratio less. Peak
memory is each backend's growth of the peak RSS over its inputs, measured in a fresh child
process (one run there), since memory freed earlier would hide it in this one (Linux only).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time

import torch

from rvos.ops import function, ms_deform_attn_reference

LEVELS = [(45, 80), (23, 40), (12, 20), (6, 10)]
QUERIES = {"encoder": 4780, "decoder": 5}
BACKENDS = {"compiled": function.MSDeformAttnFunction.apply, "reference": ms_deform_attn_reference}
MODES = ("forward", "forward+backward")


def make_inputs(queries: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)."""
    gen = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(LEVELS)
    sizes = shapes.prod(1)
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    batch, heads, channels, points = 5, 8, 32, 4
    value = torch.randn(batch, int(sizes.sum()), heads, channels, generator=gen)
    locations = torch.rand(batch, queries, heads, len(LEVELS), points, 2, generator=gen)
    weights = torch.rand(batch, queries, heads, len(LEVELS), points, generator=gen)
    weights /= weights.sum((-1, -2), keepdim=True)
    return value, shapes, starts, locations, weights


def run_once(op, inputs, mode: str) -> None:
    value, shapes, starts, locations, weights = inputs
    if mode == "forward":
        with torch.no_grad():
            op(value, shapes, starts, locations, weights)
        return
    leaves = [t.detach().requires_grad_() for t in (value, locations, weights)]
    output = op(leaves[0], shapes, starts, leaves[1], leaves[2])
    output.backward(torch.ones_like(output))


def peak_rss_growth_mb(backend: str, shape: str, mode: str, threads: int) -> float:
    """Peak-RSS growth of one run, in a child process that starts from its inputs alone."""
    command = [sys.executable, __file__, "--child", backend, shape, mode, "--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"memory probe failed: {' '.join(command)}\n{result.stderr}")
    return float(result.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not getrusage: Linux carries ru_maxrss over from the
    parent into a child, VmHWM starts afresh with the child's address space."""
    with open("/proc/self/status") as status:
        return int(re.search(r"VmHWM:\s+(\d+) kB", status.read()).group(1)) / 1024


def child(backend: str, shape: str, mode: str) -> None:
    inputs = make_inputs(QUERIES[shape])
    before = peak_rss_mb()
    run_once(BACKENDS[backend], inputs, mode)
    print(peak_rss_mb() - before)


CASE_GRADS = ("value", "sampling_locations", "attention_weights")


def check_case(path: str, tolerance: float) -> bool:
    """Print each backend's largest error against a case file; True when all are in tolerance."""
    case = torch.load(path, map_location="cpu", weights_only=True)
    ok = True
    for name, op in BACKENDS.items():
        leaves = {k: case[k].detach().clone().requires_grad_() for k in CASE_GRADS}
        output = op(
            leaves["value"],
            case["spatial_shapes"],
            case["level_start_index"],
            leaves["sampling_locations"],
            leaves["attention_weights"],
        )
        output.backward(case["grad_output"].to(output.dtype))
        errors = {"output": (output - case["output"]).abs().max().item()}
        for k in CASE_GRADS:
            errors[f"grad_{k}"] = (leaves[k].grad - case[f"grad_{k}"]).abs().max().item()
        worst = max(errors.values())
        ok &= worst <= tolerance
        cells = "  ".join(f"{k} {v:.2e}" for k, v in errors.items())
        print(f"{name:9} {cells}  {'ok' if worst <= tolerance else 'FAIL'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shapes", nargs="+", choices=list(QUERIES), default=list(QUERIES))
    parser.add_argument("--case", help="check both backends against this case file")
    parser.add_argument("--tolerance", type=float, default=1e-10, help="for --case")
    parser.add_argument(
        "--child", nargs=3, metavar=("BACKEND", "SHAPE", "MODE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if function.backend() != "compiled":  # also loads the extension
        sys.exit("rvos.ops._C is not built: nothing to compare the reference with")
    if args.child:
        child(*args.child)
        return
    if args.case:
        sys.exit(0 if check_case(args.case, args.tolerance) else 1)

    print(f"torch {torch.__version__}, {args.threads} threads, float32, median of {args.repeats}")
    print(
        f"{'shape':8} {'mode':17} {'compiled':>10} {'reference':>10} {'speed-up':>9} "
        f"{'peak MB compiled':>17} {'reference':>10}"
    )
    for shape in args.shapes:
        inputs = make_inputs(QUERIES[shape])
        for mode in MODES:
            times = {name: [] for name in BACKENDS}
            for op in BACKENDS.values():  # warm-up
                run_once(op, inputs, mode)
            for _ in range(args.repeats):
                for name, op in BACKENDS.items():
                    start = time.perf_counter()
                    run_once(op, inputs, mode)
                    times[name].append(time.perf_counter() - start)
            median = {name: statistics.median(t) for name, t in times.items()}
            peak = {name: peak_rss_growth_mb(name, shape, mode, args.threads) for name in BACKENDS}
            speedup = median["reference"] / median["compiled"]
            print(
                f"{shape:8} {mode:17} {median['compiled'] * 1e3:8.1f}ms "
                f"{median['reference'] * 1e3:8.1f}ms {speedup:8.1f}x "
                f"{peak['compiled']:17.0f} {peak['reference']:10.0f}"
            )


if __name__ == "__main__":
    main()
