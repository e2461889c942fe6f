"""The results table: one row per method/backbone (and the trivial baselines)."""

import argparse
import json
from pathlib import Path

from rvos.config import load_params
from rvos.engine.tracking import start_run
from rvos.io import write_text
from rvos.report import results_table
from rvos.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", type=Path, required=True, help="evaluate metrics directory")
    parser.add_argument("--out", type=Path, required=True, help="Markdown table to write")
    args = parser.parse_args()
    reports = [json.loads(p.read_text()) for p in sorted(args.metrics.glob("*.json"))]
    write_text(args.out, results_table(reports))
    experiment = load_params().base.experiment
    with start_run(
        experiment=experiment, stage="report", dataset="all", method="all", params={}
    ) as tracker:
        tracker.log_artifact(args.out)


if __name__ == "__main__":
    run_stage(main)
