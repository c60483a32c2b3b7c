"""Data parallelism under ``torchrun``: items sharded round-robin, merged on rank 0."""

from __future__ import annotations

import os
from typing import Any

import torch


def world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the torchrun environment (``(0, 1, 0)`` alone)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))


def init(device: str) -> str:
    """Join the process group when launched by torchrun; return the device this rank uses."""
    _, size, local = world()
    if size <= 1:
        return device
    import torch.distributed as dist

    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu"


def shard(indices: list[int]) -> list[int]:
    rank, size, _ = world()
    return indices[rank::size] if size > 1 else indices


def gather_dict(part: dict[int, Any]) -> dict[int, Any] | None:
    """Merge every rank's ``{item index: raw result}`` on rank 0; other ranks get None."""
    rank, size, _ = world()
    if size <= 1:
        return part
    import torch.distributed as dist

    parts: list[Any] | None = [None] * size if rank == 0 else None
    dist.gather_object(part, parts, dst=0)
    if rank != 0:
        return None
    merged: dict[int, Any] = {}
    for p in parts or []:
        merged.update(p)
    return merged


def barrier() -> None:
    _, size, _ = world()
    if size > 1:
        import torch.distributed as dist

        dist.barrier()


def is_main() -> bool:
    return world()[0] == 0
