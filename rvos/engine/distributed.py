"""Runs under torchrun: the process group, this rank's device, and the few collectives needed.

A stage started by `torchrun` (which sets WORLD_SIZE, RANK and LOCAL_RANK) joins a process
group: NCCL when it runs on GPUs, each rank on GPU LOCAL_RANK; gloo on CPUs. A plain
`python -m stages.x` run creates no group, and every helper here then behaves as for one
process, rank 0 of 1, so the engine calls them unconditionally.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from rvos.engine.tracking import Tracker, start_run
from rvos.errors import RvosError

T = TypeVar("T")

# Evaluation leaves the other ranks waiting while rank 0 alone scores, plots and zips a split,
# which on a real benchmark takes longer than the collectives' default 10-minute timeout.
TIMEOUT = timedelta(hours=1)


def resolve_device(name: str) -> torch.device:
    """`base.device` ("auto", "cpu" or "cuda") as a device; "auto" prefers CUDA."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RvosError("params.yaml: base.device = 'cuda': no CUDA device is available")
    return torch.device(name)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Whether this process writes files, logs to MLflow and shows progress bars."""
    return rank() == 0


def setup(device_name: str) -> torch.device:
    """This process's device; under torchrun, also join the process group."""
    device = resolve_device(device_name)
    if "WORLD_SIZE" not in os.environ:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", _local_gpu())
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=TIMEOUT, device_id=device)
    else:
        dist.init_process_group("gloo", timeout=TIMEOUT)
    return device


def _local_gpu() -> int:
    local, count = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
    if local >= count:
        raise RvosError(
            f"torchrun started local rank {local} on a node with {count} GPUs: expected "
            f"--nproc_per_node {count} or fewer"
        )
    return local


def teardown() -> None:
    if is_distributed():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device_name: str) -> Iterator[torch.device]:
    """`setup` on entry (yielding the device), `teardown` on exit, errors included."""
    device = setup(device_name)
    try:
        yield device
    finally:
        teardown()


def shard(items: list[T]) -> list[T]:
    """This rank's share of `items`: every world_size-th one from position `rank`."""
    return items[rank() :: world_size()]


def all_gather_objects(value: Any) -> list[Any]:
    """Every rank's `value` (picklable), in rank order, on every rank."""
    if not is_distributed():
        return [value]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of `tensor` over ranks (a detached copy; the input itself is left alone)."""
    if not is_distributed():
        return tensor.detach()
    total = tensor.detach().clone()
    dist.all_reduce(total)
    return total / world_size()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


class _SilentTracker(Tracker):
    """What ranks other than 0 log to: nothing, so a stage is one MLflow run."""

    def __init__(self):
        super().__init__(None)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, path, folder: str | None = None) -> None:
        pass

    def log_artifacts(self, path, folder: str | None = None) -> None:
        pass


@contextlib.contextmanager
def main_rank_run(**run: Any) -> Iterator[Tracker]:
    """`tracking.start_run(**run)` on rank 0; a tracker that logs nothing on the others."""
    if not is_main():
        yield _SilentTracker()
        return
    with start_run(**run) as tracker:
        yield tracker
