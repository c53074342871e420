"""torch.distributed set-up for `torchrun` launches (DDP): gloo on CPU, nccl on CUDA."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) when not launched by it."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def setup(device: torch.device) -> None:
    rank, local, size = world()
    if size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=size)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over processes (no-op without torch.distributed)."""
    if dist.is_initialized():
        nccl = dist.get_backend() == "nccl"  # nccl reduces device tensors only
        buf = values.cuda() if nccl else values.clone()
        dist.all_reduce(buf)
        values = buf.cpu() if nccl else buf
    return values


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
