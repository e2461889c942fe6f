"""The `rvos` command.

`rvos info --model <yaml>` builds a model configuration's architecture on the meta device,
where parameters have shapes but no memory and no weights file is read, and prints its
parameter counts: enough to compare a configuration with a paper before downloading anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path

import torch
import yaml
from torch import nn

from rvos.config import ModelConfig, load_params, parse, to_dict
from rvos.errors import ConfigError, RvosError
from rvos.models.build import build_model


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rvos` console script; a user error ends in one line, status 2."""
    args = _parser().parse_args(argv)
    try:
        args.command(args)
    except RvosError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rvos", description="Referring video segmentation.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    info = commands.add_parser(
        "info", help="parameter counts of a model configuration, built without its weights"
    )
    info.add_argument(
        "--model",
        required=True,
        type=Path,
        metavar="YAML",
        help="a YAML file with a model: section (configs/referformer/*.yaml, params.yaml)",
    )
    info.add_argument("--variant", help="take the model of params.yaml's variants.<VARIANT>")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(command=_info)
    return parser


def _info(args: argparse.Namespace) -> None:
    info = model_info(read_model_config(args.model, args.variant), str(args.model))
    print(json.dumps(info, indent=2) if args.json else format_info(info))


def read_model_config(path: Path, variant: str | None = None) -> ModelConfig:
    """The `model:` section of a YAML file, or the model of params.yaml's `variants.<variant>`."""
    if not path.is_file():
        raise ConfigError(
            f"--model {str(path)!r}: file not found (expected a YAML file with a model: "
            "section, such as configs/referformer/resnet50.yaml)"
        )
    if variant is not None:
        return load_params(path, variant).model
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict) or "model" not in raw:
        raise ConfigError(f"{path}: model: missing (expected a model: section, as in params.yaml)")
    return parse(ModelConfig, raw["model"], source=str(path), prefix="model")


def build_architecture(cfg: ModelConfig) -> nn.Module:
    """The model with no weights read and nothing allocated: its parameters are on the meta
    device (the text encoder reads only its config.json)."""
    with torch.device("meta"):
        model, _ = build_model(cfg, load_weights=False)
    return model


def parameter_counts(model: nn.Module) -> dict:
    """Total and trainable (requires_grad: what training updates) parameters, overall and per
    top-level module. Buffers are not parameters and are not counted."""
    return {
        **_count(model.parameters()),
        "modules": {name: _count(child.parameters()) for name, child in model.named_children()},
    }


def _count(parameters: Iterable[nn.Parameter]) -> dict:
    parameters = list(parameters)  # unique: Module.parameters() yields a shared one once
    return {
        "total": sum(p.numel() for p in parameters),
        "trainable": sum(p.numel() for p in parameters if p.requires_grad),
    }


def model_info(cfg: ModelConfig, source: str) -> dict:
    """What `rvos info` reports: the configuration's identity and its parameter counts."""
    return {
        "config": source,
        "method": cfg.method,
        "backbone": to_dict(cfg.backbone),
        "text_encoder": to_dict(cfg.text_encoder),
        "input_size": list(cfg.input_size),
        **parameter_counts(build_architecture(cfg)),
    }


def format_info(info: dict) -> str:
    """`model_info` as a table for the terminal."""
    backbone = info["backbone"]
    lines = [
        f"config        {info['config']}",
        f"method        {info['method']}",
        f"backbone      {backbone['name']} (weights: {backbone['weights'] or 'null'})",
        f"text encoder  {_describe_text_encoder(info['text_encoder'])}",
        f"input size    {info['input_size'][0]} x {info['input_size'][1]}",
        "",
        f"{'module':<20}{'parameters':>14}{'trainable':>14}",
    ]
    rows = [*info["modules"].items(), ("total", info)]
    lines += [f"{name:<20}{c['total']:>14,}{c['trainable']:>14,}" for name, c in rows]
    return "\n".join(lines)


def _describe_text_encoder(text: dict) -> str:
    if text["kind"] == "open_clip":
        what = f"open_clip {text['model']} (weights: {text['weights']}"
    else:
        what = f"transformers {text['weights'] or 'shipped MiniLM'} (pooling: {text['pooling']}"
    return f"{what}, {'trainable' if text['trainable'] else 'frozen'})"
