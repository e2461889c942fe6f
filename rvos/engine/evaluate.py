"""Evaluate a model on a prepared video split: PNG predictions, J&F, overlays.

Predictions are written as the Ref-YouTube-VOS submission expects them,
`<out>/Annotations/<vid>/<exp_id>/<frame>.png` (8-bit 0/255 at the original size), one
expression at a time, so memory does not grow with the benchmark. When the split has
ground truth, every expression is scored with J and F, and so are two trivial baselines
(all background; every annotated object of the frame) that bound what the numbers mean.

Under torchrun each rank predicts the expressions of its share of the videos; the rows are
gathered on every rank, and the stage has rank 0 alone score, plot and zip.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from rvos.data.demo import KINDS_FILE
from rvos.data.index import Expression, VideoIndex
from rvos.engine.distributed import all_gather_objects, is_main, shard
from rvos.engine.infer import expression_probabilities
from rvos.engine.visualize import overlay_strip
from rvos.eval.davis import score_expression
from rvos.eval.report import plot_bars
from rvos.eval.submission import write_submission_zip
from rvos.io import save_image

BASELINES = ("all_background", "all_objects")
# Splits scored on a server: the meta_expressions file (relative to the dataset root) whose
# every listed frame the zip must hold, and the archive layout.
SERVER_SPLITS = {
    ("ytvos", "valid"): ("meta_expressions/valid/meta_expressions.json", "ytvos"),
    ("mevis", "valid"): ("valid/meta_expressions.json", "mevis"),
}


def prediction_path(out: Path, expression: Expression, frame: str) -> Path:
    return out / "Annotations" / expression.video / expression.exp_id / f"{frame}.png"


def evaluate_split(
    model: nn.Module,
    probabilities: Callable[[dict], torch.Tensor],
    index: VideoIndex,
    out: Path,
    *,
    size: tuple[int, int],
    window: int,
    threshold: float,
    device: torch.device,
) -> pd.DataFrame:
    """One row per expression, in index order: J, F (and the baselines' J, F) when the split
    has masks. Each rank predicts the videos of its `shard`; every rank gets the whole table."""
    model.to(device).eval()
    videos = set(shard(sorted(index.videos)))
    mine = [(i, e) for i, e in enumerate(index.expressions) if e.video in videos]
    rows = []
    bar = tqdm(mine, desc=f"evaluate {index.dataset}", unit="expr", disable=not is_main())
    for position, expression in bar:
        probs = expression_probabilities(
            model, probabilities, index, expression, size=size, window=window, device=device
        )
        prediction = probs > threshold
        frames = index.videos[expression.video].frames
        for frame, mask in zip(frames, prediction, strict=True):
            image = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
            save_image(prediction_path(out, expression, frame), image)
        row = {"video": expression.video, "exp_id": expression.exp_id, "text": expression.text}
        if index.has_masks:
            target = np.stack([index.target(expression, f) for f in frames])
            objects = np.stack([index.objects_mask(expression.video, f) for f in frames])
            candidates = {
                "model": prediction,
                "all_background": np.zeros_like(target),
                "all_objects": objects,
            }
            for name, candidate in candidates.items():
                scores = score_expression(target, candidate)
                row[f"{name}_J"], row[f"{name}_F"] = scores["J_mean"], scores["F_mean"]
        rows.append((position, row))
    gathered = sorted((r for part in all_gather_objects(rows) for r in part), key=lambda r: r[0])
    return pd.DataFrame([row for _, row in gathered])


def summarize(table: pd.DataFrame, name: str) -> dict[str, float]:
    """Dataset J, F and J&F: means over expressions, as MeViS and Ref-YouTube-VOS report."""
    j, f = float(table[f"{name}_J"].mean()), float(table[f"{name}_F"].mean())
    return {"J&F": (j + f) / 2, "J": j, "F": f}


def demo_kinds(index: VideoIndex) -> dict[tuple[str, str], str] | None:
    """(video, exp_id) → the kind of expression the demo generator wrote ("appearance",
    "motion", "motion_only", ...), or None outside demo data. Ref-YouTube-VOS's file maps
    videos of every split; MeViS's is keyed by split first."""
    path = Path(index.root) / KINDS_FILE
    if not path.is_file():
        return None
    kinds = json.loads(path.read_text())
    videos = kinds.get(index.split, {}) if index.split in kinds else kinds
    return {(vid, exp): kind for vid, exps in videos.items() for exp, kind in exps.items()}


def summarize_by_kind(table: pd.DataFrame, kinds: dict[tuple[str, str], str]) -> dict:
    """{kind: {"expressions", "model", and every baseline's J&F}} over the table's rows."""
    labels = [kinds.get((v, str(e))) for v, e in zip(table["video"], table["exp_id"], strict=True)]
    result = {}
    for kind, rows in table.assign(kind=labels).dropna(subset=["kind"]).groupby("kind"):
        entry = {"expressions": len(rows), "model": summarize(rows, "model")}
        entry.update({name: summarize(rows, name) for name in BASELINES})
        result[str(kind)] = entry
    return result


def draw_overlays(table: pd.DataFrame, index: VideoIndex, out: Path, count: int) -> list[Path]:
    """Overlay sheets for the `count` best and worst scored expressions."""
    if count <= 0 or table.empty or "model_J" not in table:
        return []
    ranked = table.assign(jf=(table["model_J"] + table["model_F"]) / 2).sort_values("jf")
    picks = {"worst": ranked.head(count), "best": ranked.tail(count)[::-1]}
    by_key = {(e.video, e.exp_id): e for e in index.expressions}
    written = []
    for label, part in picks.items():
        for rank, row in enumerate(part.itertuples(), start=1):
            expression = by_key[(row.video, row.exp_id)]
            frames = index.videos[expression.video].frames
            images = [index.load_frame(expression.video, f) for f in frames]
            preds = [
                np.asarray(Image.open(prediction_path(out, expression, f))) > 0 for f in frames
            ]
            targets = [index.target(expression, f) for f in frames]
            caption = f'{label} {rank}: "{expression.text}"  J&F {row.jf:.3f}'
            path = out / "overlays" / f"{label}_{rank}_{expression.video}_{expression.exp_id}.png"
            save_image(path, overlay_strip(images, preds, targets, caption))
            written.append(path)
    return written


def plot_per_video(table: pd.DataFrame, path: Path, title: str) -> Path:
    """Bars of J&F per video (mean over its expressions), model next to the baselines."""
    names = ["model", *BASELINES]
    jf = {n: (table[f"{n}_J"] + table[f"{n}_F"]) / 2 for n in names}
    per_video = pd.DataFrame({"video": table["video"], **jf}).groupby("video", sort=True).mean()
    return plot_bars(per_video.reset_index(), "video", names, path, title=title)


def write_submission(index: VideoIndex, out: Path) -> Path | None:
    """The server's zip of `out/Annotations` when `index` is a server-scored split, else None."""
    server = SERVER_SPLITS.get((index.dataset, index.split))
    if server is None:
        return None
    meta, layout = server
    return write_submission_zip(
        out / "Annotations",
        index.root / meta,
        out / "submission.zip",
        layout=layout,
        videos=sorted(index.videos),
        frame_sizes={v.name: (v.width, v.height) for v in index.videos.values()},
    )
