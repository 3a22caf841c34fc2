"""The copy task of the RTRL paper (Irie, Gopalakrishnan & Schmidhuber 2024): read a random bit
pattern, then blanks, and recall the pattern, bit by bit, while the blanks are read.

An episode of length 2L holds a pattern of ``n ~ U{1 .. L}`` bits, then ``2L - n`` blanks; the
targets are ``n`` blanks, the pattern, then blanks. The vocabulary is explicit: 0, 1 and
``BLANK`` = 2, in inputs and targets alike. The loss mask is on the ``n`` recall steps, every
recalled bit of either value (the authors' code built its vocabulary so that one bit value was its
padding index, never trained nor scored; this generator does not copy that).
"""
from __future__ import annotations

import torch

from episodes.batch import EpisodeBatch
from episodes.sampling import as_episode_ids, make_rng

BLANK = 2
STREAM_LENGTH, STREAM_BITS = 80, 81


class CopySampler:
    """Copy episodes as EpisodeBatches of token ids.

    Args:
        length: L, the longest pattern (the authors: 50 and 500); every episode has 2L steps.
        dataset_size: with an int N, episode ``i`` is episode ``i mod N`` (the authors: 10,000).
            Default: None, a fresh episode per id.
        seed, generator: the randomness. Default: seed 0.

    ``sample(ids)``: inputs and targets ``[B, 2L]`` int64 in {0, 1, 2}, the loss mask on the recall
    steps, ``shot`` the position, segment 0, ``num_classes=None`` (nothing is fed back).
    """

    vocab_size = num_classes = 3

    def __init__(self, length: int = 50, *, dataset_size: int | None = None, seed: int | None = None,
                 generator: torch.Generator | None = None):
        if not isinstance(length, int) or isinstance(length, bool) or length < 1:
            raise ValueError(f"length must be an int >= 1 (the longest pattern), got {length!r}")
        if dataset_size is not None and (not isinstance(dataset_size, int) or dataset_size < 1):
            raise ValueError(f"dataset_size must be an int >= 1 or None, got {dataset_size!r}")
        self.length, self.dataset_size = length, dataset_size
        self.rng = make_rng(seed, generator)

    def state_dict(self) -> dict:
        """What fixes episode ``i``; equal state dicts give equal episodes."""
        return {"sampler": type(self).__name__, "length": self.length, "dataset_size": self.dataset_size,
                "seed": self.rng.seed}

    def sample(self, episode_ids) -> EpisodeBatch:
        ids = as_episode_ids(episode_ids)
        draws = ids if self.dataset_size is None else ids % self.dataset_size
        B, L = len(ids), self.length
        n = 1 + self.rng.randint(draws, STREAM_LENGTH, torch.full((B,), L))  # pattern lengths [B]
        bits = self.rng.randint(draws, STREAM_BITS, torch.full((B, L), 2))
        position = torch.arange(2 * L).expand(B, 2 * L)
        pattern = position < n[:, None]
        recall = (position >= n[:, None]) & (position < 2 * n[:, None])
        padded = torch.cat([bits, bits], 1)  # bit j of the pattern at j and, for the targets, at n + j
        inputs = torch.where(pattern, padded, BLANK)
        shifted = padded.gather(1, (position - n[:, None]).clamp_min(0))
        targets = torch.where(recall, shifted, BLANK)
        return EpisodeBatch(inputs=inputs, feedback=torch.zeros(B, 2 * L, 0), targets=targets, loss_mask=recall,
                            shot=position + 1, segment=torch.zeros(B, 2 * L, dtype=torch.int64), episode_ids=ids,
                            num_classes=None)
