"""Training options: lr schedules, optimizer parameter groups, mixed precision."""

import math

import pytest
import torch
from torch import nn

from rvos.config import TrainConfig, parse
from rvos.engine import train as engine
from rvos.engine.checkpoint import load_checkpoint
from rvos.engine.train import build_optimizer, build_scheduler, check_amp, lr_factor
from rvos.errors import ConfigError
from rvos.models.losses import MaskLoss


def test_step_schedule_drops_the_lr_at_the_listed_epochs_after_warm_up():
    cfg = TrainConfig(lr_schedule="step", lr_drop_epochs=(3, 5), warmup_steps=4)
    factor = lr_factor(cfg, steps_per_epoch=10, total=60)
    expected = {0: 0.25, 2: 0.75, 3: 1.0, 29: 1.0, 30: 0.1, 49: 0.1, 50: 0.01, 59: 0.01}
    for step, value in expected.items():
        assert factor(step) == pytest.approx(value), step


def test_step_schedule_drives_every_parameter_group_through_lambda_lr():
    model = nn.ModuleDict({"backbone": nn.Linear(2, 2), "head": nn.Linear(2, 1)})
    cfg = TrainConfig(lr=1.0, lr_backbone=0.5, lr_schedule="step", lr_drop_epochs=(1,))
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=3, total=6)
    lrs = []
    for _ in range(6):
        lrs += [group["lr"] for group in optimizer.param_groups]  # backbone, then the rest
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.5, 1.0] * 3 + [0.05, 0.1] * 3)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    factor = lr_factor(TrainConfig(warmup_steps=2), steps_per_epoch=5, total=10)
    assert [factor(0), factor(1), factor(2)] == pytest.approx([0.5, 1.0, 1.0])
    assert factor(6) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factor(10) == pytest.approx(0.0)


class _Deformable(nn.Module):
    def __init__(self):
        super().__init__()
        self.sampling_offsets = nn.Linear(2, 2)
        self.attention_weights = nn.Linear(2, 2)
        self.reference_points = nn.Linear(2, 2)


def test_sampling_offsets_and_reference_points_get_their_own_lr():
    model = nn.ModuleDict(
        {
            "backbone": nn.Linear(2, 2),
            "text_encoder": nn.Linear(2, 2),
            "transformer": _Deformable(),
            "frozen": nn.Linear(2, 2).requires_grad_(False),
        }
    )
    cfg = TrainConfig(lr=1e-4, lr_backbone=1e-5, lr_text=1e-6, lr_linear_proj_mult=0.1)
    groups = build_optimizer(model, cfg).param_groups
    assert [g["lr"] for g in groups] == pytest.approx([1e-5, 1e-6, 1e-4, 1e-5])
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in groups[3]["params"]) == [
        "transformer.reference_points.bias",
        "transformer.reference_points.weight",
        "transformer.sampling_offsets.bias",
        "transformer.sampling_offsets.weight",
    ]
    assert sorted(names[id(p)] for p in groups[2]["params"]) == [
        "transformer.attention_weights.bias",
        "transformer.attention_weights.weight",
    ]


def test_models_without_deformable_attention_keep_three_groups():
    model = nn.ModuleDict({"backbone": nn.Linear(2, 2), "head": nn.Linear(2, 2)})
    assert len(build_optimizer(model, TrainConfig(lr_linear_proj_mult=0.1)).param_groups) == 2


def test_new_keys_parse_from_params_yaml():
    raw = {"amp": "bf16", "lr_schedule": "step", "lr_drop_epochs": [3, 5], "lr_drop_factor": 0.5}
    cfg = parse(TrainConfig, raw, prefix="finetune")
    assert cfg.lr_drop_epochs == (3, 5) and cfg.amp == "bf16" and cfg.lr_drop_factor == 0.5
    with pytest.raises(ConfigError, match=r"finetune.amp = 'fp32': expected one of 'off'"):
        parse(TrainConfig, {"amp": "fp32"}, prefix="finetune")


