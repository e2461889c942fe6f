"""Generate the bundled demo datasets in their real on-disk formats."""

import argparse
import logging
from dataclasses import asdict
from pathlib import Path

from rvos.config import load_params
from rvos.data.demo import write_refcoco, write_ytvos
from rvos.data.demo_a2d import write_a2d
from rvos.data.demo_davis import write_davis
from rvos.data.demo_jhmdb import write_jhmdb
from rvos.data.demo_mevis import write_mevis
from rvos.engine.tracking import flatten, start_run
from rvos.stage import run_stage

log = logging.getLogger("stages.demo_data")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="demo data root")
    args = parser.parse_args()
    params = load_params()
    demo = params.demo
    with start_run(
        experiment=params.base.experiment,
        stage="demo_data",
        dataset="demo",
        method="none",
        params={"demo": asdict(demo)},
    ) as tracker:
        counts = {
            "ytvos": write_ytvos(args.out / "ytvos", seed=demo.seed, **asdict(demo.ytvos)),
            "refcoco": write_refcoco(args.out / "refcoco", seed=demo.seed, **asdict(demo.refcoco)),
            "davis": write_davis(args.out / "davis", seed=demo.seed, **asdict(demo.davis)),
            "mevis": write_mevis(args.out / "mevis", seed=demo.seed, **asdict(demo.mevis)),
            "a2d": write_a2d(args.out / "a2d", seed=demo.seed, **asdict(demo.a2d)),
            "jhmdb": write_jhmdb(args.out / "jhmdb", seed=demo.seed, **asdict(demo.jhmdb)),
        }
        tracker.log_metrics(flatten(counts))
    log.info("demo data written to %s: %s", args.out, counts)


if __name__ == "__main__":
    run_stage(main)
