"""How fast does a video backbone learn an object's heading from scratch? Synthetic clips.

    python benchmarks/heading_from_scratch.py [--steps 200] [--batch 16] [--backbones ...]

Each clip is three consecutive frames of one square crossing a noise background left, right,
up or down at 4-8 pixels a frame. Every backbone starts from random initialisation and trains
a linear classifier on its clip-averaged feature map at one level (C5 by default) to name the
heading; the printout is the accuracy on 128 held-out clips every 50 steps (chance 0.25).
Motion-only expressions need exactly this, and the demo trains its backbones from scratch:
a backbone that cannot learn it here will not learn it from a few hundred sentences.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor, nn

from rvos.models.multiscale import multiscale_backbone

HEIGHT, WIDTH, FRAMES, HALF_SIDE = 96, 160, 3, 8
HEADINGS = torch.tensor([[-1, 0], [1, 0], [0, -1], [0, 1]])  # left, right, up, down


def moving_squares(count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(count, T, 3, H, W) clips of one square each, and its heading's index."""
    clips = torch.rand(count, FRAMES, 3, HEIGHT, WIDTH, generator=generator) * 0.3
    labels = torch.randint(len(HEADINGS), (count,), generator=generator)
    speeds = 4 + 4 * torch.rand(count, generator=generator)
    colours = torch.rand(count, 3, 1, 1, generator=generator)
    margin = HALF_SIDE + 2 * 8  # the square stays inside the frame at the fastest speed
    starts = torch.rand(count, 2, generator=generator)
    starts = margin + starts * torch.tensor([WIDTH - 2 * margin, HEIGHT - 2 * margin])
    for i in range(count):
        for t in range(FRAMES):
            x, y = (starts[i] + HEADINGS[labels[i]] * speeds[i] * (t - 1)).long().tolist()
            box = (slice(y - HALF_SIDE, y + HALF_SIDE), slice(x - HALF_SIDE, x + HALF_SIDE))
            clips[i, t, :, box[0], box[1]] = colours[i]
    return clips, labels


def train(name: str, level: int, steps: int, batch: int, lr: float) -> list[tuple[int, float]]:
    """(step, held-out accuracy) every 50 steps for one backbone trained from scratch."""
    torch.manual_seed(0)
    backbone = multiscale_backbone(name)
    head = nn.Linear(backbone.channels[level], len(HEADINGS))
    optimizer = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=lr)
    test_clips, test_labels = moving_squares(128, torch.Generator().manual_seed(2))
    generator = torch.Generator().manual_seed(1)

    def logits(clips: Tensor) -> Tensor:
        maps = backbone(clips)[level].unflatten(0, (clips.shape[0], FRAMES))
        return head(maps.mean((1, 3, 4)))

    history = []
    for step in range(1, steps + 1):
        backbone.train()
        clips, labels = moving_squares(batch, generator)
        loss = nn.functional.cross_entropy(logits(clips), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == steps:
            backbone.eval()
            with torch.no_grad():
                accuracy = (logits(test_clips).argmax(1) == test_labels).float().mean().item()
            history.append((step, accuracy))
            print(f"{name} {step}: loss {loss.item():.3f}, held-out {accuracy:.2f}", flush=True)
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--level", type=int, default=3, help="0-3: C2-C5")
    parser.add_argument("--backbones", nargs="+", default=["video_swin_mini", "video_mc3_mini"])
    args = parser.parse_args()
    results = {}
    for name in args.backbones:
        start = time.perf_counter()
        results[name] = train(name, args.level, args.steps, args.batch, args.lr)
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    print(f"\nheld-out heading accuracy at C{args.level + 2} (chance 0.25)")
    print("step  " + "  ".join(f"{name:>16}" for name in results))
    for row in zip(*results.values(), strict=True):
        print(f"{row[0][0]:<5} " + "  ".join(f"{accuracy:>16.2f}" for _, accuracy in row))


if __name__ == "__main__":
    main()
