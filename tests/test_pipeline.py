"""End to end: `dvc repro` on a tiny demo in a copy of the repository."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "demo": {
        "seed": 1,
        "ytvos": {"train_videos": 3, "valid_videos": 2, "test_videos": 1, "frames": 3},
        "refcoco": {"images": 6},
    },
    "model": {"fusion_dim": 16, "input_size": [48, 80]},
    "pretrain": {"epochs": 1, "batch_size": 2, "max_samples": 4, "log_every": 1},
    "finetune": {"epochs": 1, "batch_size": 2, "max_samples": 4, "log_every": 1},
    "evaluate": {"overlays": 1},
}
SIZE = {"height": 48, "width": 80}


def merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict):
            merge(base.setdefault(key, {}), value)
        else:
            base[key] = value
    return base


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [f for f in listed if (REPO / f).is_file()]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("pipeline") / "repo"
    for name in tracked_files():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, work / name)
    params = yaml.safe_load((work / "params.yaml").read_text())
    merge(params, TINY)
    merge(params["demo"]["ytvos"], SIZE)
    merge(params["demo"]["refcoco"], SIZE)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    return work


def dvc(work: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(work),
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def repro(workspace) -> Path:
    done = dvc(workspace, "repro")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return workspace


def test_metrics_and_results_table(repro):
    report = json.loads((repro / "metrics/evaluate/ytvos.json").read_text())
    assert report["scored"] and report["expressions"] > 0
    for scores in [report["model"], *report["baselines"].values()]:
        assert 0.0 <= scores["J"] <= 1.0 and 0.0 <= scores["F"] <= 1.0
        assert scores["J&F"] == pytest.approx((scores["J"] + scores["F"]) / 2)
    assert report["baselines"]["all_background"]["J"] < report["baselines"]["all_objects"]["J"]
    table = (repro / "metrics/results.md").read_text()
    backbone = yaml.safe_load((repro / "params.yaml").read_text())["model"]["backbone"]["name"]
    for row in (f"| RefVOS | {backbone} |", "All background", "Every object"):
        assert row in table


def test_predictions_in_submission_layout(repro):
    index = json.loads((repro / "data/prepared/ytvos/valid.json").read_text())
    for e in index["expressions"]:
        frames = index["videos"][e["video"]]["frames"]
        folder = repro / "predictions/ytvos/Annotations" / e["video"] / e["exp_id"]
        assert sorted(p.stem for p in folder.glob("*.png")) == frames
    assert list((repro / "predictions/ytvos/overlays").glob("*.png"))


def test_prepare_counts(repro):
    counts = json.loads((repro / "metrics/prepare/ytvos.json").read_text())["counts"]
    assert counts["train"]["videos"] == 3 and counts["valid"]["videos"] == 2
    refcoco = json.loads((repro / "metrics/prepare/refcoco.json").read_text())
    assert refcoco["skipped"] == 0 and refcoco["counts"]["refcoco_train"]["sentences"] > 0


def test_one_mlflow_run_per_stage(repro):
    with sqlite3.connect(repro / "mlflow.db") as db:
        rows = db.execute(
            "SELECT t.value, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
            "WHERE t.key = 'stage'"
        ).fetchall()
        metric_keys = {k for (k,) in db.execute("SELECT DISTINCT key FROM metrics")}
    stages = sorted(stage for stage, _ in rows)
    assert stages == sorted(
        ["demo_data", "prepare", "prepare", "pretrain", "finetune", "evaluate", "report"]
    )
    assert all(status == "FINISHED" for _, status in rows)
    assert {"loss", "lr", "J_F", "J", "F"} <= metric_keys


def test_second_repro_does_nothing(repro):
    done = dvc(repro, "repro")
    assert done.returncode == 0
    assert "Running stage" not in done.stdout
    status = dvc(repro, "status")
    assert "up to date" in status.stdout.lower()
