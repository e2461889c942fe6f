"""A training stage end to end: model from params, optional init, train, metrics, MLflow."""

from __future__ import annotations

import logging
from pathlib import Path

from torch.utils.data import Dataset

from rvos.config import Params, TrainConfig, to_dict
from rvos.engine.checkpoint import load_checkpoint, load_model_state
from rvos.engine.tracking import start_run
from rvos.engine.train import resolve_device, seed_everything, train
from rvos.io import write_json
from rvos.models.build import build_model

log = logging.getLogger(__name__)


def fit(
    params: Params,
    phase: TrainConfig,
    dataset: Dataset,
    *,
    stage: str,
    dataset_name: str,
    out: Path,
    metrics: Path,
    curve: Path,
    init: Path | None = None,
    resume: Path | None = None,
) -> dict:
    """Train `params.model` on `dataset`; writes out/model.pt, the metrics JSON and the curve."""
    seed_everything(params.base.seed)
    model, criterion = build_model(params.model)
    if init is not None:
        load_model_state(model, load_checkpoint(init)["model"], init)
        log.info("initialised from %s", init)
    config = to_dict(params)
    run_params = {"base": config["base"], "model": config["model"], stage: to_dict(phase)}
    with start_run(
        experiment=params.base.experiment,
        stage=stage,
        dataset=dataset_name,
        method=params.model.method,
        params=run_params,
    ) as tracker:
        result = train(
            model,
            criterion,
            dataset,
            phase,
            device=resolve_device(params.base.device),
            checkpoint=out / "model.pt",
            config=config,
            tracker=tracker,
            curve=curve,
            seed=params.base.seed,
            num_workers=params.base.num_workers,
            desc=f"{stage} {dataset_name}",
            resume=resume,
        )
        summary = {"steps": result.steps, "final_loss": result.final_loss, "samples": len(dataset)}
        summary["skipped_steps"] = result.skipped_steps
        tracker.log_metrics({"final_loss": result.final_loss, "resumed_at_step": result.resumed_at})
        tracker.log_artifact(curve, "curves")
    write_json(metrics, summary)
    return summary
