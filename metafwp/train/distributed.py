"""Data-parallel training read from the ``torchrun`` environment (RANK, LOCAL_RANK, WORLD_SIZE)."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist

from metafwp.errors import ConfigError


@dataclass
class Distributed:
    rank: int
    world_size: int
    device: torch.device
    joined_group: bool = False  # this run joined the process group, so it leaves it at the end

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over ranks, in place (unchanged when alone)."""
        if self.world_size > 1:
            dist.all_reduce(tensor)
        return tensor

    def gather(self, value) -> list:
        """``value`` of every rank, in rank order (any picklable object)."""
        if self.world_size == 1:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: this rank's GPU when CUDA is available, else the CPU."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but CUDA is not available here; use train.device=cpu (or auto)")
    return device


def start_distributed(device_name: str) -> Distributed:
    """Join the process group when launched by torchrun (nccl on GPU, gloo on CPU), else run alone;
    a group the caller joined already (a script that trains several runs) is used as it is."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = resolve_device(device_name, local_rank)
    if world_size == 1:
        return Distributed(0, 1, device)
    if int(os.environ.get("RANK", 0)) != 0:  # results and warnings print once, from rank 0
        warnings.simplefilter("ignore")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    joined_group = not dist.is_initialized()
    if joined_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), device, joined_group)


def stop_distributed(ranks: Distributed) -> None:
    """Leave the process group if ``ranks`` joined it."""
    if ranks.joined_group and dist.is_initialized():
        dist.destroy_process_group()
