"""Image pretraining on RefCOCO-format data (single frames)."""

import argparse
from pathlib import Path

from rvos.config import load_params
from rvos.data.datasets import ImageDataset
from rvos.data.transforms import ClipTransform
from rvos.engine.fit import fit
from rvos.io import read_json
from rvos.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="prepared RefCOCO directory")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint directory")
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--curve", type=Path, required=True, help="loss curve CSV")
    parser.add_argument("--resume", type=Path, help="training state to resume from and update")
    parser.add_argument("--variant", help="params.yaml variants.<name> to apply (default: none)")
    args = parser.parse_args()
    params = load_params(variant=args.variant)
    index = read_json(args.data / "index.json")
    files = [args.data / name for name in index["files"].get("train", [])]
    transform = ClipTransform(
        params.model.input_size,
        hflip=params.pretrain.hflip,
        crop_scale=params.pretrain.crop_scale,
        jitter=params.pretrain.jitter,
    )
    dataset = ImageDataset(
        files, Path(index["images"]), transform, params.pretrain.sentences_per_clip
    )
    fit(
        params,
        params.pretrain,
        dataset,
        stage="pretrain",
        dataset_name="refcoco",
        out=args.out,
        metrics=args.metrics,
        curve=args.curve,
        resume=args.resume,
    )


if __name__ == "__main__":
    run_stage(main)
