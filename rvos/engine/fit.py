"""A training stage end to end: model from params, optional init, train, metrics, MLflow.

Started by torchrun, every process runs `fit`: they join one process group and train one
model together (see `rvos.engine.train`); rank 0 alone writes the metrics and logs to MLflow.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch.utils.data import Dataset

from rvos.config import Params, TrainConfig, to_dict
from rvos.engine.checkpoint import load_checkpoint, load_model_state
from rvos.engine.distributed import is_main, main_rank_run, process_group, rank
from rvos.engine.tracking import CHECKPOINT_ARTIFACT
from rvos.engine.train import check_amp, seed_everything, train
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
    with process_group(params.base.device) as device:
        check_amp(phase.amp, device, f"{stage}.amp")
        # Ranks get generators of their own (augmentation, dropout); the model they start from
        # is rank 0's, which DistributedDataParallel copies to the others.
        seed_everything(params.base.seed + rank())
        model, criterion = build_model(params.model)
        if init is not None:
            load_model_state(model, load_checkpoint(init)["model"], init)
            log.info("initialised from %s", init)
        config = to_dict(params)
        run_params = {"base": config["base"], "model": config["model"], stage: to_dict(phase)}
        with main_rank_run(
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
                device=device,
                checkpoint=out / "model.pt",
                config=config,
                tracker=tracker,
                curve=curve,
                seed=params.base.seed,
                num_workers=params.base.num_workers,
                desc=f"{stage} {dataset_name}",
                resume=resume,
            )
            summary = {"steps": result.steps, "final_loss": result.final_loss}
            summary.update(samples=len(dataset), skipped_steps=result.skipped_steps)
            tracker.log_metrics(
                {"final_loss": result.final_loss, "resumed_at_step": result.resumed_at}
            )
            tracker.log_artifact(curve, "curves")
            tracker.log_artifact(out / "model.pt", Path(CHECKPOINT_ARTIFACT).parent.as_posix())
        if is_main():
            write_json(metrics, summary)
    return summary
