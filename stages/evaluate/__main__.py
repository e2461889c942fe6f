"""Inference and J&F on splits of a prepared video benchmark; server zips where one scores it."""

import argparse
import logging
from pathlib import Path

from rvos.config import ModelConfig, load_params, parse, to_dict
from rvos.data.index import load_index
from rvos.engine.checkpoint import load_checkpoint, load_model_state
from rvos.engine.evaluate import (
    BASELINES,
    draw_overlays,
    evaluate_split,
    plot_per_video,
    summarize,
    write_submission,
)
from rvos.engine.evaluate_davis import evaluate_refdavis_split
from rvos.engine.tracking import start_run
from rvos.engine.train import resolve_device
from rvos.eval.report import write_csv
from rvos.io import write_json
from rvos.models.build import get_method
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
    args = parser.parse_args()
    params = load_params()
    cfg = params.evaluate

    checkpoint = load_checkpoint(args.checkpoint)
    source = f"{args.checkpoint} (config)"
    model_cfg = parse(ModelConfig, checkpoint["config"]["model"], source=source, prefix="model")
    method = get_method(model_cfg.method)
    model, _ = method.build(model_cfg)
    load_model_state(model, checkpoint["model"], args.checkpoint)
    defaults = [s for s in EVAL_SPLITS[args.dataset] if (args.data / f"{s}.json").is_file()]
    splits = args.splits or defaults
    indexes = {split: load_index(args.data / f"{split}.json") for split in splits}

    report = {
        "dataset": args.dataset,
        "method": model_cfg.method,
        "backbone": model_cfg.backbone.name,
        "splits": {},
    }
    run_params = {"evaluate": to_dict(cfg), "model": to_dict(model_cfg), "splits": splits}
    with start_run(
        experiment=params.base.experiment,
        stage="evaluate",
        dataset=args.dataset,
        method=model_cfg.method,
        params=run_params,
    ) as tracker:
        for split, index in indexes.items():
            out = args.predictions / split
            if args.dataset == "davis":
                result = evaluate_refdavis_split(
                    model,
                    method.probabilities,
                    index,
                    args.data,
                    out,
                    size=model_cfg.input_size,
                    window=cfg.batch_frames,
                    device=resolve_device(params.base.device),
                )
                report["splits"][split] = {"expressions": len(index.expressions), "scored": True}
                report["splits"][split].update(result)
                tracker.log_metrics({f"{split}_{k}": v for k, v in result["model"].items()})
                tracker.log_artifacts(out / "scores", f"{split}/scores")
                continue
            table = evaluate_split(
                model,
                method.probabilities,
                index,
                out,
                size=model_cfg.input_size,
                window=cfg.batch_frames,
                threshold=cfg.threshold,
                device=resolve_device(params.base.device),
            )
            tracker.log_artifact(write_csv(table, out / "expressions.csv"), split)
            result = {"expressions": len(table), "scored": index.has_masks}
            if index.has_masks:
                result["model"] = summarize(table, "model")
                result["baselines"] = {name: summarize(table, name) for name in BASELINES}
                tracker.log_metrics({f"{split}_{k}": v for k, v in result["model"].items()})
                title = f"{args.dataset} {split}: J&F per video"
                tracker.log_artifact(plot_per_video(table, out / "per_video.png", title), split)
                for path in draw_overlays(table, index, out, cfg.overlays):
                    tracker.log_artifact(path, f"{split}/overlays")
            zipped = write_submission(index, out)
            if zipped is not None:
                result["submission"] = str(zipped)
            report["splits"][split] = result
            log.info("%s/%s: %s", args.dataset, split, result.get("model", "no ground truth"))
        write_json(args.metrics, report)


if __name__ == "__main__":
    run_stage(main)
