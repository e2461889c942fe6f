"""The training loop: a killed run resumes to the same weights; non-finite losses are skipped."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from rvos.config import TrainConfig
from rvos.engine.checkpoint import load_checkpoint
from rvos.engine.train import batch_plan, train
from rvos.errors import RvosError

# A tiny model and dataset whose training uses every RNG the loop must restore: the sampler
# order, torch randomness in the items (augmentation) and in the model (dropout); and a frozen
# text encoder whose cache a resumed run refills, with features that, as a transformer's over
# a padded batch, depend in the last bits on the batch that a sentence is encoded in.
PROGRAM = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import torch
    from torch import nn
    from rvos.config import TrainConfig
    from rvos.engine import train as engine
    from rvos.models.text import TextEncoder, TextFeatures

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            frames = torch.full((1, 3, 4, 4), float(i)) + 0.1 * torch.randn(1, 3, 4, 4)
            masks = (torch.arange(16).view(1, 1, 4, 4) % (i + 2) == 0).float()
            return {"frames": frames, "masks": masks, "texts": [str(i)]}

    class Encoder(TextEncoder):
        word_dim = sentence_dim = 4

        def __init__(self):
            super().__init__(trainable=False)
            self.table = nn.Embedding(10, 4)
            self._freeze_unless_trainable()

        def encode(self, texts):
            sentence = self.table(torch.tensor([int(t) for t in texts])) * (1 + 1e-6 * len(texts))
            padding = torch.zeros(len(texts), 1, dtype=torch.bool)
            return TextFeatures(sentence[:, None], padding, sentence)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Conv2d(3, 4, 1)
            self.text_encoder = Encoder()
            self.text_proj = nn.Linear(4, 4)
            self.head = nn.Sequential(nn.Dropout(0.3), nn.Conv2d(4, 1, 1))

        def forward(self, frames, texts):
            b, t = frames.shape[:2]
            sentence = self.text_proj(self.text_encoder(texts).sentence)
            visual = torch.relu(self.backbone(frames.flatten(0, 1)))
            out = self.head(visual * sentence[:, :, None, None])
            return {"pred_masks": out.view(b, t, 4, 4)}

    class Tracker:
        def log_metrics(self, metrics, step=None):
            pass

    out, kill_after = Path(sys.argv[1]), int(sys.argv[2])
    if kill_after:  # die like `kill -9` right after the resume state of that step is written
        save = engine.save_checkpoint
        def save_then_die(path, **payload):
            save(path, **payload)
            if path.name == "resume.pt" and payload["progress"]["step"] == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        engine.save_checkpoint = save_then_die
    torch.manual_seed(0)
    model = Model()
    criterion = __import__("rvos.models.losses", fromlist=["MaskLoss"]).MaskLoss()
    cfg = TrainConfig(epochs=2, batch_size=3, lr=0.05, lr_backbone=0.05, warmup_steps=2,
                      checkpoint_every=2, samples_per_epoch=12, log_every=1)
    result = engine.train(model, criterion, Items(), cfg, device=torch.device("cpu"),
                          checkpoint=out / "model.pt", config={"run": 1}, tracker=Tracker(),
                          curve=out / "curve.csv", seed=3, resume=out / "resume.pt")
    print("resumed_at", result.resumed_at)
    """
)


def run(out: Path, kill_after: int) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, str(out), str(kill_after)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        timeout=300,
    )


def test_run_killed_at_an_epoch_end_resumes_to_bit_equal_weights(tmp_path):
    whole = run(tmp_path / "whole", 0)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = run(tmp_path / "killed", 4)  # the first epoch's last batch, before its checkpoint
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / "killed/resume.pt").is_file()
    resumed = run(tmp_path / "killed", 0)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed_at 4" in resumed.stdout
    assert not (tmp_path / "killed/resume.pt").exists()  # removed once training completed
    a = load_checkpoint(tmp_path / "whole/model.pt")["model"]
    b = load_checkpoint(tmp_path / "killed/model.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "whole/curve.csv").read_text() == (tmp_path / "killed/curve.csv").read_text()


def test_killed_mid_epoch_resumes_to_bit_equal_weights(tmp_path):
    whole = run(tmp_path / "whole", 0)
    killed = run(tmp_path / "killed", 2)  # after batch 2 of 4 in the first epoch
    assert killed.returncode == -signal.SIGKILL
    resumed = run(tmp_path / "killed", 0)
    assert "resumed_at 2" in resumed.stdout, resumed.stderr[-2000:]
    a = load_checkpoint(tmp_path / "whole/model.pt")["model"]
    b = load_checkpoint(tmp_path / "killed/model.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert whole.returncode == 0


def test_resume_state_of_other_params_is_not_used(tmp_path, caplog):
    killed = run(tmp_path / "run", 2)
    assert killed.returncode == -signal.SIGKILL
    state = load_checkpoint(tmp_path / "run/resume.pt")
    state["fingerprint"] = "other params"
    torch.save(state, tmp_path / "run/resume.pt")
    again = run(tmp_path / "run", 0)
    assert again.returncode == 0 and "resumed_at 0" in again.stdout
    assert "starting afresh" in again.stderr


def test_batch_plan_repeats_past_the_dataset_and_is_seeded():
    plan = batch_plan(length=5, samples=12, batch_size=4, epochs=2, seed=1, drop_last=True)
    assert [len(b) for b in plan[0]] == [4, 4, 4]
    first = [i for b in plan[0] for i in b]
    assert sorted(first[:5]) == list(range(5)) and sorted(first[5:10]) == list(range(5))
    assert plan == batch_plan(5, 12, 4, 2, seed=1, drop_last=True)
    assert plan[0] != plan[1]


class _Constant(nn.Module):
    def __init__(self, values):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.values = iter(values)

    def forward(self, frames, texts):
        value = next(self.values)
        return {"pred_masks": self.weight + torch.full((len(texts), 1, 2, 2), value)}


class _Loss(nn.Module):
    weight_dict = {"loss": 1.0}

    def forward(self, outputs, masks, valid):
        return {"loss": outputs["pred_masks"].mean()}


class _Items(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return {"frames": torch.zeros(1, 3, 2, 2), "masks": torch.zeros(1, 1, 2, 2), "texts": ["x"]}


class _Tracker:
    def __init__(self):
        self.logged = []

    def log_metrics(self, metrics, step=None):
        self.logged.append(metrics)


def _train(tmp_path, values, max_bad):
    cfg = TrainConfig(epochs=1, batch_size=1, samples_per_epoch=len(values), max_bad_steps=max_bad)
    tracker = _Tracker()
    result = train(
        _Constant(values),
        _Loss(),
        _Items(),
        cfg,
        device=torch.device("cpu"),
        checkpoint=tmp_path / "model.pt",
        config={},
        tracker=tracker,
        curve=tmp_path / "curve.csv",
        seed=0,
    )
    return result, tracker


def test_non_finite_losses_are_skipped_and_logged(tmp_path):
    nan, inf = float("nan"), float("inf")
    result, tracker = _train(tmp_path, [1.0, nan, inf, 2.0, nan, 3.0], max_bad=3)
    assert result.steps == 6 and result.skipped_steps == 3
    assert [m["skipped_steps"] for m in tracker.logged if "skipped_steps" in m] == [1, 2, 3]


def test_too_many_non_finite_losses_in_a_row_stop_with_a_clear_message(tmp_path):
    nan = float("nan")
    with pytest.raises(RvosError, match=r"3 non-finite losses in a row .*max_bad_steps = 3"):
        _train(tmp_path, [1.0, nan, nan, nan, 1.0], max_bad=3)
