"""An interrupted prepare stage leaves the previous complete output, or none: never a half-written
directory that DVC would record. A re-run completes and cleans up what the interrupted one left."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from rvos import io
from rvos.config import (
    A2dData,
    DavisData,
    JhmdbData,
    MevisData,
    Params,
    RefcocoData,
    YtvosData,
    load_params,
)
from rvos.data.prepare import PREPARERS
from rvos.errors import OutputExistsError

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

REPO = Path(__file__).resolve().parents[2]
SECTIONS = {
    "ytvos": lambda root: YtvosData(root=str(root), holdout_videos=1),
    "refcoco": lambda root: RefcocoData(root=str(root)),
    "davis": lambda root: DavisData(root=str(root)),
    "mevis": lambda root: MevisData(root=str(root)),
    "a2d": lambda root: A2dData(root=str(root)),
    "jhmdb": lambda root: JhmdbData(root=str(root)),
}


def params_for(dataset: str, root: Path) -> Params:
    params = load_params(REPO / "params.yaml")
    data = dataclasses.replace(params.data, **{dataset: SECTIONS[dataset](root)})
    return dataclasses.replace(params, data=data)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below `folder` (and what lies beside it) with the hash of its content."""
    return {
        str(path.relative_to(folder.parent)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.parent.rglob("*"))
        if path.is_file()
    }


class _Interrupted(Exception):
    pass


def fail_on_write(monkeypatch, after: int) -> None:
    """Make the `after`-th atomic file write (rvos.io) of a run fail, as a full disk would."""
    real = io.atomic_open
    calls = []

    def failing(path, mode="w"):
        calls.append(path)
        if len(calls) == after:
            raise _Interrupted(f"interrupted before writing {path}")
        return real(path, mode)

    monkeypatch.setattr(io, "atomic_open", failing)


@pytest.mark.parametrize("dataset", sorted(SECTIONS))
def test_failed_prepare_keeps_the_previous_output_and_a_rerun_completes(
    dataset, trees, tmp_path, monkeypatch
):
    params = params_for(dataset, trees[dataset])
    out = tmp_path / "prepared" / dataset
    PREPARERS[dataset](params, out)
    complete = snapshot(out)
    with monkeypatch.context() as patch:
        fail_on_write(patch, after=2)
        with pytest.raises(_Interrupted):
            PREPARERS[dataset](params, out)
    assert snapshot(out) == complete
    PREPARERS[dataset](params, out)
    assert snapshot(out) == complete


def test_failed_first_prepare_leaves_no_output(trees, tmp_path, monkeypatch):
    out = tmp_path / "prepared" / "a2d"
    fail_on_write(monkeypatch, after=2)
    with pytest.raises(_Interrupted):
        PREPARERS["a2d"](params_for("a2d", trees["a2d"]), out)
    assert list(out.parent.iterdir()) == []


KILLED_MID_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from rvos import io
    from rvos.config import load_params
    from rvos.data.prepare import PREPARERS

    real, written = io.atomic_open, []

    def killed_after_first_file(path, mode="w"):
        if written:
            os.kill(os.getpid(), signal.SIGKILL)
        written.append(path)
        return real(path, mode)

    io.atomic_open = killed_after_first_file
    PREPARERS["ytvos"](load_params(sys.argv[1]), Path(sys.argv[2]))
    """
)


def test_killed_prepare_keeps_the_previous_output_and_a_rerun_cleans_up(trees, tmp_path):
    """SIGKILL mid-way (no cleanup code runs): the output is the previous complete one, and
    what the killed run left beside it is removed by the next run."""
    params_file = tmp_path / "params.yaml"
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"]["ytvos"].update(root=str(trees["ytvos"]), holdout_videos=1)
    params_file.write_text(yaml.safe_dump(raw))
    out = tmp_path / "prepared" / "ytvos"
    PREPARERS["ytvos"](load_params(params_file), out)
    complete = snapshot(out)

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = [sys.executable, "-c", KILLED_MID_WRITE, str(params_file), str(out)]
    killed = subprocess.run(script, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    left = [p.name for p in out.parent.iterdir() if p != out]
    assert left and all(name.startswith(".ytvos.staging-") for name in left)
    assert {k: v for k, v in snapshot(out).items() if k.startswith("ytvos/")} == complete

    PREPARERS["ytvos"](load_params(params_file), out)
    assert snapshot(out) == complete


def test_a_foreign_directory_is_never_replaced(trees, tmp_path):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("precious")
    with pytest.raises(OutputExistsError, match="thesis: exists and holds no train.json"):
        PREPARERS["ytvos"](params_for("ytvos", trees["ytvos"]), out)
    assert (out / "chapter1.tex").read_text() == "precious"


def test_a_tree_moved_aside_by_a_killed_swap_is_put_back(tmp_path):
    """A kill between the two renames of the swap leaves the previous tree moved aside."""
    root = tmp_path / "out"
    aside = tmp_path / ".out.previous-abc123"
    aside.mkdir()
    (aside / "index.json").write_text("{}")
    with io.atomic_dir(root, marker="index.json") as staging:
        assert (root / "index.json").exists() and not aside.exists()
        (staging / "index.json").write_text('{"new": 1}')
    assert (root / "index.json").read_text() == '{"new": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
