"""MLflow tracking: one run per stage, in a local store at the repository root.

Without MLFLOW_TRACKING_URI runs go to sqlite `mlflow.db` with artifacts in `mlruns/`
in the working directory (the repository root when run by DVC); both are git-ignored.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rvos.errors import RvosError

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def git_commit() -> str:
    """HEAD's commit hash, with '-dirty' when tracked files changed; 'unknown' outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """{"model": {"backbone": {"name": x}}} → {"model.backbone.name": x}."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


_METRIC_NAME = re.compile(r"[^\w\-. :/]")


class Tracker:
    """Thin wrapper so the engine does not depend on MLflow's module-level state."""

    def __init__(self, mlflow_module):
        self._mlflow = mlflow_module

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log metrics under names MLflow accepts: "refcoco+" → "refcoco_plus", "J&F" → "J_F"."""
        clean = {
            _METRIC_NAME.sub("_", k.replace("+", "_plus")): float(v) for k, v in metrics.items()
        }
        self._mlflow.log_metrics(clean, step=step)

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path=folder)

    def log_artifacts(self, path: str | Path, folder: str | None = None) -> None:
        self._mlflow.log_artifacts(str(path), artifact_path=folder)


CHECKPOINT_ARTIFACT = "checkpoint/model.pt"  # where training runs log their final weights


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else the sqlite store `mlflow.db` in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def run_checkpoint(run_id: str, destination: Path) -> Path:
    """The checkpoint that training run `run_id` logged, downloaded into `destination`."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = tracking_uri()
    try:
        run = mlflow.MlflowClient(uri).get_run(run_id)
    except MlflowException:
        raise RvosError(f"--run {run_id}: no such MLflow run in {uri}") from None
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path=CHECKPOINT_ARTIFACT,
            dst_path=str(destination),
            tracking_uri=uri,
        )
    except (MlflowException, OSError):
        stage = run.data.tags.get("stage", "unknown")
        raise RvosError(
            f"--run {run_id}: this {stage} run logged no {CHECKPOINT_ARTIFACT} (the pretrain and "
            "finetune stages log one); pass --checkpoint instead"
        ) from None
    return Path(path)


@contextlib.contextmanager
def start_run(
    *, experiment: str, stage: str, dataset: str, method: str, params: dict
) -> Iterator[Tracker]:
    """An MLflow run tagged with stage, dataset, method and git commit."""
    import mlflow

    if not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri(tracking_uri())
        if mlflow.get_experiment_by_name(experiment) is None:
            artifacts = (Path.cwd() / "mlruns").as_uri()
            mlflow.create_experiment(experiment, artifact_location=artifacts)
    mlflow.set_experiment(experiment)
    tags = {"stage": stage, "dataset": dataset, "method": method, "git_commit": git_commit()}
    with mlflow.start_run(run_name=f"{stage}-{dataset}-{method}", tags=tags):
        mlflow.log_params({k: str(v) for k, v in flatten(params).items()})
        yield Tracker(mlflow)
