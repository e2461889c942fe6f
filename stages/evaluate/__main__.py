"""Inference and J&F on a prepared video benchmark's validation split."""

import argparse
import logging
from pathlib import Path

from rvos.config import ModelConfig, load_params, parse, to_dict
from rvos.data.index import load_index
from rvos.engine.checkpoint import load_checkpoint, load_model_state
from rvos.engine.evaluate import BASELINES, draw_overlays, evaluate_split, summarize
from rvos.engine.tracking import start_run
from rvos.engine.train import resolve_device
from rvos.io import atomic_open, write_json
from rvos.models.build import get_method
from rvos.stage import run_stage

log = logging.getLogger("stages.evaluate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", help="prepared dataset name, e.g. ytvos")
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset directory")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True, help="output directory")
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--split", default="valid")
    args = parser.parse_args()
    params = load_params()
    cfg = params.evaluate

    checkpoint = load_checkpoint(args.checkpoint)
    source = f"{args.checkpoint} (config)"
    model_cfg = parse(ModelConfig, checkpoint["config"]["model"], source=source, prefix="model")
    method = get_method(model_cfg.method)
    model, _ = method.build(model_cfg)
    load_model_state(model, checkpoint["model"], args.checkpoint)
    index = load_index(args.data / f"{args.split}.json")

    run_params = {"evaluate": to_dict(cfg), "model": to_dict(model_cfg), "split": args.split}
    with start_run(
        experiment=params.base.experiment,
        stage="evaluate",
        dataset=args.dataset,
        method=model_cfg.method,
        params=run_params,
    ) as tracker:
        table = evaluate_split(
            model,
            method.probabilities,
            index,
            args.predictions,
            size=model_cfg.input_size,
            window=cfg.batch_frames,
            threshold=cfg.threshold,
            device=resolve_device(params.base.device),
        )
        with atomic_open(args.predictions / "expressions.csv") as handle:
            table.to_csv(handle, index=False)
        tracker.log_artifact(args.predictions / "expressions.csv")
        report = {
            "dataset": args.dataset,
            "split": args.split,
            "expressions": len(table),
            "method": model_cfg.method,
            "backbone": model_cfg.backbone.name,
            "scored": index.has_masks,
        }
        if index.has_masks:
            report["model"] = summarize(table, "model")
            report["baselines"] = {name: summarize(table, name) for name in BASELINES}
            tracker.log_metrics(report["model"])
            for path in draw_overlays(table, index, args.predictions, cfg.overlays):
                tracker.log_artifact(path, "overlays")
        write_json(args.metrics, report)
    log.info("%s/%s: %s", args.dataset, args.split, report.get("model", "no ground truth"))


if __name__ == "__main__":
    run_stage(main)
