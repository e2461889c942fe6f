"""Does `rvos predict` run in memory that stays flat as the video gets longer?

    python benchmarks/predict_memory.py [--frames 100 1000] [--size 360 640] [--variant NAME]

Builds params.yaml's model (or a variant's) with random weights and saves it as a checkpoint,
writes MP4 videos of moving shapes with the given frame counts, and runs `rvos predict` on each
in a fresh process with two sentences. Prints each run's peak resident memory and time, and the
ratio of peak memory between the longest and the shortest video: about 1 means memory does not
grow with the video's length.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from rvos.config import load_params, to_dict
from rvos.engine.checkpoint import save_checkpoint
from rvos.models.build import build_model

CHILD = """
import resource, sys
from rvos.cli import main
status = main(sys.argv[1:])
print("PEAK_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(status)
"""


def write_video(path: Path, frames: int, height: int, width: int) -> None:
    """A square and a disc crossing a grey background: cheap to make at any length."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24, (width, height))
    for t in range(frames):
        image = np.full((height, width, 3), 90, np.uint8)
        x = int((t * 3) % (width - 40))
        cv2.rectangle(image, (x, height // 4), (x + 40, height // 4 + 40), (40, 40, 220), -1)
        cv2.circle(image, (width - 20 - x, 3 * height // 4), 20, (40, 200, 40), -1)
        writer.write(image)
    writer.release()


def run_predict(video: Path, checkpoint: Path, out: Path) -> tuple[int, float]:
    """(peak resident KiB, seconds) of one `rvos predict` process."""
    args = ["--video", str(video), "--checkpoint", str(checkpoint), "--out", str(out)]
    args += ["--text", "the red square", "--text", "the green circle", "--device", "cpu"]
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, "predict", *args], capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"rvos predict failed:\n{done.stderr[-2000:]}")
    peak = next(line for line in done.stderr.splitlines() if line.startswith("PEAK_KIB"))
    return int(peak.split()[1]), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--size", type=int, nargs=2, default=[360, 640], metavar=("H", "W"))
    parser.add_argument("--variant", help="params.yaml variants.<name> (default: the main model)")
    args = parser.parse_args()
    params = load_params(variant=args.variant)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model, _ = build_model(params.model)
        checkpoint = scratch / "model.pt"
        save_checkpoint(checkpoint, model=model.state_dict(), config=to_dict(params))
        rows = []
        for count in args.frames:
            video = scratch / f"video_{count}.mp4"
            write_video(video, count, *args.size)
            peak, seconds = run_predict(video, checkpoint, scratch / f"out_{count}")
            rows.append({"frames": count, "peak_mib": peak / 1024, "seconds": seconds})
            print(f"{count:>6} frames: peak {peak / 1024:8.1f} MiB, {seconds:7.1f} s")
        ratio = rows[-1]["peak_mib"] / rows[0]["peak_mib"]
        print(f"peak memory ratio {rows[-1]['frames']} / {rows[0]['frames']} frames: {ratio:.3f}")
        print(json.dumps({"method": params.model.method, "size": args.size, "runs": rows}))


if __name__ == "__main__":
    main()
