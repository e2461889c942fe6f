import errno
import pickle

import pytest
import torch
from torch import nn

from rvos.engine import checkpoint
from rvos.engine.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from rvos.errors import CheckpointError


def test_round_trip_with_plain_config(tmp_path):
    model = nn.Linear(3, 2)
    path = tmp_path / "ckpt" / "model.pt"
    save_checkpoint(path, model=model.state_dict(), config={"model": {"input_size": (4, 5)}})
    loaded = load_checkpoint(path)
    assert loaded["config"]["model"]["input_size"] == (4, 5)
    assert isinstance(loaded["git_commit"], str)
    other = nn.Linear(3, 2)
    load_model_state(other, loaded["model"], path)
    assert torch.equal(other.weight, model.weight)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp files left


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, model=nn.Linear(3, 2).state_dict(), config={})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="cannot load checkpoint"):
        load_checkpoint(path)


class _Payload:
    def __reduce__(self):
        return (print, ("ran",))


def test_arbitrary_objects_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save(
        {"model": {}, "config": {}, "x": _Payload()}, path, pickle_protocol=pickle.HIGHEST_PROTOCOL
    )
    with pytest.raises(CheckpointError, match="cannot load checkpoint"):
        load_checkpoint(path)
    assert "ran" not in capsys.readouterr().out


def test_not_an_rvos_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(nn.Linear(3, 2).state_dict(), path)
    with pytest.raises(CheckpointError, match="not an rvos checkpoint"):
        load_checkpoint(path)


def test_mismatched_weights_are_named(tmp_path):
    state = nn.Linear(3, 2).state_dict()
    with pytest.raises(CheckpointError, match=r"shape mismatch at weight: checkpoint \(2, 3\)"):
        load_model_state(nn.Linear(4, 2), state, "x.pt")
    with pytest.raises(CheckpointError, match="1 missing .first: bias."):
        load_model_state(nn.Linear(3, 2), {"weight": state["weight"]}, "x.pt")


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    save_checkpoint(path, model={"w": torch.ones(2)}, config={})

    def disk_full(obj, handle):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="model.pt: cannot write the checkpoint \\(No space"):
        save_checkpoint(path, model={"w": torch.zeros(2)}, config={})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left


def test_unwritable_destination_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    with pytest.raises(CheckpointError, match="not_a_dir/model.pt: cannot write the checkpoint"):
        save_checkpoint(blocker / "model.pt", model={}, config={})
