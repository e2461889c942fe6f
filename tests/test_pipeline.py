"""End to end: `dvc repro` on a tiny demo in a copy of the repository."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from rvos.config import load_params
from rvos.models.build import backbone_name
from rvos.report import METHOD_NAMES

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "demo": {
        "seed": 1,
        "ytvos": {"train_videos": 4, "valid_videos": 2, "test_videos": 1, "frames": 3},
        "refcoco": {"images": 6},
        "davis": {"train_videos": 1, "valid_videos": 1, "frames": 3},
        "mevis": {"train_videos": 2, "valid_u_videos": 1, "valid_videos": 1, "frames": 4},
        "a2d": {"train_videos": 2, "test_videos": 1, "frames": 6, "annotated_frames": 2},
        "jhmdb": {"videos": 2, "frames": 5},
    },
    "data": {"ytvos": {"holdout_videos": 1}},
    "model": {"fusion_dim": 16, "input_size": [48, 80]},
    "pretrain": {"epochs": 1, "batch_size": 2, "samples_per_epoch": 4, "log_every": 1},
    "finetune": {"epochs": 1, "batch_size": 2, "samples_per_epoch": 4, "log_every": 1},
    "evaluate": {"overlays": 1},
}
TINY_VARIANT = {  # applied to every variant of params.yaml
    "model": {"input_size": [64, 96]},
    "pretrain": {"batch_size": 2, "samples_per_epoch": 4},
    "finetune": {"batch_size": 2, "samples_per_epoch": 4, "num_frames": 2},
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
    for variant in params["variants"].values():
        merge(variant, TINY_VARIANT)
    merge(params["demo"]["ytvos"], SIZE)
    for name in ("refcoco", "davis", "mevis", "a2d", "jhmdb"):
        merge(params["demo"][name], SIZE)
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
    assert set(report["splits"]) == {"valid", "holdout"}
    for result in report["splits"].values():
        assert result["scored"] and result["expressions"] > 0
        for scores in [result["model"], *result["baselines"].values()]:
            assert 0.0 <= scores["J"] <= 1.0 and 0.0 <= scores["F"] <= 1.0
            assert scores["J&F"] == pytest.approx((scores["J"] + scores["F"]) / 2)
        baselines = result["baselines"]
        assert baselines["all_background"]["J"] < baselines["all_objects"]["J"]
    table = (repro / "metrics/results.md").read_text()
    backbone = yaml.safe_load((repro / "params.yaml").read_text())["model"]["backbone"]["name"]
    for row in (f"| RefVOS | {backbone} |", "All background", "Every object", "held-out train"):
        assert row in table

    params = repro / "params.yaml"
    variants = yaml.safe_load(params.read_text())["variants"]
    for name, variant in variants.items():
        for benchmark in ("ytvos", "davis", "mevis"):
            report = json.loads((repro / f"metrics/evaluate/{name}_{benchmark}.json").read_text())
            assert report["method"] == variant["model"]["method"]
            assert report["backbone"] == backbone_name(load_params(params, variant=name).model)
            row = f"| {METHOD_NAMES[report['method']]} | {report['backbone']} |"
            assert row in table


def test_variants_scored_by_kind_of_expression(repro):
    report = json.loads((repro / "metrics/evaluate/referformer_mevis.json").read_text())
    assert report["method"] == "referformer"
    by_kind = report["splits"]["valid_u"]["by_kind"]
    assert (
        by_kind
        and sum(k["expressions"] for k in by_kind.values())
        == (report["splits"]["valid_u"]["expressions"])
    )
    table = (repro / "metrics/results.md").read_text()
    assert "## Demo expressions by kind" in table
    assert ("## Motion-only expressions" in table) == ("motion_only" in by_kind)


def test_refdavis_scored_with_the_four_variants(repro):
    report = json.loads((repro / "metrics/evaluate/davis.json").read_text())
    result = report["splits"]["valid"]
    assert sorted(result["variants"]) == ["0", "1", "2", "3"]
    means = [result["variants"][a]["J&F-Mean"] for a in "0123"]
    assert result["model"]["J&F"] == pytest.approx(sum(means) / 4)
    assert "Ref-DAVIS17 (valid) J&F" in (repro / "metrics/results.md").read_text()
    assert list((repro / "predictions/davis/valid/anno_3").glob("*/*.png"))


def zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return sorted(archive.namelist())


def submission_names(index: dict, prefix: str) -> list[str]:
    """Every listed frame of every expression of a prepared index, as the server wants it."""
    return sorted(
        f"{prefix}{e['video']}/{e['exp_id']}/{frame}.png"
        for e in index["expressions"]
        for frame in index["videos"][e["video"]]["frames"]
    )


def test_mevis_scored_on_valid_u_and_zipped_for_the_server(repro):
    report = json.loads((repro / "metrics/evaluate/mevis.json").read_text())
    assert report["splits"]["valid_u"]["scored"] and not report["splits"]["valid"]["scored"]
    index = json.loads((repro / "data/prepared/mevis/valid.json").read_text())
    zipped = zip_names(repro / "predictions/mevis/valid/submission.zip")
    assert zipped == submission_names(index, prefix="")


def test_predictions_in_submission_layout(repro):
    index = json.loads((repro / "data/prepared/ytvos/valid.json").read_text())
    for e in index["expressions"]:
        frames = index["videos"][e["video"]]["frames"]
        folder = repro / "predictions/ytvos/valid/Annotations" / e["video"] / e["exp_id"]
        assert sorted(p.stem for p in folder.glob("*.png")) == frames
    assert list((repro / "predictions/ytvos/valid/overlays").glob("*.png"))
    assert (repro / "predictions/ytvos/holdout/per_video.png").is_file()
    zipped = zip_names(repro / "predictions/ytvos/valid/submission.zip")
    assert zipped == submission_names(index, prefix="Annotations/")


def test_prepare_counts(repro):
    counts = json.loads((repro / "metrics/prepare/ytvos.json").read_text())["counts"]
    assert counts["train"]["videos"] == 3 and counts["valid"]["videos"] == 2
    assert counts["holdout"]["videos"] == 1
    held = (repro / "data/prepared/ytvos/holdout.txt").read_text().split()
    train = json.loads((repro / "data/prepared/ytvos/train.json").read_text())["videos"]
    assert len(held) == 1 and held[0] not in train
    refcoco = json.loads((repro / "metrics/prepare/refcoco.json").read_text())
    assert refcoco["skipped"] == 0 and refcoco["counts"]["refcoco_train"]["sentences"] > 0
    davis = json.loads((repro / "metrics/prepare/davis.json").read_text())["counts"]
    assert davis["train"]["sequences"] == 1 and davis["valid"]["sequences"] == 1
    a2d = json.loads((repro / "metrics/prepare/a2d.json").read_text())
    assert a2d["counts"]["test"]["samples"] > 0 and a2d["skipped"] > 0  # the `1 (copy)` row
    jhmdb = json.loads((repro / "metrics/prepare/jhmdb.json").read_text())["counts"]
    assert jhmdb["test"]["samples"] > 0


def test_one_mlflow_run_per_stage(repro):
    with sqlite3.connect(repro / "mlflow.db") as db:
        rows = db.execute(
            "SELECT t.value, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
            "WHERE t.key = 'stage'"
        ).fetchall()
        metric_keys = {k for (k,) in db.execute("SELECT DISTINCT key FROM metrics")}
    stages = sorted(stage for stage, _ in rows)
    prepared = len(yaml.safe_load((repro / "params.yaml").read_text())["data"])
    pipeline = yaml.safe_load((repro / "dvc.yaml").read_text())["stages"]
    variants = pipeline["evaluate_variant"]["matrix"]
    assert variants["variant"] == pipeline["pretrain_variant"]["matrix"]["variant"]
    assert set(variants["variant"]) == set(
        yaml.safe_load((repro / "params.yaml").read_text())["variants"]
    )
    scored = len(pipeline["evaluate"]["foreach"])
    scored += len(variants["variant"]) * len(variants["benchmark"])
    expected = ["demo_data", *["prepare"] * prepared, "report"]
    expected += ["pretrain", "finetune"] * (1 + len(variants["variant"])) + ["evaluate"] * scored
    assert stages == sorted(expected)
    assert all(status == "FINISHED" for _, status in rows)
    assert {"loss", "lr", "valid_J_F", "valid_J", "holdout_J_F"} <= metric_keys


def test_second_repro_does_nothing(repro):
    done = dvc(repro, "repro")
    assert done.returncode == 0
    assert "Running stage" not in done.stdout
    status = dvc(repro, "status")
    assert "up to date" in status.stdout.lower()
