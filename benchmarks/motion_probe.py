"""Does a trained video backbone see which way objects move? A linear probe on its features.

    python benchmarks/motion_probe.py CHECKPOINT [--scenes 400] [--seed 0]

Draws demo MeViS scenes (rvos.data.demo_mevis, crowds of identical shapes) and takes three
consecutive frames of each, resized to the checkpoint's input size. For every object moving
with a horizontal heading it reads the backbone's feature vector at the object's centre on the
middle frame, at each level (C2-C5), and cross-validates a logistic regression that predicts
"left" or "right" from it. The same backbone at random initialisation is probed on the same
scenes as the reference, next to the majority class. A backbone that tells a crowd apart by
motion, as motion-only expressions need, scores well above both. As a check that the probe
can read what the features hold, it also predicts the object's colour (one of the first half
of the demo's colours or not), which any trained backbone encodes.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from tqdm import tqdm

from rvos.config import DemoMevis
from rvos.data.demo_mevis import sample_scene
from rvos.data.demo_shapes import COLOURS
from rvos.data.transforms import frames_to_tensor
from rvos.engine.checkpoint import load_trained_model
from rvos.models.multiscale import multiscale_backbone

CLIP = 3  # consecutive frames per probe clip, as the demo ReferFormer trains on


def probe_samples(scenes: int, seed: int, size: tuple[int, int]) -> tuple[list, dict]:
    """(clip, [(x, y) centre of each horizontal mover on the middle frame, in [0, 1]]) per
    scene, and per label ("heading": 1 = right, "colour") the movers' labels in that order."""
    demo, rng = DemoMevis(), np.random.default_rng(seed)
    first_colours = list(COLOURS)[: len(COLOURS) // 2]
    items, headings, colours = [], [], []
    for _ in range(scenes):
        scene = sample_scene(rng, demo.frames, demo.height, demo.width, demo.objects_per_video)
        start = int(rng.integers(0, demo.frames - CLIP + 1))
        middle = start + CLIP // 2
        centres = []
        for actor in scene.actors:
            x, y = actor.centres[middle]
            inside = 0 <= x < demo.width and 0 <= y < demo.height
            if actor.motion in ("linear", "wave") and actor.direction[0] != 0 and inside:
                centres.append((x / demo.width, y / demo.height))
                headings.append(actor.direction[0] > 0)
                colours.append(actor.look.colour in first_colours)
        if centres:
            images = [Image.fromarray(scene.images[t]) for t in range(start, start + CLIP)]
            items.append((frames_to_tensor(images, size), centres))
    return items, {"heading": np.array(headings), "colour": np.array(colours)}


@torch.no_grad()
def centre_features(backbone: nn.Module, items: list) -> list[np.ndarray]:
    """Per backbone level, (movers, channels): the middle frame's features at each centre."""
    backbone.eval()
    levels: list[list[np.ndarray]] = []
    for clip, centres in tqdm(items, desc="features", unit="clip"):
        maps = backbone(clip[None])  # each (T, C, h, w)
        levels = levels or [[] for _ in maps]
        for level, feature in zip(levels, maps, strict=True):
            h, w = feature.shape[-2:]
            for x, y in centres:
                level.append(feature[CLIP // 2, :, min(int(y * h), h - 1), min(int(x * w), w - 1)])
    return [torch.stack(level).numpy() for level in levels]


def probe_accuracy(features: np.ndarray, headings: np.ndarray) -> float:
    """Mean 5-fold accuracy of a standardised, L2-regularised logistic regression."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    return float(cross_val_score(model, features, headings, cv=5).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="an rvos checkpoint whose model has a video backbone")
    parser.add_argument("--scenes", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    model, config = load_trained_model(args.checkpoint)
    trained = model.backbone
    if not getattr(trained, "video", False):
        raise SystemExit(f"{args.checkpoint}: backbone {config.backbone.name} is not a video one")
    torch.manual_seed(args.seed)
    untrained = multiscale_backbone(config.backbone.name)

    items, labels = probe_samples(args.scenes, args.seed, tuple(config.input_size))
    print(f"{len(labels['heading'])} horizontal movers in {len(items)} clips")
    features = {"trained": centre_features(trained, items)}
    features["random init"] = centre_features(untrained, items)
    for label, values in labels.items():
        majority = max(values.mean(), 1 - values.mean())
        print(f"\n{label} (majority class {majority:.2f})\nlevel  trained  random init  ratio")
        scores = [[probe_accuracy(f, values) for f in levels] for levels in features.values()]
        for level, (a, b) in enumerate(zip(*scores, strict=True), start=2):
            print(f"C{level}     {a:.2f}     {b:.2f}         {a / b:.2f}")


if __name__ == "__main__":
    main()
