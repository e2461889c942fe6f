"""Bad-input cases of params.yaml, checkpoints and RefCOCO."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from rvos.config import load_params
from rvos.data import refcoco
from rvos.engine.checkpoint import load_checkpoint, load_model_state
from rvos.errors import CheckpointError, ConfigError, UnsafePathError
from rvos.models.weights import load_state_file

from .damage import (
    BOMB,
    MARKER,
    RunsCommand,
    at,
    edit_json,
    edit_text,
    kind,
    remove,
    text_file,
    truncate,
    unchanged,
    under,
)

# ------------------------------------------------------------------------------ params.yaml

PARAMS = under("params.yaml")


def edit_yaml(change: Callable[[dict], Any]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        data = yaml.safe_load(path.read_text())
        change(data)
        path.write_text(yaml.safe_dump(data))

    return damage


params = kind("params.yaml", "params", lambda root: load_params(PARAMS(root)), error=ConfigError)
CASES = [
    params("missing", at(PARAMS, remove), r"params.yaml: file not found"),
    params("corrupt", at(PARAMS, edit_text(lambda t: t + "\n  : [\n")), r"params.yaml: not valid"),
    params(
        "unknown key",
        at(PARAMS, edit_yaml(lambda p: p["base"].update(sed=0))),
        r"params.yaml: base.sed: unknown key \(expected one of .*seed",
    ),
    params(
        "wrong type",
        at(PARAMS, edit_yaml(lambda p: p["base"].update(seed="zero"))),
        r"params.yaml: base.seed = 'zero': expected an integer",
    ),
    params(
        "wrong shape",
        at(PARAMS, edit_yaml(lambda p: p["model"].update(input_size=[96]))),
        r"params.yaml: model.input_size = \[96\]: expected a list of 2 values",
    ),
]

# ---------------------------------------------------------------------------------- RefCOCO

INSTANCES = under("refcoco", "instances.json")
REFS = under("refcoco", "refs(unc).p")


def hostile_refs(root: Path) -> None:
    """A refs pickle whose loading would create the marker file beside the tree."""
    REFS(root).write_bytes(pickle.dumps([{"ref_id": 0, "x": RunsCommand(root.parent / MARKER)}], 2))


def every_image(change: Callable[[dict], Any]) -> Callable[[Path], None]:
    def edit(instances: dict) -> dict:
        for image in instances["images"]:
            change(image)
        return instances

    return at(INSTANCES, edit_json(edit))


def refcoco_convert(root: Path) -> Any:
    return refcoco.convert(root, "refcoco", root / "train2014")


instances = kind("RefCOCO instances.json", "refcoco", refcoco_convert)
refs = kind("RefCOCO refs pickle", "refcoco", refcoco_convert)
CASES += [
    instances("missing", at(INSTANCES, remove), r"refcoco/instances.json: JSON file not found"),
    instances("corrupt", at(INSTANCES, truncate), r"refcoco/instances.json: not valid JSON"),
    instances(
        "wrong type",
        at(INSTANCES, edit_json(lambda coco: {**coco, "images": 3})),
        r"refcoco/instances.json: not COCO-style instances",
    ),
    instances(
        "hostile file_name",
        every_image(lambda image: image.update(file_name="../../../etc/passwd")),
        r"instances.json: images\[id=\d+\].file_name '../../../etc/passwd': expected a plain",
        error=UnsafePathError,
    ),
    instances(
        "absolute file_name",
        every_image(lambda image: image.update(file_name="/etc/passwd")),
        r"instances.json: images\[id=\d+\].file_name '/etc/passwd': expected a plain",
        error=UnsafePathError,
    ),
    instances(
        "oversized",
        every_image(lambda image: image.update(height=BOMB, width=BOMB)),
        r"instances.json: images\[id=\d+\] \(COCO_train2014_\d+.jpg\) is 100000x100000 = "
        r"10000000000 pixels, above the limit of 67108864",
    ),
    refs("missing", at(REFS, remove), r"refcoco/refs\(unc\).p: file not found"),
    refs("corrupt", at(REFS, truncate), r"refcoco/refs\(unc\).p: not a readable pickle"),
    refs(
        "wrong type",
        at(REFS, lambda path: path.write_bytes(pickle.dumps({"refs": []}, 2))),
        r"refcoco/refs\(unc\).p: expected a list of ref dicts",
    ),
    refs(
        "hostile code",
        hostile_refs,
        r"refcoco/refs\(unc\).p: refuses to load (posix|os).system: a refs pickle holds only",
    ),
]

# ------------------------------------------------------------------------------ checkpoints

MODEL = under("model.pt")
WEIGHTS = under("weights.pt")


def hostile_torch_file(locate: Callable[[Path], Path]) -> Callable[[Path], None]:
    def breaks(root: Path) -> None:
        payload = {"model": {}, "config": {}, "extra": RunsCommand(root.parent / MARKER)}
        torch.save(payload, locate(root))

    return breaks


def load_weights(root: Path) -> None:
    load_state_file(nn.Linear(4, 2), WEIGHTS(root))


checkpoint = kind(
    "checkpoint", "checkpoint", lambda root: load_checkpoint(MODEL(root)), error=CheckpointError
)
weights = kind("backbone weights", "checkpoint", load_weights, error=CheckpointError)
FAILS = r"cannot load checkpoint \(\w+: "
CASES += [
    checkpoint("missing", at(MODEL, remove), r"model.pt: checkpoint not found"),
    checkpoint("corrupt", at(MODEL, truncate), r"model.pt: " + FAILS),
    checkpoint("wrong type", at(MODEL, text_file), r"model.pt: " + FAILS),
    checkpoint(
        "not a dict",
        at(MODEL, lambda path: torch.save([1, 2], path)),
        r"model.pt: not an rvos checkpoint \(expected 'model' and 'config'\)",
    ),
    checkpoint(
        "wrong shapes",
        unchanged,
        r"model.pt: weights do not fit the model: shape mismatch at weight: checkpoint \(2, 3\), "
        r"model \(2, 4\)",
        reads=lambda root: load_model_state(
            nn.Linear(4, 2), load_checkpoint(MODEL(root))["model"], MODEL(root)
        ),
    ),
    checkpoint(
        "hostile code",
        hostile_torch_file(MODEL),
        r"model.pt: cannot load checkpoint \(UnpicklingError: Weights only load failed",
    ),
    weights("missing", at(WEIGHTS, remove), r"weights.pt: cannot load weights"),
    weights("wrong shapes", unchanged, r"weights.pt: weight has shape \(2, 3\), expected \(2, 4\)"),
    weights(
        "not a dict",
        at(WEIGHTS, lambda path: torch.save([1, 2], path)),
        r"weights.pt: expected a state dict, got list",
    ),
    weights(
        "hostile code",
        hostile_torch_file(WEIGHTS),
        r"weights.pt: cannot load weights \(UnpicklingError: Weights only load failed",
    ),
]
