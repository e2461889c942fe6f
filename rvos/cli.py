"""The `rvos` command.

`rvos info` prints the versions, the device and the deformable-attention backend in use; with
`--model <yaml>` it also builds that configuration's architecture on the meta device, where
parameters have shapes but no memory and no weights file is read, and prints its parameter
counts: enough to compare a configuration with a paper before downloading anything.

`rvos predict` segments one's own video (a file or a folder of frames) with a trained model,
for several sentences at once (see rvos.engine.predict for what it writes).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import torch
import yaml
from torch import nn

from rvos.config import ModelConfig, load_params, parse, to_dict
from rvos.errors import ConfigError, OutputExistsError, RvosError
from rvos.models.build import backbone_name, build_model


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
        "info",
        help="versions, device, op backend; a model configuration's parameter counts",
    )
    info.add_argument(
        "--model",
        type=Path,
        metavar="YAML",
        help="a YAML file with a model: section (configs/referformer/*.yaml, params.yaml)",
    )
    info.add_argument("--variant", help="take the model of params.yaml's variants.<VARIANT>")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(command=_info)
    _add_predict(commands)
    return parser


def _info(args: argparse.Namespace) -> None:
    info = {"environment": environment()}
    if args.model is not None:
        info["model"] = model_info(read_model_config(args.model, args.variant), str(args.model))
    elif args.variant is not None:
        raise ConfigError("--variant: needs --model (the params.yaml that defines the variant)")
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(format_environment(info["environment"]))
    if "model" in info:
        print("\n" + format_info(info["model"]))


def environment() -> dict:
    """What the results depend on besides the code: versions, device, op backend."""
    import open_clip
    import torchvision
    import transformers

    from rvos.ops import backend

    cuda = torch.cuda.is_available()
    return {
        "rvos": metadata.version("rvos"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "transformers": transformers.__version__,
        "open_clip": open_clip.__version__,
        "cuda_build": torch.version.cuda,
        "device": torch.cuda.get_device_name(0) if cuda else f"cpu ({os.cpu_count()} cores)",
        "msda_backend": _describe_backend(backend()),
    }


def _describe_backend(name: str) -> str:
    """The backend in words: compiled, with the devices it has kernels for, or the reference."""
    if name != "compiled":
        return "reference (PyTorch implementation; the compiled op is not built)"
    from rvos.ops.function import EXTENSION

    with_cuda = importlib.import_module(EXTENSION).with_cuda
    return f"compiled ({'CPU and CUDA' if with_cuda else 'CPU'} kernels)"


def format_environment(env: dict) -> str:
    return "\n".join(f"{key:<14}{value}" for key, value in env.items())


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
    backbone, text = to_dict(cfg.backbone), to_dict(cfg.text_encoder)
    if cfg.method == "vlp_rvos":  # CLIP's two towers, from one checkpoint, stand for both
        clip = cfg.vlp_rvos
        backbone = {"name": backbone_name(cfg), "weights": clip.weights}
        text = {"kind": "open_clip", "model": clip.clip_model, "weights": clip.weights,
                "trainable": not clip.freeze_clip}  # fmt: skip
    return {
        "config": source,
        "method": cfg.method,
        "backbone": backbone,
        "text_encoder": text,
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


def _add_predict(commands) -> None:
    predict = commands.add_parser(
        "predict",
        help="segment your own video for one or more sentences",
        description="Masks, an overlay MP4 and GIF and per-frame scores for each sentence.",
    )
    predict.add_argument(
        "--video",
        required=True,
        type=Path,
        help="a video file (mp4, avi, webm, mov) or a "
        "folder of frames (jpg, png), read in name order",
    )
    predict.add_argument(
        "--text", required=True, action="append", help="a sentence; repeat for several"
    )
    weights = predict.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", type=Path, help="a model.pt written by rvos training")
    weights.add_argument("--run", help="an MLflow run id of a pretrain or finetune stage")
    predict.add_argument("--out", required=True, type=Path, help="output folder")
    predict.add_argument(
        "--model",
        type=Path,
        metavar="YAML",
        help="the model configuration the checkpoint must fit (needed for a released "
        "ReferFormer or BIFIT checkpoint, which carries none)",
    )
    predict.add_argument("--variant", help="with --model params.yaml: its variants.<VARIANT>")
    predict.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    predict.add_argument(
        "--amp",
        nargs="?",
        const="bf16",
        default="off",
        choices=("off", "bf16", "fp16"),
        help="autocast (bf16 when given alone; fp16 needs CUDA)",
    )
    predict.add_argument(
        "--window", type=int, default=12, help="frames per window (memory grows with it)"
    )
    predict.add_argument("--threshold", type=float, default=0.5, help="mask probability cut")
    predict.add_argument(
        "--affinity",
        type=float,
        default=0.5,
        help="weight in [0, 1] of continuing the previous window's object vs the class score",
    )
    predict.add_argument(
        "--fps",
        type=float,
        help="frame rate of the overlays (default: the video's; 24 for a folder)",
    )
    predict.add_argument("--gif-frames", type=int, default=120, help="most frames in the GIF")
    predict.add_argument("--overwrite", action="store_true", help="replace an earlier --out")
    predict.set_defaults(command=_predict)


def _predict(args: argparse.Namespace) -> None:
    from rvos.data.video_source import open_source
    from rvos.engine.checkpoint import load_trained_model
    from rvos.engine.distributed import resolve_device
    from rvos.engine.online import OnlineSegmenter
    from rvos.engine.predict import predict_video
    from rvos.engine.tracking import run_checkpoint
    from rvos.models.build import get_method

    texts = [_check_sentence(i, text) for i, text in enumerate(args.text, start=1)]
    _check_predict_numbers(args)
    if args.out.exists() and not args.overwrite:
        raise OutputExistsError(f"--out {args.out}: already exists; pass --overwrite to replace it")
    source = open_source(args.video, args.fps)
    device = resolve_device(args.device)
    if args.amp == "fp16" and device.type != "cuda":
        raise ConfigError(f"--amp fp16: expected a CUDA device (--device gives {device}); use bf16")
    expected = read_model_config(args.model, args.variant) if args.model else None
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = args.checkpoint or run_checkpoint(args.run, Path(scratch))
        model, cfg = load_trained_model(checkpoint, expected)
    segmenter = OnlineSegmenter(
        model,
        get_method(cfg.method),
        texts,
        size=tuple(cfg.input_size),
        window=args.window,
        device=device,
        amp=args.amp,
        affinity=args.affinity,
    )
    about = {"method": cfg.method, "checkpoint": str(args.checkpoint or f"run {args.run}")}
    predict_video(
        segmenter,
        source,
        args.out,
        threshold=args.threshold,
        overwrite=args.overwrite,
        gif_frames=args.gif_frames,
        about=about,
    )
    print(f"wrote {args.out}/: masks/, overlay.mp4, overlay.gif, predictions.json")


def _check_sentence(number: int, text: str) -> str:
    if not text.strip():
        raise ConfigError(f"--text #{number}: empty sentence (expected words naming the object)")
    return text.strip()


def _check_predict_numbers(args: argparse.Namespace) -> None:
    checks = [
        ("--window", args.window >= 2, "at least 2 frames (consecutive windows share one)"),
        ("--threshold", 0 < args.threshold < 1, "a probability strictly between 0 and 1"),
        ("--affinity", 0 <= args.affinity <= 1, "a weight in [0, 1]"),
        ("--gif-frames", args.gif_frames >= 1, "at least 1"),
        ("--fps", args.fps is None or args.fps > 0, "a positive frame rate"),
    ]
    for flag, ok, expected in checks:
        if not ok:
            raise ConfigError(
                f"{flag} = {getattr(args, flag[2:].replace('-', '_'))}: expected {expected}"
            )