def test_fp16_needs_cuda_and_bf16_runs_anywhere():
    with pytest.raises(ConfigError, match=r"params.yaml: finetune.amp = 'fp16': expected a CUDA"):
        check_amp("fp16", torch.device("cpu"), "finetune.amp")
    check_amp("bf16", torch.device("cpu"), "finetune.amp")
    check_amp("fp16", torch.device("cuda"), "finetune.amp")


class _Items(torch.utils.data.Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        frames = torch.linspace(-1, 1, 48).view(1, 3, 4, 4) * (i + 1)
        masks = (torch.arange(16).view(1, 1, 4, 4) % (i + 2) == 0).float()
        return {"frames": frames, "masks": masks, "texts": [str(i)]}


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 1)
        self.head = nn.Conv2d(8, 1, 1)

    def forward(self, frames, texts):
        b, t = frames.shape[:2]
        out = self.head(torch.relu(self.backbone(frames.flatten(0, 1))))
        return {"pred_masks": out.view(b, t, 4, 4)}


class _Tracker:
    def log_metrics(self, metrics, step=None):
        pass


class _Stop(Exception):
    pass


def _train(tmp_path, cfg, resume=None):
    torch.manual_seed(0)
    model = _Model()
    result = engine.train(
        model,
        MaskLoss(),
        _Items(),
        cfg,
        device=torch.device("cpu"),
        checkpoint=tmp_path / "model.pt",
        config={},
        tracker=_Tracker(),
        curve=tmp_path / "curve.csv",
        seed=0,
        resume=resume,
    )
    return model, result


def test_bf16_autocast_trains_on_cpu(tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=2, lr=0.01, lr_backbone=0.01, amp="bf16")
    _, result = _train(tmp_path, cfg)
    assert result.steps == 3 and result.skipped_steps == 0 and math.isfinite(result.final_loss)


FP16 = TrainConfig(
    epochs=2, batch_size=2, lr=0.01, lr_backbone=0.01, amp="fp16", checkpoint_every=1
)


def _stop_at_step_2(monkeypatch, saved: list) -> None:
    """Make `train` save its states into `saved` too, and stop right after resume state 2."""
    save = engine.save_checkpoint

    def save_and_stop(path, **payload):
        save(path, **payload)
        saved.append(payload)
        if path.name == "resume.pt" and payload["progress"]["step"] == 2:
            raise _Stop

    monkeypatch.setattr(engine, "save_checkpoint", save_and_stop)


# torch runs fp16 autocast and its loss scaler on CPUs too (only the stages refuse it there,
# see check_amp), so the scaler's part of the resume state is tested without a GPU.


def test_fp16_loss_scaler_state_is_saved_and_restored(tmp_path, monkeypatch):
    saved = []
    _stop_at_step_2(monkeypatch, saved)
    with pytest.raises(_Stop):
        _train(tmp_path, FP16, resume=tmp_path / "resume.pt")
    state = load_checkpoint(tmp_path / "resume.pt")
    assert {"scale", "_growth_tracker"} <= set(state["scaler"]) and state["scaler"]["scale"] > 8
    state["scaler"]["scale"] = 8.0
    torch.save(state, tmp_path / "resume.pt")
    _train(tmp_path, FP16, resume=tmp_path / "resume.pt")
    scales = [payload["scaler"]["scale"] for payload in saved[2:] if "scaler" in payload]
    assert len(scales) == 6 and set(scales) == {8.0}  # restored; no growth in 4 more steps


def test_fp16_run_resumed_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    whole, _ = _train(tmp_path / "whole", FP16)
    with monkeypatch.context() as patch:
        _stop_at_step_2(patch, [])
        with pytest.raises(_Stop):
            _train(tmp_path / "run", FP16, resume=tmp_path / "run/resume.pt")
    resumed, result = _train(tmp_path / "run", FP16, resume=tmp_path / "run/resume.pt")
    assert result.resumed_at == 2
    a, b = whole.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
