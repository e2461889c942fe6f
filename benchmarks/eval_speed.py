"""Check rvos's J&F on a case against its reference numbers, and time it side by side.

    python benchmarks/eval_speed.py [--case NPZ --reference JSON] [--repeats 7] [--workers 1]

A case is an .npz of masks `gt_<name>` / `pred_<name>` (T, H, W), one pair per sequence,
and a JSON in the layout of tests/eval/fixtures/jf_case.json: under "sequences", per
name, the per-frame "J" and "F" lists and "J_mean", "J_recall", "J_decay", "F_mean",
"F_recall", "F_decay"; at the top "J_mean", "F_mean" and "JF_mean" over the sequences
(each one object). The default case is tests/eval/fixtures/jf_case.*, else the one in
$RVOS_SHARED_FIXTURES or <repo>/../shared/fixtures; --reference defaults to the case's
name with .json.

Prints the largest absolute difference of rvos's per-frame J, per-frame F, per-sequence
statistics and top-level means from the reference (exit status 1 above --tolerance),
then the time of rvos (`score_expression` per sequence) and of the step-by-step oracle
(tests/eval/davis_oracle.py) on the masks already in memory, interleaved, as the median
of --repeats, and their ratio: absolute times vary 20-35% between runs on the shared
machines, the ratio less. --workers N > 1 also times rvos with the sequences spread over
N forked processes (started beforehand; they inherit the masks). With $DAVIS2017_EVAL
pointing to a davisvideochallenge/davis2017-evaluation checkout (scikit-image
importable), the official functions are timed as well.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from rvos.eval.davis import score_expression

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "eval"))
import davis_oracle  # noqa: E402  (test helper, not part of the package)

STATS = ("J_mean", "J_recall", "J_decay", "F_mean", "F_recall", "F_decay")
MEANS = ("J_mean", "F_mean", "JF_mean")
CASES: list[tuple[np.ndarray, np.ndarray]] = []  # inherited by forked workers


def default_case() -> Path:
    shared = os.environ.get("RVOS_SHARED_FIXTURES")
    folders = [
        REPO / "tests/eval/fixtures",
        Path(shared) if shared else REPO.parent / "shared/fixtures",
    ]
    for folder in folders:
        if (folder / "jf_case.npz").is_file():
            return folder / "jf_case.npz"
    sys.exit(f"jf_case.npz not found in {', '.join(map(str, folders))}; pass --case")


def load(
    case: Path, reference: Path
) -> tuple[list[str], list[tuple[np.ndarray, np.ndarray]], dict]:
    expected = json.loads(reference.read_text())
    names = list(expected["sequences"])
    with np.load(case) as data:
        missing = [n for n in names if f"gt_{n}" not in data.files or f"pred_{n}" not in data.files]
        if missing:
            sys.exit(f"{case} has no gt_/pred_ masks for sequences {missing} of {reference}")
        return names, [(data[f"gt_{n}"], data[f"pred_{n}"]) for n in names], expected


def difference(ours, theirs) -> float:
    """Largest |ours - theirs|; NaN against NaN counts as equal, against a number as inf."""
    a, b = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    both_nan = np.isnan(a) & np.isnan(b)
    gaps = np.where(both_nan, 0.0, np.abs(a - b))
    return float(np.max(np.where(np.isnan(gaps), np.inf, gaps), initial=0.0))


def compare(names: list[str], scores: list[dict], expected: dict) -> dict[str, float]:
    worst = {"per-frame J": 0.0, "per-frame F": 0.0, "sequence statistics": 0.0, "means": 0.0}
    for name, ours in zip(names, scores, strict=True):
        seq = expected["sequences"][name]
        worst["per-frame J"] = max(worst["per-frame J"], difference(ours["J"], seq["J"]))
        worst["per-frame F"] = max(worst["per-frame F"], difference(ours["F"], seq["F"]))
        for key in (k for k in STATS if k in seq):
            worst["sequence statistics"] = max(
                worst["sequence statistics"], difference(ours[key], seq[key])
            )
    j_mean = np.mean([s["J_mean"] for s in scores])
    f_mean = np.mean([s["F_mean"] for s in scores])
    ours = {"J_mean": j_mean, "F_mean": f_mean, "JF_mean": (j_mean + f_mean) / 2}
    for key in (k for k in MEANS if k in expected):
        worst["means"] = max(worst["means"], difference(ours[key], expected[key]))
    return worst


def rvos_sequence(index: int) -> dict:
    return score_expression(*CASES[index])


def official_functions():
    """A per-sequence scorer built from davis2017-evaluation, or None without $DAVIS2017_EVAL."""
    root = os.environ.get("DAVIS2017_EVAL")
    if not root:
        return None
    if not (Path(root) / "davis2017/metrics.py").is_file():
        sys.exit(f"DAVIS2017_EVAL={root} has no davis2017/metrics.py")
    sys.path.insert(0, root)
    from davis2017.metrics import db_eval_boundary, db_eval_iou
    from davis2017.utils import db_statistics

    def score(gt, pred):
        j, f = db_eval_iou(gt, pred), db_eval_boundary(gt, pred)
        return db_statistics(j), db_statistics(f)

    return score


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=Path, default=None, help="masks .npz (default: jf_case)")
    parser.add_argument("--reference", type=Path, default=None, help="numbers .json")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--workers", type=int, default=1, help="also time rvos in N processes")
    parser.add_argument("--tolerance", type=float, default=1e-6)
    args = parser.parse_args()

    case = args.case or default_case()
    reference = args.reference or case.with_suffix(".json")
    names, masks, expected = load(case, reference)
    CASES.extend(masks)
    frames = sum(len(gt) for gt, _ in masks)
    sizes = ", ".join(f"{h}x{w}" for h, w in sorted({gt.shape[1:] for gt, _ in masks}))
    print(f"case: {case} ({len(names)} sequences, {frames} frames of {sizes})")

    scores = [rvos_sequence(i) for i in range(len(masks))]
    worst = compare(names, scores, expected)
    ok = all(value <= args.tolerance for value in worst.values())
    print(f"largest |difference| from {reference.name}:")
    for what, value in worst.items():
        print(f"  {what:<20} {value:.3g}")
    print(f"  {'OK' if ok else 'FAILED'} (tolerance {args.tolerance:g})")

    runners = {
        "rvos": lambda: [rvos_sequence(i) for i in range(len(masks))],
        "oracle": lambda: [davis_oracle.score_sequence(gt, pred) for gt, pred in masks],
    }
    official = official_functions()
    if official is not None:
        runners["official"] = lambda: [official(gt, pred) for gt, pred in masks]
    pool = None
    if args.workers > 1:
        pool = multiprocessing.get_context("fork").Pool(args.workers)
        pooled = pool.map(rvos_sequence, range(len(masks)), chunksize=1)
        same = all(
            np.array_equal(a[k], b[k]) for a, b in zip(pooled, scores, strict=True) for k in "JF"
        )
        if not same:
            sys.exit("rvos in worker processes gave other numbers than in this one")
        runners[f"rvos, {args.workers} workers"] = lambda: pool.map(
            rvos_sequence, range(len(masks)), chunksize=1
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the official J divides 0 by 0 on empty frames
        for run in runners.values():
            run()  # warm up imports and caches
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.repeats):
            for name, run in runners.items():
                times[name].append(timed(run))
    if pool is not None:
        pool.close()

    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"time for all {frames} frames (J, F and statistics), median of {args.repeats}:")
    for name, seconds in median.items():
        line = f"  {name:<18} {1e3 * seconds:8.1f} ms  ({1e3 * seconds / frames:.3f} ms/frame)"
        if name.startswith("rvos"):
            line += f"   {median['oracle'] / seconds:5.1f}x faster than the oracle"
            if "official" in median:
                line += f", {median['official'] / seconds:5.1f}x than the official code"
        print(line)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
