"""Ref-DAVIS17 evaluation: per-variant index maps scored with unsupervised DAVIS J&F.

The prepared index's expression ids follow the protocol (object k, variant a → 4k + a), so
for each variant the K objects' probabilities of a sequence become one index map (see
`rvos.eval.refdavis`), saved as `<out>/anno_<a>/<seq>/<idx:05d>.png` and scored against the
untouched DAVIS tree. One variant is held in memory at a time. Under torchrun each rank
writes the maps of its share of the sequences, and rank 0 scores them all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from rvos.data.davis import SOURCE_FILE
from rvos.data.index import VideoIndex
from rvos.engine.distributed import barrier, is_main, shard
from rvos.engine.infer import expression_probabilities
from rvos.errors import DataError
from rvos.eval.refdavis import N_VARIANTS, evaluate_refdavis, write_variant
from rvos.io import read_json


def evaluate_refdavis_split(
    model: nn.Module,
    probabilities: Callable[[dict], torch.Tensor],
    index: VideoIndex,
    prepared: Path,
    out: Path,
    *,
    size: tuple[int, int],
    window: int,
    device: torch.device,
) -> dict | None:
    """{"model": {"J&F", "J", "F"}, "variants": {a: DAVIS summary}}, CSVs under out/scores;
    on ranks other than 0, which only predict their share of the sequences, None."""
    model.to(device).eval()
    by_object = _expressions_by_object(index)
    mine = shard(sorted(by_object))
    for seq in tqdm(mine, desc="evaluate davis", unit="seq", disable=not is_main()):
        for variant in range(N_VARIANTS):
            probs = [
                expression_probabilities(
                    model,
                    probabilities,
                    index,
                    expressions[variant],
                    size=size,
                    window=window,
                    device=device,
                )
                for _, expressions in sorted(by_object[seq].items())
            ]
            write_variant(out, variant, seq, probs)
    barrier()  # every rank's maps are written before rank 0 reads them
    if not is_main():
        return None
    davis_root = read_json(prepared / SOURCE_FILE)["davis_root"]
    scores = evaluate_refdavis(
        out, davis_root, subset="val", sequences=sorted(by_object), out_dir=out / "scores"
    )
    mean = {"J&F": scores["J&F-Mean"], "J": scores["J-Mean"], "F": scores["F-Mean"]}
    return {"model": mean, "variants": {str(a): s for a, s in scores["variants"].items()}}


def _expressions_by_object(index: VideoIndex) -> dict[str, dict[int, dict[int, object]]]:
    """{seq: {object k: {variant a: expression}}}, checking that every variant is there."""
    grouped: dict[str, dict[int, dict[int, object]]] = {}
    for expression in index.expressions:
        k, a = divmod(int(expression.exp_id), N_VARIANTS)
        grouped.setdefault(expression.video, {}).setdefault(k, {})[a] = expression
    for seq, objects in grouped.items():
        for k, variants in objects.items():
            if len(variants) != N_VARIANTS:
                raise DataError(
                    f"{index.dataset}/{index.split}: {seq} object {k} has expression variants "
                    f"{sorted(variants)}, expected 0..{N_VARIANTS - 1} (ids 4k + a)"
                )
    return grouped
