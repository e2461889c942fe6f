"""Video finetuning on clips of a prepared video dataset, from the pretrained checkpoint."""

import argparse
from pathlib import Path

from rvos.config import load_params
from rvos.data.datasets import training_dataset
from rvos.data.transforms import ClipTransform
from rvos.engine.fit import fit
from rvos.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", help="prepared dataset name, e.g. ytvos")
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset directory")
    parser.add_argument("--init", type=Path, help="checkpoint to start from (pretraining)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint directory")
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--curve", type=Path, required=True, help="loss curve CSV")
    parser.add_argument("--resume", type=Path, help="training state to resume from and update")
    parser.add_argument("--variant", help="params.yaml variants.<name> to apply (default: none)")
    args = parser.parse_args()
    params = load_params(variant=args.variant)
    phase = params.finetune
    transform = ClipTransform(
        params.model.input_size, hflip=phase.hflip, crop_scale=phase.crop_scale, jitter=phase.jitter
    )
    fit(
        params,
        phase,
        training_dataset(args.dataset, args.data, phase, transform),
        stage="finetune",
        dataset_name=args.dataset,
        out=args.out,
        metrics=args.metrics,
        curve=args.curve,
        resume=args.resume,
        init=args.init,
    )


if __name__ == "__main__":
    run_stage(main)
