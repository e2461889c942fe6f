"""`rvos info`: the paper configurations, built without weights, against the official model."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from rvos.cli import build_architecture, main, read_model_config
from rvos.config import TextEncoderConfig
from rvos.errors import ConfigError
from rvos.models.text import build_text_encoder

REPO = Path(__file__).resolve().parents[1]
OFFICIAL = json.loads((REPO / "tests/fixtures/referformer_param_counts.json").read_text())
PAPER_CONFIGS = ("resnet50", "swin_l", "video_swin_b")


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # paths in configs (configs/roberta-base) are relative to the repo


def info_json(capsys, *argv: str) -> dict:
    """The model part of `rvos info --json`."""
    assert main(["info", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)["model"]


def paper_model(name: str) -> dict:
    return yaml.safe_load((REPO / f"configs/referformer/{name}.yaml").read_text())["model"]


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_configs_have_the_official_parameter_counts(name, capsys):
    info = info_json(capsys, "--model", f"configs/referformer/{name}.yaml")
    official = OFFICIAL[name]
    assert (info["total"], info["trainable"]) == (official["total"], official["trainable"])
    assert (info["method"], info["backbone"]["name"]) == ("referformer", name)
    assert info["modules"]["text_encoder"]["trainable"] == 0  # RoBERTa is frozen
    assert sum(m["total"] for m in info["modules"].values()) == info["total"]  # nothing shared


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_the_architecture_is_built_on_the_meta_device(name):
    model = build_architecture(read_model_config(Path(f"configs/referformer/{name}.yaml")))
    tensors = [*model.parameters(), *model.buffers()]
    assert tensors and all(t.is_meta for t in tensors)


def test_the_table_shows_the_counts(capsys):
    assert main(["info", "--model", "configs/referformer/resnet50.yaml"]) == 0
    out = capsys.readouterr().out
    total, trainable = OFFICIAL["resnet50"]["total"], OFFICIAL["resnet50"]["trainable"]
    assert f"{total:,}" in out and f"{trainable:,}" in out
    assert "resnet50" in out and "configs/roberta-base" in out


def test_the_environment_names_versions_device_and_op_backend(capsys, monkeypatch):
    import torchvision

    from rvos.ops import function

    monkeypatch.setattr(function, "_backend", None)
    monkeypatch.setenv("RVOS_MSDA_BACKEND", "reference")
    assert main(["info", "--json"]) == 0
    env = json.loads(capsys.readouterr().out)["environment"]
    assert env["torch"] == torch.__version__ and env["torchvision"] == torchvision.__version__
    assert env["msda_backend"].startswith("reference")
    expected = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu ("
    assert env["device"].startswith(expected)
    monkeypatch.setattr(function, "_backend", None)
    monkeypatch.delenv("RVOS_MSDA_BACKEND")
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "msda_backend  compiled (CPU" in out and "transformers" in out


def test_a_params_variant_is_read_with_its_overrides(tmp_path, capsys):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["variants"] = {"paper": {"model": paper_model("resnet50")}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    info = info_json(capsys, "--model", str(path), "--variant", "paper")
    assert info["total"] == OFFICIAL["resnet50"]["total"]


def test_a_missing_model_file_names_the_option_and_path(capsys):
    assert main(["info", "--model", "configs/referformer/resnet5.yaml"]) == 2
    error = capsys.readouterr().err
    assert "--model 'configs/referformer/resnet5.yaml': file not found" in error


def test_a_file_without_a_model_section_names_the_key_and_path(tmp_path, capsys):
    path = tmp_path / "empty.yaml"
    path.write_text("base: {}\n")
    assert main(["info", "--model", str(path)]) == 2
    assert f"{path}: model: missing" in capsys.readouterr().err


def test_a_text_encoder_without_config_json_names_the_key_and_path(tmp_path, capsys):
    model = paper_model("resnet50")
    model["text_encoder"]["weights"] = str(tmp_path)  # a directory with no config.json
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump({"model": model}))
    assert main(["info", "--model", str(path)]) == 2
    error = capsys.readouterr().err
    assert f"model.text_encoder.weights = '{tmp_path}': no config.json there" in error


def test_training_still_needs_the_full_text_encoder_directory():
    cfg = TextEncoderConfig(weights="configs/roberta-base", pooling="pooler")
    with pytest.raises(ConfigError, match="configs/roberta-base.*no weights file there"):
        build_text_encoder(cfg)
