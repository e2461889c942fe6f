"""Checkpoints: written atomically, read with `weights_only=True`.

A checkpoint holds only tensors and plain Python data (the config as a dict, the git
commit), so it loads without unpickling arbitrary objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rvos.config import ModelConfig, parse
from rvos.engine.tracking import git_commit
from rvos.errors import CheckpointError
from rvos.io import atomic_open
from rvos.models.build import build_model, get_method


def save_checkpoint(path: str | Path, **payload: Any) -> None:
    """torch.save `payload` (plus the git commit) to `path` without ever leaving half a file."""
    payload.setdefault("git_commit", git_commit())
    try:
        with atomic_open(path, "wb") as handle:
            torch.save(payload, handle)
    except OSError as err:
        raise CheckpointError(
            f"{path}: cannot write the checkpoint ({err.strerror or err}); the previous one, "
            "if any, is kept"
        ) from None


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated or unsafe files raise many types
        raise CheckpointError(
            f"{path}: cannot load checkpoint ({type(err).__name__}: {str(err).splitlines()[0]})"
        ) from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "config" not in checkpoint:
        raise CheckpointError(f"{path}: not an rvos checkpoint (expected 'model' and 'config')")
    return checkpoint


def load_model_state(model: torch.nn.Module, state: dict, source: str | Path) -> None:
    """Strict load with a one-line error naming the first mismatch."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        if wrong:
            k = wrong[0]
            got, want = tuple(state[k].shape), tuple(expected[k].shape)
            parts.append(f"shape mismatch at {k}: checkpoint {got}, model {want}")
        raise CheckpointError(f"{source}: weights do not fit the model: " + "; ".join(parts))
    model.load_state_dict(state)


def load_trained_model(
    path: str | Path, config: ModelConfig | None = None
) -> tuple[torch.nn.Module, ModelConfig]:
    """The model a checkpoint holds and its configuration.

    An rvos checkpoint carries its model configuration. `config`, when given, is the one the
    caller expects: the checkpoint must be of the same method and its weights must fit it. A
    released checkpoint (the authors' key names, for methods with a `convert_official`) carries
    none, so it needs `config`.
    """
    path = Path(path)
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError:
        convert = config and get_method(config.method).convert_official
        if convert is None or not path.is_file():
            raise
        model, _ = build_model(config)
        load_model_state(model, convert(path, model, config), path)
        return model, config
    source = f"{path} (config)"
    saved = parse(ModelConfig, checkpoint["config"]["model"], source=source, prefix="model")
    if config is not None and config.method != saved.method:
        raise CheckpointError(
            f"{path}: holds a {saved.method} model, but the configuration asks for {config.method}"
        )
    config = config or saved
    model, _ = build_model(config)
    load_model_state(model, checkpoint["model"], path)
    return model, config
