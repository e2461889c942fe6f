"""Small valid trees of every input kind, written once per session by the demo writers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from rvos.data.demo import write_refcoco, write_ytvos
from rvos.data.demo_a2d import write_a2d
from rvos.data.demo_davis import write_davis
from rvos.data.demo_jhmdb import write_jhmdb
from rvos.data.demo_mevis import write_mevis

REPO = Path(__file__).resolve().parents[2]
SIZE = {"height": 32, "width": 48}


def _params_tree(root: Path) -> None:
    root.mkdir()
    shutil.copy(REPO / "params.yaml", root / "params.yaml")


def _checkpoint_tree(root: Path) -> None:
    root.mkdir()
    state = nn.Linear(3, 2).state_dict()
    torch.save({"model": state, "config": {}}, root / "model.pt")
    torch.save(state, root / "weights.pt")


TREES = {
    "params": _params_tree,
    "checkpoint": _checkpoint_tree,
    "ytvos": lambda root: write_ytvos(
        root,
        seed=1,
        train_videos=2,
        valid_videos=1,
        test_videos=1,
        frames=3,
        progress=False,
        **SIZE,
    ),
    "refcoco": lambda root: write_refcoco(root, seed=1, images=4, progress=False, **SIZE),
    "davis": lambda root: write_davis(
        root, seed=1, train_videos=2, valid_videos=1, frames=3, progress=False, **SIZE
    ),
    "mevis": lambda root: write_mevis(
        root,
        seed=1,
        train_videos=2,
        valid_u_videos=1,
        valid_videos=1,
        frames=3,
        progress=False,
        **SIZE,
    ),
    "a2d": lambda root: write_a2d(
        root,
        seed=1,
        train_videos=1,
        test_videos=1,
        frames=4,
        annotated_frames=2,
        progress=False,
        **SIZE,
    ),
    "jhmdb": lambda root: write_jhmdb(root, seed=1, videos=1, frames=6, progress=False, **SIZE),
}


@pytest.fixture(scope="session")
def trees(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("valid")
    for name, write in TREES.items():
        write(base / name)
    return {name: base / name for name in TREES}
