"""Image pretraining on RefCOCO-format data (single frames)."""

import argparse
import json
from pathlib import Path

from rvos.config import load_params
from rvos.data.datasets import ImageDataset
from rvos.data.transforms import ClipTransform
from rvos.engine.fit import fit
from rvos.errors import DataError
from rvos.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="prepared RefCOCO directory")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint directory")
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--curve", type=Path, required=True, help="loss curve CSV")
    args = parser.parse_args()
    params = load_params()
    index_path = args.data / "index.json"
    if not index_path.is_file():
        raise DataError(f"{index_path}: not found (run the prepare stage for refcoco)")
    index = json.loads(index_path.read_text())
    files = [args.data / name for name in index["files"].get("train", [])]
    transform = ClipTransform(params.model.input_size, hflip=params.pretrain.hflip)
    dataset = ImageDataset(files, Path(index["images"]), transform)
    fit(
        params,
        params.pretrain,
        dataset,
        stage="pretrain",
        dataset_name="refcoco",
        out=args.out,
        metrics=args.metrics,
        curve=args.curve,
    )


if __name__ == "__main__":
    run_stage(main)
