import sqlite3

from rvos.engine.tracking import flatten, start_run


def test_run_logs_params_metrics_and_tags(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "table.md").write_text("| a |\n")
    params = {"model": {"backbone": {"name": "resnet18"}}}
    with start_run(
        experiment="t", stage="evaluate", dataset="ytvos", method="refvos", params=params
    ) as run:
        run.log_metrics({"J&F": 0.5, "refcoco+_train.sentences": 3}, step=1)
        run.log_artifact(tmp_path / "table.md")
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        metrics = dict(db.execute("SELECT key, value FROM metrics").fetchall())
        tags = dict(db.execute("SELECT key, value FROM tags").fetchall())
        logged = dict(db.execute("SELECT key, value FROM params").fetchall())
    assert metrics == {"J_F": 0.5, "refcoco_plus_train.sentences": 3.0}
    assert tags["stage"] == "evaluate" and tags["dataset"] == "ytvos" and "git_commit" in tags
    assert logged == {"model.backbone.name": "resnet18"}
    assert list((tmp_path / "mlruns").rglob("table.md"))


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}
