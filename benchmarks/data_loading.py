"""Is data loading ever the bottleneck? Clips/s of the training loader next to one step's time.

    python benchmarks/data_loading.py [--videos 12] [--frames 5] [--workers 2] [--batches 20]

Writes a throw-away Ref-YouTube-VOS-format dataset of 360×640 videos (the demo generator at
the real data's size) into a temporary folder, prepares it, and times the finetuning loader
(`--frames`-frame clips, `--workers` workers, params.yaml's batch size, input size and
augmentations). Then it times forward + backward + optimiser step of params.yaml's model on a
batch of the same shape. Prints both and their ratio: a ratio below 1 means a step waits for
no data (with `--workers` loading in parallel to the step).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from rvos.config import load_params
from rvos.data.datasets import ClipDataset, collate
from rvos.data.demo import write_ytvos
from rvos.data.index import load_index
from rvos.data.prepare import prepare_ytvos
from rvos.data.transforms import ClipTransform
from rvos.engine.train import build_optimizer
from rvos.models.build import build_model


def loader_clips_per_second(index_path: Path, cfg, size, workers: int, batches: int) -> float:
    transform = ClipTransform(size, hflip=cfg.hflip, crop_scale=cfg.crop_scale, jitter=cfg.jitter)
    dataset = ClipDataset(
        load_index(index_path), cfg.num_frames, transform, interval=cfg.sample_interval
    )
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=torch.utils.data.RandomSampler(dataset, num_samples=batches * cfg.batch_size),
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=False,
    )
    iterator = iter(loader)
    next(iterator)  # worker start-up is paid once per epoch, not per step
    start = time.perf_counter()
    count = sum(1 for _ in iterator)
    return count * cfg.batch_size / (time.perf_counter() - start)


def step_seconds(params, cfg, repeats: int) -> float:
    model, criterion = build_model(params.model)
    model.train()
    optimizer = build_optimizer(model, cfg)
    h, w = params.model.input_size
    frames = torch.randn(cfg.batch_size, cfg.num_frames, 3, h, w)
    masks = (torch.rand(cfg.batch_size, cfg.num_frames, h, w) > 0.9).float()
    texts = ["the small red triangle moving to the left"] * cfg.batch_size
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        losses = criterion(model(frames, texts), masks)
        loss = sum(criterion.weight_dict[k] * v for k, v in losses.items())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])  # the first step pays one-off allocations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--frames", type=int, default=5, help="frames per clip")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5, help="timed training steps")
    args = parser.parse_args()
    params = load_params()
    cfg = dataclasses.replace(params.finetune, num_frames=args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        root, prepared = Path(tmp) / "ytvos", Path(tmp) / "prepared"
        write_ytvos(
            root,
            seed=0,
            train_videos=args.videos,
            valid_videos=1,
            test_videos=0,
            frames=max(12, args.frames),
            height=360,
            width=640,
            progress=False,
        )
        data = dataclasses.replace(
            params.data,
            ytvos=dataclasses.replace(params.data.ytvos, root=str(root), holdout_videos=0),
        )
        prepare_ytvos(dataclasses.replace(params, data=data), prepared)
        rate = loader_clips_per_second(
            prepared / "train.json", cfg, params.model.input_size, args.workers, args.batches
        )
    step = step_seconds(params, cfg, args.repeats)
    batch_load = cfg.batch_size / rate
    print(f"loader: {rate:.1f} clips/s ({args.frames}-frame 360x640 clips, {args.workers} workers)")
    print(
        f"model step: {step * 1000:.0f} ms for a batch of {cfg.batch_size} clips "
        f"({params.model.method}, {params.model.backbone.name}, input {params.model.input_size})"
    )
    print(f"loading a batch takes {batch_load * 1000:.0f} ms = {batch_load / step:.2f}x a step")


if __name__ == "__main__":
    main()
