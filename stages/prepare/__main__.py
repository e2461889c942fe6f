"""Validate a dataset as shipped and write its sample index under data/prepared/."""

import argparse
import logging
from pathlib import Path

from rvos.config import load_params, to_dict
from rvos.data.prepare import PREPARERS, check_root
from rvos.engine.tracking import flatten, start_run
from rvos.io import write_json
from rvos.stage import run_stage

log = logging.getLogger("stages.prepare")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", choices=sorted(PREPARERS))
    parser.add_argument("--out", type=Path, required=True, help="prepared index directory")
    parser.add_argument("--metrics", type=Path, required=True, help="counts and skipped items")
    args = parser.parse_args()
    params = load_params()
    check_root(params, args.dataset)  # before anything is written
    data = to_dict(getattr(params.data, args.dataset))
    with start_run(
        experiment=params.base.experiment,
        stage="prepare",
        dataset=args.dataset,
        method="none",
        params={"data": {args.dataset: data}},
    ) as tracker:
        report = PREPARERS[args.dataset](params, args.out)
        write_json(args.metrics, report)
        counts = {k: v for k, v in flatten(report["counts"]).items() if not isinstance(v, bool)}
        tracker.log_metrics({**counts, "skipped": report["skipped"]})
        tracker.log_artifact(args.metrics)
    log.info("%s prepared: %s; %d skipped", args.dataset, report["counts"], report["skipped"])


if __name__ == "__main__":
    run_stage(main)
