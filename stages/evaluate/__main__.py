"""Inference and J&F on splits of a prepared video benchmark; server zips where one scores it.

Under torchrun the videos are shared out among the processes; rank 0 scores and writes.
"""

import argparse
import logging
from pathlib import Path

import pandas as pd

from rvos.config import load_params, to_dict
from rvos.data.index import VideoIndex, load_index
from rvos.engine.checkpoint import load_trained_model
from rvos.engine.distributed import is_main, main_rank_run, process_group
from rvos.engine.evaluate import (
    BASELINES,
    demo_kinds,
    draw_overlays,
    evaluate_split,
    plot_per_video,
    summarize,
    summarize_by_kind,
    write_submission,
)
from rvos.engine.evaluate_davis import evaluate_refdavis_split
from rvos.engine.tracking import Tracker
from rvos.eval.report import write_csv
from rvos.io import write_json
from rvos.models.build import backbone_name, get_method
from rvos.stage import run_stage

log = logging.getLogger("stages.evaluate")

# Splits scored by default, when prepared: the held-out part of train stands in for a
# validation split whose masks are private.
EVAL_SPLITS = {"ytvos": ("valid", "holdout"), "davis": ("valid",), "mevis": ("valid_u", "valid")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", help="prepared dataset name, e.g. ytvos")
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset directory")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True, help="output directory")
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument(
        "--splits", nargs="+", help="prepared splits (default: the dataset's evaluation splits)"
    )
    parser.add_argument("--variant", help="params.yaml variants.<name> to apply (default: none)")
    args = parser.parse_args()
    params = load_params(variant=args.variant)
    cfg = params.evaluate

    model, model_cfg = load_trained_model(args.checkpoint)
    method = get_method(model_cfg.method)
    defaults = [s for s in EVAL_SPLITS[args.dataset] if (args.data / f"{s}.json").is_file()]
    splits = args.splits or defaults
    indexes = {split: load_index(args.data / f"{split}.json") for split in splits}

    report = {
        "dataset": args.dataset,
        "method": model_cfg.method,
        "backbone": backbone_name(model_cfg),
        "splits": {},
    }
    run_params = {"evaluate": to_dict(cfg), "model": to_dict(model_cfg), "splits": splits}
    run = {"experiment": params.base.experiment, "stage": "evaluate", "dataset": args.dataset}
    run.update(method=model_cfg.method, params=run_params)
    with process_group(params.base.device) as device, main_rank_run(**run) as tracker:
        for split, index in indexes.items():
            out = args.predictions / split
            settings = {"size": model_cfg.input_size, "window": cfg.batch_frames, "device": device}
            if args.dataset == "davis":
                scores = evaluate_refdavis_split(
                    model, method.probabilities, index, args.data, out, **settings
                )
                if is_main():
                    report["splits"][split] = davis_report(scores, index, split, out, tracker)
                continue
            table = evaluate_split(
                model, method.probabilities, index, out, threshold=cfg.threshold, **settings
            )
            if is_main():
                result = video_report(table, index, split, out, cfg.overlays, tracker)
                report["splits"][split] = result
                log.info("%s/%s: %s", args.dataset, split, result.get("model", "no ground truth"))
        if is_main():
            write_json(args.metrics, report)


def davis_report(scores: dict, index: VideoIndex, split: str, out: Path, tracker: Tracker) -> dict:
    """A Ref-DAVIS17 split's entry of the metrics JSON; its scores and CSVs go to MLflow."""
    tracker.log_metrics({f"{split}_{k}": v for k, v in scores["model"].items()})
    tracker.log_artifacts(out / "scores", f"{split}/scores")
    return {"expressions": len(index.expressions), "scored": True, **scores}


def video_report(
    table: pd.DataFrame, index: VideoIndex, split: str, out: Path, overlays: int, tracker: Tracker
) -> dict:
    """A video split's entry of the metrics JSON, from its per-expression table: the table as
    CSV, J&F and the baselines' when it has masks (with plots and overlays), the server's zip
    where one scores the split."""
    tracker.log_artifact(write_csv(table, out / "expressions.csv"), split)
    result = {"expressions": len(table), "scored": index.has_masks}
    if index.has_masks:
        result["model"] = summarize(table, "model")
        result["baselines"] = {name: summarize(table, name) for name in BASELINES}
        kinds = demo_kinds(index)
        if kinds is not None:  # demo data: how each kind of expression fares
            result["by_kind"] = summarize_by_kind(table, kinds)
        tracker.log_metrics({f"{split}_{k}": v for k, v in result["model"].items()})
        title = f"{index.dataset} {split}: J&F per video"
        tracker.log_artifact(plot_per_video(table, out / "per_video.png", title), split)
        for path in draw_overlays(table, index, out, overlays):
            tracker.log_artifact(path, f"{split}/overlays")
    zipped = write_submission(index, out)
    if zipped is not None:
        result["submission"] = str(zipped)
    return result


if __name__ == "__main__":
    run_stage(main)
