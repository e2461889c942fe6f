"""torchrun with 2 CPU processes (gloo) gives what 1 process gives: training and evaluation.

Processes are started with `torchrun --standalone`, whose rendezvous binds a free localhost
port chosen by the OS, so no network and no fixed port are needed. Each process uses one
thread (`OMP_NUM_THREADS=1`, as torchrun sets it) in both the 1- and 2-process runs.

The training model has no BatchNorm and no dropout, and the items no random augmentation:
on CPUs BatchNorm stays per process (SyncBatchNorm has no CPU kernel) and random draws
differ between processes, so only layers whose gradients do not depend on how a batch is
split give weights that a single process can match. What remains is float rounding from
the order of the gradient all-reduce: the weights agree within TOLERANCE.
"""

import filecmp
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from rvos.config import Params, parse, to_dict
from rvos.data.prepare import PREPARERS
from rvos.engine import distributed
from rvos.engine.checkpoint import load_checkpoint, save_checkpoint
from rvos.models.build import build_model

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-6  # absolute, after 8 Adam steps on weights up to ~0.6 (seen: 3e-8)

# Batches of 3 over 2 processes: shares of 2 and 1 item, so the loss weighting by share is
# exercised. The process kills itself (like `kill -9`) right after a chosen resume state.
TRAIN_PROGRAM = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import torch
    from torch import nn
    from rvos.config import TrainConfig
    from rvos.engine import distributed, train as engine
    from rvos.models.losses import MaskLoss

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            frames = torch.linspace(-1, 1, 48).view(1, 3, 4, 4) * (i + 1) / 10
            masks = (torch.arange(16).view(1, 1, 4, 4) % (i + 2) == 0).float()
            return {"frames": frames, "masks": masks, "texts": [str(i)]}

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Conv2d(3, 4, 1)
            self.head = nn.Conv2d(4, 1, 1)

        def forward(self, frames, texts):
            b, t = frames.shape[:2]
            out = self.head(torch.relu(self.backbone(frames.flatten(0, 1))))
            return {"pred_masks": out.view(b, t, 4, 4)}

    class Tracker:
        def log_metrics(self, metrics, step=None):
            pass

    out, kill_after = Path(sys.argv[1]), int(sys.argv[2])
    if kill_after:
        save = engine.save_checkpoint
        def save_then_die(path, **payload):
            save(path, **payload)
            if path.name == "resume.pt" and payload["progress"]["step"] == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        engine.save_checkpoint = save_then_die
    with distributed.process_group("cpu") as device:
        torch.manual_seed(0)
        cfg = TrainConfig(epochs=2, batch_size=3, lr=0.05, lr_backbone=0.05, warmup_steps=2,
                          checkpoint_every=2, samples_per_epoch=12, log_every=1)
        result = engine.train(Model(), MaskLoss(), Items(), cfg, device=device,
                              checkpoint=out / "model.pt", config={"run": 1}, tracker=Tracker(),
                              curve=out / "curve.csv", seed=3, resume=out / "resume.pt")
        print("resumed_at", result.resumed_at, "world", distributed.world_size())
    """
)


def environment() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def launch(args: list[str], processes: int, cwd: Path) -> subprocess.CompletedProcess:
    """`python ARGS` with no process group, or under torchrun with that many processes."""
    torchrun = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command = [sys.executable, *(torchrun if processes > 1 else []), *args]
    return subprocess.run(
        command, cwd=cwd, env=environment(), capture_output=True, text=True, timeout=300
    )


def train_run(tmp: Path, name: str, processes: int, kill_after: int = 0):
    out = tmp / name
    out.mkdir(exist_ok=True)
    program = tmp / "program.py"
    program.write_text(TRAIN_PROGRAM)
    return launch([str(program), str(out), str(kill_after)], processes, tmp)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """Uninterrupted runs with 1 and with 2 processes, in tmp/one and tmp/two."""
    tmp = tmp_path_factory.mktemp("ddp_train")
    for name, processes in (("one", 1), ("two", 2)):
        done = train_run(tmp, name, processes)
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"world {processes}" in done.stdout
    return tmp


def test_two_processes_train_the_weights_and_curve_of_one(trained):
    one, two = weights(trained / "one/model.pt"), weights(trained / "two/model.pt")
    assert one.keys() == two.keys()
    gap = max((one[k] - two[k]).abs().max().item() for k in one)
    assert gap <= TOLERANCE
    curves = [(trained / f"{n}/curve.csv").read_text().splitlines() for n in ("one", "two")]
    assert len(curves[0]) == len(curves[1]) == 1 + 8  # header, then one row per step
    for row_one, row_two in zip(curves[0][1:], curves[1][1:], strict=True):
        step_one, epoch_one, loss_one, lr_one = row_one.split(",")
        step_two, epoch_two, loss_two, lr_two = row_two.split(",")
        assert (step_one, epoch_one, lr_one) == (step_two, epoch_two, lr_two)
        assert float(loss_one) == pytest.approx(float(loss_two), abs=1e-5)


def test_two_processes_killed_mid_epoch_resume_to_bit_equal_weights(trained):
    killed = train_run(trained, "killed", 2, kill_after=2)
    assert killed.returncode != 0
    assert (trained / "killed/resume.pt").is_file()
    assert len(load_checkpoint(trained / "killed/resume.pt")["rng"]) == 2  # one per process
    resumed = train_run(trained, "killed", 2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed_at 2" in resumed.stdout
    assert not (trained / "killed/resume.pt").exists()
    a, b = weights(trained / "two/model.pt"), weights(trained / "killed/model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (trained / "two/curve.csv").read_text() == (trained / "killed/curve.csv").read_text()


# Splits of 2 videos, one per process. The threshold sits near the untrained head's
# foreground prior, so the predicted masks are neither empty nor full.
EVAL_PARAMS = {
    "base": {"device": "cpu"},
    "demo": {},
    "pretrain": {},
    "finetune": {},
    "model": {"backbone": {"name": "resnet18"}, "fusion_dim": 16, "input_size": [48, 64]},
    "evaluate": {"threshold": 0.05, "batch_frames": 2, "overlays": 1},
}


@pytest.fixture(scope="module")
def evaluation(tiny_ytvos, tmp_path_factory) -> Path:
    """A prepared tiny Ref-YouTube-VOS, an untrained checkpoint, and params.yaml in tmp/one
    and tmp/two."""
    tmp = tmp_path_factory.mktemp("ddp_evaluate")
    data = {"ytvos": {"root": str(tiny_ytvos)}, "refcoco": {"root": str(tmp)}}
    raw = {**EVAL_PARAMS, "data": data}
    params = parse(Params, raw)
    PREPARERS["ytvos"](params, tmp / "prepared")
    torch.manual_seed(0)
    model, _ = build_model(params.model)
    save_checkpoint(tmp / "model.pt", model=model.state_dict(), config=to_dict(params))
    for name in ("one", "two"):
        (tmp / name).mkdir()
        (tmp / name / "params.yaml").write_text(yaml.safe_dump(raw))
    return tmp


def test_two_processes_evaluate_to_the_metrics_of_one(evaluation):
    for name, processes in (("one", 1), ("two", 2)):
        args = ["-m", "stages.evaluate", "ytvos", "--data", str(evaluation / "prepared")]
        args += ["--checkpoint", str(evaluation / "model.pt"), "--splits", "valid"]
        args += ["--predictions", "predictions", "--metrics", "metrics.json"]
        done = launch(args, processes, evaluation / name)
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = evaluation / "one", evaluation / "two"
    report = json.loads((one / "metrics.json").read_text())
    assert report == json.loads((two / "metrics.json").read_text())
    assert 0 < report["splits"]["valid"]["model"]["J"] < 1
    valid_one, valid_two = one / "predictions/valid", two / "predictions/valid"
    assert filecmp.cmp(valid_one / "expressions.csv", valid_two / "expressions.csv", shallow=False)
    masks = sorted(p.relative_to(valid_one) for p in valid_one.glob("Annotations/*/*/*.png"))
    assert masks == sorted(
        p.relative_to(valid_two) for p in valid_two.glob("Annotations/*/*/*.png")
    )
    assert all(filecmp.cmp(valid_one / m, valid_two / m, shallow=False) for m in masks)
    assert (valid_two / "submission.zip").is_file() and list(valid_two.glob("overlays/*.png"))
    with sqlite3.connect(two / "mlflow.db") as db:  # rank 0's run only
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (1,)


def test_a_plain_run_is_rank_0_of_1_without_a_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.process_group("cpu") as device:
        assert device == torch.device("cpu") and not distributed.is_distributed()
        assert distributed.is_main() and distributed.world_size() == 1
        assert distributed.shard([3, 1, 2]) == [3, 1, 2]
        assert distributed.all_gather_objects({"a": 1}) == [{"a": 1}]
        assert distributed.reduce_mean(torch.tensor(2.5)) == 2.5
