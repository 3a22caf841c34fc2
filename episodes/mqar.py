"""Multi-query associative recall (MQAR; Arora et al. 2024, Zoology's distribution): a context of
key-value pairs, then each key queried once among random tokens; at a query's key the learner must
output the value paired with it.

An episode of length L over a vocabulary of V tokens holds ``num_pairs`` pairs ``k1 v1 .. kN vN``
(keys distinct, from ``1 .. V/2 - 1``; values distinct, from ``V/2 .. V - 1``), then the query
region: key j at offset ``2 gap_j``, the gaps distinct and drawn with probability proportional to
``i^(a - 1)`` for ``i = 1 .. (L - 2N) / 2`` (``power_a`` a = 0.01, close to ``1/i``: most queries
come soon after the context), every other position a random token of ``0 .. V - 1``. The label,
the value, sits at the query key's position and only there. Drawn from metafwp's own seeded
generator (Zoology's arrays are not reproduced bit for bit).
"""
from __future__ import annotations

import torch

from episodes.batch import EpisodeBatch
from episodes.sampling import as_episode_ids, choose_distinct, make_rng

STREAM_KEYS, STREAM_VALUES, STREAM_GAPS, STREAM_NOISE = 35, 36, 37, 38  # choose_distinct uses 2 s and 2 s + 1


class MQARSampler:
    """MQAR episodes as EpisodeBatches of token ids.

    Args:
        vocab_size: V, more than ``length`` (so the N keys fit in the lower half, ``1 .. V/2 - 1``,
            and the values in the upper).
        length: L, even.
        num_pairs: N key-value pairs, with ``4 N <= L``.
        power_a: the gap distribution's exponent a (Zoology's 0.01).
        dataset_size: with an int N, episode ``i`` is episode ``i mod N`` (a fixed training set, as
            Zoology's). Default: None, a fresh episode per id.
        seed, generator: the randomness. Default: seed 0.

    ``sample(ids)``: inputs ``[B, L]`` int64 tokens, targets ``[B, L]`` (the value at each query key,
    0 elsewhere), the loss mask at the N query keys, ``shot`` the position, segment 0.
    """

    def __init__(self, vocab_size: int = 8192, length: int = 64, num_pairs: int = 4, *, power_a: float = 0.01,
                 dataset_size: int | None = None, seed: int | None = None, generator: torch.Generator | None = None):
        for name, value in (("vocab_size", vocab_size), ("length", length), ("num_pairs", num_pairs)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if length % 2:
            raise ValueError(f"length must be even (pairs and queries take two positions each), got {length}")
        if 4 * num_pairs > length:
            raise ValueError(f"{num_pairs} pairs need 2 N + 2 N = {4 * num_pairs} positions, more than length={length}")
        if vocab_size <= length:
            raise ValueError(f"vocab_size must be more than length={length}, got {vocab_size}")
        if not power_a > 0:
            raise ValueError(f"power_a must be > 0, got {power_a}")
        if dataset_size is not None and (not isinstance(dataset_size, int) or dataset_size < 1):
            raise ValueError(f"dataset_size must be an int >= 1 or None, got {dataset_size!r}")
        self.vocab_size, self.length, self.num_pairs, self.power_a = vocab_size, length, num_pairs, power_a
        self.dataset_size = dataset_size
        self.rng = make_rng(seed, generator)

    @property
    def num_classes(self) -> int:
        return self.vocab_size

    def state_dict(self) -> dict:
        """What fixes episode ``i``; equal state dicts give equal episodes."""
        return {"sampler": type(self).__name__, "vocab_size": self.vocab_size, "length": self.length,
                "num_pairs": self.num_pairs, "power_a": self.power_a, "dataset_size": self.dataset_size,
                "seed": self.rng.seed}

    def gaps(self, ids: torch.Tensor) -> torch.Tensor:
        """N distinct gaps per episode, int64 ``[B, N]``, drawn without replacement with probability
        proportional to ``i^(a - 1)`` (the largest perturbed log-weights: Gumbel top-k)."""
        space = (self.length - 2 * self.num_pairs) // 2
        log_weight = (self.power_a - 1) * torch.arange(1, space + 1, dtype=torch.float64).log()
        u = self.rng.uniform(ids, STREAM_GAPS, (space,)).clamp_min(2.0**-33)
        return (log_weight - (-u.log()).log()).topk(self.num_pairs, dim=-1).indices

    def sample(self, episode_ids) -> EpisodeBatch:
        ids = as_episode_ids(episode_ids)
        draws = ids if self.dataset_size is None else ids % self.dataset_size
        B, L, N, V = len(ids), self.length, self.num_pairs, self.vocab_size
        keys = 1 + choose_distinct(self.rng, draws, STREAM_KEYS, V // 2 - 1, N)
        values = V // 2 + choose_distinct(self.rng, draws, STREAM_VALUES, V - V // 2, N)
        inputs = self.rng.randint(draws, STREAM_NOISE, torch.full((B, L), V))  # the random non-query tokens
        inputs[:, 0:2 * N:2], inputs[:, 1:2 * N:2] = keys, values
        position = 2 * N + 2 * self.gaps(draws)  # [B, N]
        inputs.scatter_(1, position, keys)
        targets = torch.zeros(B, L, dtype=torch.int64).scatter_(1, position, values)
        mask = torch.zeros(B, L, dtype=torch.bool).scatter_(1, position, True)
        steps = torch.arange(1, L + 1).expand(B, L)
        return EpisodeBatch(inputs=inputs, feedback=torch.zeros(B, L, 0), targets=targets, loss_mask=mask,
                            shot=steps.clone(), segment=torch.zeros(B, L, dtype=torch.int64), episode_ids=ids,
                            num_classes=None)
