import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rvos.config import ModelConfig, Params, TrainConfig, dataset_root, load_params, parse
from rvos.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def repo_params() -> dict:
    """The repository's params.yaml as `parse` takes it: without the variants, which
    `load_params` resolves."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw.pop("variants")
    return raw


def test_variants_override_sections_and_are_validated(tmp_path):
    params = load_params(REPO / "params.yaml", variant="referformer")
    assert params.model.method == "referformer" and params.finetune.num_frames == 3
    assert params.finetune.hflip == load_params(REPO / "params.yaml").finetune.hflip  # kept
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["variants"]["referformer"]["finetune"]["epoch"] = 2
    file = tmp_path / "params.yaml"
    file.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"\(variants\.referformer\): finetune\.epoch: unknown"):
        load_params(file)  # a broken variant fails every load, not only its own stages
    with pytest.raises(ConfigError, match="variants.nope: no such variant"):
        load_params(REPO / "params.yaml", variant="nope")


def test_repo_params_parse():
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.model.input_size == tuple(repo_params()["model"]["input_size"])


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("model", "backbon"), {}, "model.backbon: unknown key"),
        (
            ("model", "backbone", "name"),
            "resnet5",
            "model.backbone.name = 'resnet5': expected one of",
        ),
        (("pretrain", "epochs"), "3", "pretrain.epochs = '3': expected an integer"),
        (("pretrain", "epochs"), True, "pretrain.epochs = True: expected an integer"),
        (("finetune", "lr"), "fast", "finetune.lr = 'fast': expected a number"),
        (("model", "input_size"), [1, 2, 3], "model.input_size = [1, 2, 3]: expected a list of 2"),
        (("model", "text_encoder", "trainable"), "yes", "expected true or false"),
        (("data", "refcoco", "datasets"), ["refclef"], "data.refcoco.datasets[0] = 'refclef'"),
    ],
)
def test_bad_params_name_the_key(tmp_path, path, value, message):
    raw = repo_params()
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    file = tmp_path / "params.yaml"
    file.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_params(file)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_required_key():
    with pytest.raises(ConfigError, match="data.ytvos: missing"):
        parse(Params, {**repo_params(), "data": {"refcoco": {"root": "x"}}})


def test_defaults_fill_absent_keys():
    cfg = parse(ModelConfig, {"backbone": {"name": "resnet50"}})
    assert cfg.backbone.name == "resnet50" and cfg.fusion_dim == 256
    assert cfg.text_encoder.trainable is False


def test_configs_are_frozen():
    cfg = parse(ModelConfig, {})
    with pytest.raises(AttributeError):
        cfg.fusion_dim = 3


def test_missing_dataset_root(tmp_path):
    raw = repo_params()
    raw["data"]["ytvos"]["root"] = str(tmp_path / "nowhere")
    params = parse(Params, raw)
    with pytest.raises(ConfigError, match=r"data\.ytvos\.root = '.*nowhere': directory not found"):
        dataset_root(params, "ytvos", "the Ref-YouTube-VOS directory")


def test_invalid_yaml(tmp_path):
    file = tmp_path / "params.yaml"
    file.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(file)


def run_stage(cwd, *args):
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )


def test_stage_reports_missing_root_in_one_line(tmp_path):
    raw = repo_params()
    raw["data"]["ytvos"]["root"] = "missing/ytvos"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    done = run_stage(tmp_path, "stages.prepare", "ytvos", "--out", "o", "--metrics", "m.json")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [lines[-1]] and "data.ytvos.root = 'missing/ytvos'" in lines[-1]


def test_stage_reports_unknown_key_in_one_line(tmp_path):
    raw = repo_params()
    raw["finetune"]["epoch"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    done = run_stage(tmp_path, "stages.prepare", "ytvos", "--out", "o", "--metrics", "m.json")
    assert done.returncode == 2
    keys = ", ".join(f.name for f in dataclasses.fields(TrainConfig))
    assert done.stderr.strip() == (
        f"error: params.yaml: finetune.epoch: unknown key (expected one of {keys})"
    )
    assert keys.startswith("epochs, batch_size, lr, ")
