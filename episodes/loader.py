"""`torch.utils.data` integration: batches of episodes as an IterableDataset.

Batch ``j`` always holds episodes ``j * batch_size .. (j + 1) * batch_size - 1``. Rank ``r`` of
``R`` takes batches ``r, r + R, r + 2R, ...``; inside a rank, DataLoader worker ``w`` of ``W`` takes
every W-th of those, and the DataLoader hands them back round-robin, so each rank sees the same
batches in the same order whatever the number of workers, and ranks never share an episode.
"""
from __future__ import annotations

import os

import torch
from torch.utils.data import IterableDataset, get_worker_info


def distributed_rank() -> tuple[int, int]:
    """``(rank, world_size)`` from torch.distributed when initialised, else the torchrun env."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class EpisodeStream(IterableDataset):
    """Batches from any sampler with ``sample(episode_ids)``, for ``DataLoader(stream, batch_size=None)``.

    Args:
        sampler: a FewShotSampler, RegressionSampler, BootstrapSampler, MultiTaskStream or ContinualSampler.
        batch_size: episodes per batch.
        num_batches: batches per rank, then the stream ends (a fixed evaluation set). Default:
            None, endless.
        start: the first batch of this rank, counted per rank (resume a run with ``start=step``).
            Default: 0.
        rank, world_size: Default: read from torch.distributed or ``RANK`` / ``WORLD_SIZE``.

    With the dataset on the GPU (``dataset.to("cuda")``) iterate in the main process
    (``num_workers=0``) or directly: ``for batch in EpisodeStream(...)``.
    """

    def __init__(self, sampler, batch_size: int, *, num_batches: int | None = None, start: int = 0,
                 rank: int | None = None, world_size: int | None = None):
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if num_batches is not None and num_batches < 0 or start < 0:
            raise ValueError(f"num_batches and start must be >= 0, got {num_batches!r}, {start!r}")
        env_rank, env_world = distributed_rank()
        self.rank = env_rank if rank is None else rank
        self.world_size = env_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in [0, world_size={self.world_size}), got {self.rank}")
        self.sampler, self.batch_size, self.num_batches, self.start = sampler, batch_size, num_batches, start

    def batch_ids(self, index: int) -> range:
        """Episode ids of this rank's batch ``index``."""
        first = (self.rank + self.world_size * index) * self.batch_size
        return range(first, first + self.batch_size)

    def __iter__(self):
        worker = get_worker_info()
        worker_id, num_workers = (0, 1) if worker is None else (worker.id, worker.num_workers)
        index = self.start + worker_id
        while self.num_batches is None or index < self.start + self.num_batches:
            yield self.sampler.sample(self.batch_ids(index))
            index += num_workers

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("an endless EpisodeStream has no length; pass num_batches")
        return self.num_batches
