"""Shared fixtures for the metric tests: the reference J&F case from the shared folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

COMMITTED = Path(__file__).parent / "fixtures"


def shared_fixture_dir() -> Path | None:
    """The shared fixture folder: $RVOS_SHARED_FIXTURES, else <repo>/../shared/fixtures."""
    env = os.environ.get("RVOS_SHARED_FIXTURES")
    folder = (
        Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
    )
    return folder if folder.is_dir() else None


def jf_case_dir() -> Path | None:
    """Prefer the committed copy so CI always runs; fall back to the shared folder."""
    for folder in (COMMITTED, shared_fixture_dir()):
        if folder is not None and (folder / "jf_case.npz").is_file():
            return folder
    return None


@pytest.fixture(scope="session")
def jf_case() -> tuple[dict[str, np.ndarray], dict]:
    """(masks, expected): masks `gt_NNN`/`pred_NNN` (T, H, W) uint8; expected from jf_case.json."""
    folder = jf_case_dir()
    if folder is None:
        pytest.skip(
            "jf_case.npz not found in tests/eval/fixtures, $RVOS_SHARED_FIXTURES "
            "or <repo>/../shared/fixtures"
        )
    with np.load(folder / "jf_case.npz") as data:
        masks = {key: data[key] for key in data.files}
    return masks, json.loads((folder / "jf_case.json").read_text())
