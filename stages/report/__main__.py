"""The results table and chart: one row (bar) per method/backbone and trivial baseline."""

import argparse
import json
from pathlib import Path

from rvos.config import load_params
from rvos.engine.tracking import start_run
from rvos.io import write_text
from rvos.report import results_chart, results_table
from rvos.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", type=Path, required=True, help="evaluate metrics directory")
    parser.add_argument("--out", type=Path, required=True, help="Markdown table to write")
    parser.add_argument("--chart", type=Path, required=True, help="PNG bar chart to write")
    args = parser.parse_args()
    reports = [json.loads(p.read_text()) for p in sorted(args.metrics.glob("*.json"))]
    write_text(args.out, results_table(reports))
    results_chart(reports, args.chart)
    experiment = load_params().base.experiment
    with start_run(
        experiment=experiment, stage="report", dataset="all", method="all", params={}
    ) as tracker:
        tracker.log_artifact(args.out)
        tracker.log_artifact(args.chart)


if __name__ == "__main__":
    run_stage(main)
