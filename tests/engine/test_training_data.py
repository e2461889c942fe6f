"""Every trainable dataset yields batches the models train on, from its demo data."""

import dataclasses

import pytest
import torch

from rvos.config import ModelConfig, load_params
from rvos.data.datasets import collate, training_dataset
from rvos.data.demo_a2d import write_a2d
from rvos.data.demo_mevis import write_mevis
from rvos.data.prepare import PREPARERS
from rvos.data.transforms import ClipTransform
from rvos.models.build import build_model

SIZE = (48, 80)


def prepared(tmp_path, name, writer, **sizes):
    params = load_params()
    root = tmp_path / "demo" / name
    writer(root, seed=0, progress=False, **sizes)
    section = dataclasses.replace(getattr(params.data, name), root=str(root))
    params = dataclasses.replace(params, data=dataclasses.replace(params.data, **{name: section}))
    out = tmp_path / "prepared" / name
    PREPARERS[name](params, out)
    return params, out


@pytest.mark.parametrize(
    ("name", "writer", "sizes"),
    [
        ("mevis", write_mevis, {"train_videos": 3, "valid_u_videos": 1, "valid_videos": 1}),
        ("a2d", write_a2d, {"train_videos": 3, "test_videos": 1, "annotated_frames": 2}),
    ],
)
def test_one_training_step(tmp_path, name, writer, sizes):
    params, out = prepared(tmp_path, name, writer, frames=6, height=48, width=80, **sizes)
    phase = dataclasses.replace(params.finetune, num_frames=3, sentences_per_clip=2)
    dataset = training_dataset(name, out, phase, ClipTransform(SIZE, hflip=0.5))
    torch.manual_seed(0)
    batch = collate([dataset[0], dataset[1]])
    k = len(batch["texts"]) // 2
    assert batch["frames"].shape == (2, 3, 3, *SIZE)
    assert batch["masks"].shape == (2 * k, 3, *SIZE) and batch["masks"].sum() > 0
    model, criterion = build_model(
        ModelConfig(fusion_dim=16, input_size=SIZE, backbone=params.model.backbone)
    )
    losses = criterion(model(batch["frames"], batch["texts"]), batch["masks"])
    loss = sum(criterion.weight_dict[n] * v for n, v in losses.items())
    loss.backward()
    assert torch.isfinite(loss)


def test_unknown_training_dataset_is_named(tmp_path):
    params = load_params()
    with pytest.raises(ValueError, match="jhmdb"):
        training_dataset("jhmdb", tmp_path, params.finetune, ClipTransform(SIZE))
