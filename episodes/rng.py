"""Counter-based random numbers: episode ``i`` is a pure function of ``(seed, i)``.

A ``torch.Generator`` is a stream: the numbers an episode gets depend on how many were drawn
before it, so batch size, DataLoader workers and ranks would all change the episodes. Here every
random number is a hash of ``(seed, episode id, stream, counter)`` instead (the idea behind
Philox), computed with vectorised integer ops on any device. So episode 17 is the same episode
whether it is drawn alone, in a batch of 1000, by worker 3 of 4 or on the GPU.

The hash is a 32-bit integer mixer (xor-shift / multiply rounds). All multipliers are odd and
below 2**31 and values stay below 2**32, so every product fits in int64 without overflow.
"""
from __future__ import annotations

import functools
import math

import torch

MASK32 = 0xFFFFFFFF
_ROUNDS = ((16, 0x7FEB352D), (15, 0x2C1B3C6D))
_GOLDEN = 0x61C88647  # odd, below 2**31: spreads consecutive counters before mixing


def mix32(x: torch.Tensor) -> torch.Tensor:
    """Bijective 32-bit mixer on an int64 tensor holding values in [0, 2**32)."""
    for shift, multiplier in _ROUNDS:
        x = x ^ (x >> shift)
        x = (x * multiplier) & MASK32
    return x ^ (x >> 16)


def mix32_int(x: int) -> int:
    """The same mixer on a Python int (the test oracle and the seed folding)."""
    for shift, multiplier in _ROUNDS:
        x ^= x >> shift
        x = (x * multiplier) & MASK32
    return x ^ (x >> 16)


def _fold64(value: int) -> int:
    """A 64-bit integer folded into 32 bits through the mixer."""
    value &= (1 << 64) - 1
    return mix32_int(mix32_int(value & MASK32) ^ (value >> 32))


@functools.lru_cache(maxsize=256)
def _weyl_offsets(stream: int, count: int, device: torch.device) -> torch.Tensor:
    """Counters ``stream * 2**24 + j`` spread by the golden-ratio step: int64 ``[count]`` (cached,
    as a sampler asks for the same few streams and sizes on every call; never written to)."""
    counter = (stream << 24) + torch.arange(count, dtype=torch.int64, device=device)
    return counter * _GOLDEN & MASK32


class EpisodeRNG:
    """Random numbers addressed by ``(episode id, stream, counter)``.

    Args:
        seed: any non-negative int; ``EpisodeRNG.from_generator`` draws one from a
            ``torch.Generator`` instead.

    Each sampling step uses its own ``stream`` number so that no two steps share numbers.
    Uniforms have 32 bits of resolution.
    """

    def __init__(self, seed: int):
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.seed = seed
        self._seed_key = _fold64(seed)
        self._last_keys = None  # (ids, ids._version, keys) of the latest episode_keys call

    @classmethod
    def from_generator(cls, generator: torch.Generator) -> "EpisodeRNG":
        """Seed from a ``torch.Generator`` (one draw from it; nothing global is touched)."""
        return cls(int(torch.randint(0, 2**62, (), generator=generator)))

    def bits(self, episode_ids: torch.Tensor, stream: int, shape: tuple[int, ...]) -> torch.Tensor:
        """Uniform 32-bit integers, int64 ``[B, *shape]``, for episode ids ``[B]``.

        ``stream`` in ``[0, 256)`` and up to 2**24 numbers per stream: draw j of a stream is
        counter ``stream * 2**24 + j`` of the episode's Weyl sequence, so no two draws of an episode
        share an input, and the mixer (a bijection) gives each its own output.
        """
        count = math.prod(shape)
        if not 0 <= stream < 256 or count >= 1 << 24:
            raise ValueError(f"stream must be in [0, 256) and shape hold < 2**24 numbers, got {stream}, {shape}")
        base = self.episode_keys(episode_ids)
        x = (base[:, None] + _weyl_offsets(stream, count, base.device)) & MASK32
        return mix32(x).reshape(base.shape[0], *shape)

    def episode_keys(self, episode_ids: torch.Tensor) -> torch.Tensor:
        """The 32-bit key of each episode, a hash of ``(seed, id)``: int64 ``[B]``.

        One sampling call asks for several streams of the same episodes, so the keys of the latest
        ``episode_ids`` tensor are kept until it changes (a new tensor, or an in-place write).
        """
        last = self._last_keys
        if last is not None and last[0] is episode_ids and last[1] == episode_ids._version:
            return last[2]
        ids = episode_ids.to(torch.int64)
        keys = mix32(mix32((ids & MASK32) ^ self._seed_key) ^ (ids >> 32))
        self._last_keys = (episode_ids, episode_ids._version, keys)
        return keys

    def uniform(self, episode_ids: torch.Tensor, stream: int, shape: tuple[int, ...]) -> torch.Tensor:
        """Uniforms in [0, 1), float64 ``[B, *shape]``."""
        return self.bits(episode_ids, stream, shape).to(torch.float64) * 2.0**-32

    def normal(self, episode_ids: torch.Tensor, stream: int, shape: tuple[int, ...]) -> torch.Tensor:
        """Standard normals (Box-Muller), float64 ``[B, *shape]``."""
        u = self.uniform(episode_ids, stream, (2, *shape))
        radius = torch.sqrt(-2.0 * torch.log1p(-u[:, 0]))  # 1 - u is in (0, 1]
        return radius * torch.cos(2.0 * math.pi * u[:, 1])

    def randint(self, episode_ids: torch.Tensor, stream: int, high: torch.Tensor) -> torch.Tensor:
        """Integers uniform in ``[0, high)`` elementwise; ``high`` int64 ``[B, *shape]``."""
        u = self.uniform(episode_ids, stream, tuple(high.shape[1:]))
        return torch.minimum((u * high).to(torch.int64), high - 1)

    def python_randoms(self, episode_ids: torch.Tensor, stream: int) -> list:
        """One ``random.Random`` per episode, seeded from 64 of its bits: for generators that draw
        step by step in Python (a program, a tree), each episode's draws its own whatever the batch."""
        import random

        halves = self.bits(episode_ids, stream, (2,)).tolist()
        return [random.Random((high << 32) | low) for high, low in halves]

    def permutation(self, episode_ids: torch.Tensor, stream: int, shape: tuple[int, ...]) -> torch.Tensor:
        """Uniform random permutations of the last axis, int64 ``[B, *shape]``.

        Sort keys are the 32 random bits above the position, so they are distinct and the
        order is the same on every device and sort implementation.
        """
        if shape[-1] >= 1 << 20:
            raise ValueError(f"permutation length must be below 2**20, got {shape[-1]}")
        positions = torch.arange(shape[-1], dtype=torch.int64, device=episode_ids.device)
        keys = (self.bits(episode_ids, stream, shape) << 20) | positions
        return keys.argsort(dim=-1)
