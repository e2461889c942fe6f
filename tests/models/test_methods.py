"""Every registered method, at the size `dvc repro` trains it: forward and backward, gradients
everywhere, and outputs that keep the postprocess contract. A new entry in the registry is
covered here as soon as params.yaml trains it (which the first test demands)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from rvos.cli import build_architecture
from rvos.config import Params, load_params
from rvos.models.build import METHODS, build_model, get_method

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
TEXTS = ["the red square moving left", "a star", "the circle", "the lowest object"]
CLIPS, FRAMES = 2, 2  # two sentences per clip


def demo_params() -> dict[str, Params]:
    """The params.yaml configuration that trains each method: the main model or a variant."""
    main = load_params(PARAMS)
    found = {main.model.method: main}
    for name in yaml.safe_load(PARAMS.read_text()).get("variants", {}):
        params = load_params(PARAMS, variant=name)
        found.setdefault(params.model.method, params)
    return found


CONFIGS = demo_params()


def test_params_yaml_trains_every_registered_method():
    assert set(CONFIGS) == set(METHODS)


@pytest.fixture(scope="module", params=sorted(METHODS))
def built(request):
    cfg = CONFIGS[request.param].model
    torch.manual_seed(0)
    model, criterion = build_model(cfg)
    # Move the weights off zero initialisations (sampling offsets, last box layers), which
    # would leave some parameters with an exactly zero gradient on one step.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and p.is_floating_point():
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return request.param, cfg, model, criterion


def inputs(cfg, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = cfg.input_size
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(CLIPS, FRAMES, 3, h, w, generator=g)
    masks = torch.zeros(len(TEXTS), FRAMES, h, w)
    masks[:, :, h // 4 : h // 2, w // 3 : 2 * w // 3] = 1
    masks[1, 1] = 0  # the object leaves the view in one frame
    return frames, masks


def test_forward_backward_every_parameter_gets_a_finite_gradient(built):
    name, cfg, model, criterion = built
    model.train()
    frames, masks = inputs(cfg)
    out = model(frames, TEXTS)
    losses = criterion(out, masks)
    assert set(losses) == set(criterion.weight_dict), name
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(criterion.weight_dict[k] * v for k, v in losses.items()).backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable
    for pname, param in trainable.items():
        assert param.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name}: {pname} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{name}: {pname} has an all-zero gradient"
    model.zero_grad(set_to_none=True)


def test_outputs_keep_the_postprocess_contract(built):
    name, cfg, model, _ = built
    method = get_method(name)
    model.eval()
    frames, _ = inputs(cfg, seed=1)
    with torch.no_grad():
        out = model(frames, TEXTS)
    candidates = method.candidates(out)
    n, t, q = candidates.scores.shape[:3]
    assert (n, t) == (len(TEXTS), FRAMES)
    assert ((candidates.scores >= 0) & (candidates.scores <= 1)).all()
    h, w = cfg.input_size
    assert candidates.masks.shape == (n, t, q, h // method.mask_stride, w // method.mask_stride)
    assert torch.isfinite(candidates.masks).all()
    probs = method.probabilities(out)
    assert probs.shape == (len(TEXTS), FRAMES, h, w)
    assert ((probs >= 0) & (probs <= 1)).all()
    assert not torch.allclose(probs[0], probs[1])  # the sentence matters


def test_meta_build_counts_the_same_parameters(built):
    """`rvos info --model` counts parameters of a weightless build: it must be the model."""
    name, cfg, model, _ = built
    meta = build_architecture(cfg)
    assert all(p.is_meta for p in meta.parameters())
    count = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in meta.parameters()) == count, name
