"""Shared fixtures: tiny demo datasets generated once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="session")
def tiny_ytvos(tmp_path_factory) -> Path:
    from rvos.data.demo import write_ytvos

    root = tmp_path_factory.mktemp("demo") / "ytvos"
    write_ytvos(
        root,
        seed=3,
        train_videos=4,
        valid_videos=2,
        test_videos=1,
        frames=4,
        height=48,
        width=64,
        progress=False,
    )
    return root


@pytest.fixture(scope="session")
def tiny_refcoco(tmp_path_factory) -> Path:
    from rvos.data.demo import write_refcoco

    root = tmp_path_factory.mktemp("demo") / "refcoco"
    write_refcoco(root, seed=3, images=12, height=48, width=64, progress=False)
    return root
