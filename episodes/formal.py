"""Formal languages that need state tracking or counting, for comparing sequence models (Irie &
Gershman 2025, section 3.6; Grazzi et al. 2025; Irie, Csordas & Schmidhuber 2023).

Every episode is one string, its length drawn in ``[min_length, max_length]``, right-padded to
``max_length``; the target of step t is a function of the prefix ``x_1 .. x_t``:

- ``parity``: bits, target the parity of the prefix (``sum mod 2``).
- ``mod_add``: digits ``0 .. m-1``, target the prefix sum mod m.
- ``anbn``: strings over ``{a, b}`` of even length 2n, target whether the prefix is ``a^k b^k``
  (k >= 1). Half the strings are ``a^n b^n``; a quarter have the wrong count (``a^i b^(2n-i)``,
  i != n), a quarter the right count in the wrong order (one a and one b swapped), so the whole
  string's label is balanced and needs both counting and order.

The whole string's label is the target of its last step: the headline of length generalisation.
"""
from __future__ import annotations

import torch

from episodes.batch import PADDING_SEGMENT, PADDING_TOKEN, EpisodeBatch
from episodes.sampling import as_episode_ids, make_rng

LANGUAGES = ("parity", "mod_add", "anbn")
STREAM_LENGTH, STREAM_TOKENS, STREAM_KIND, STREAM_COUNT, STREAM_SWAP = 40, 41, 42, 43, 44


class FormalLanguageSampler:
    """Strings of ``language`` as EpisodeBatches.

    Args:
        language: ``parity``, ``mod_add`` or ``anbn``.
        max_length: the longest string, and T of every batch (>= 1; >= 2 for anbn).
        min_length: the shortest string. Default: 1 (2 for anbn, whose lengths are even).
        modulus: m of ``mod_add`` (>= 2). Default: 2.
        seed, generator: the randomness. Default: seed 0.

    ``sample(range(0, 64))`` gives inputs ``[B, T]`` (int64 token ids in ``[0, V)``, -1 on padding), feedback
    ``[B, T, 0]`` (nothing is fed back), targets ``[B, T]`` int64 in ``[0, num_classes)``, the loss
    mask on every real step, ``shot`` the position ``1 .. length`` (0 on padding), segment 0
    (-1 on padding) and ``num_classes=None`` (no label feedback).
    """

    def __init__(self, language: str, max_length: int, *, min_length: int | None = None, modulus: int = 2,
                 seed: int | None = None, generator: torch.Generator | None = None):
        if language not in LANGUAGES:
            raise ValueError(f"Unknown language {language!r}. Valid: {', '.join(LANGUAGES)}")
        shortest = 2 if language == "anbn" else 1
        min_length = shortest if min_length is None else min_length
        for name, value in (("max_length", max_length), ("min_length", min_length)):
            if not isinstance(value, int) or isinstance(value, bool) or value < shortest:
                raise ValueError(f"{name} must be an int >= {shortest} for {language}, got {value!r}")
        if min_length > max_length:
            raise ValueError(f"min_length={min_length} is above max_length={max_length}")
        if language == "anbn" and min_length == max_length and max_length % 2:
            raise ValueError(f"anbn strings have even length; max_length={max_length} leaves none in "
                             f"[{min_length}, {max_length}]")
        if language == "mod_add" and (not isinstance(modulus, int) or modulus < 2):
            raise ValueError(f"modulus must be an int >= 2, got {modulus!r}")
        self.language, self.max_length, self.min_length = language, max_length, min_length
        self.modulus = modulus if language == "mod_add" else 2
        self.rng = make_rng(seed, generator)

    @property
    def num_steps(self) -> int:
        return self.max_length

    @property
    def vocab_size(self) -> int:
        """V: 2 for parity and anbn (a = 0, b = 1), m for mod_add."""
        return self.modulus

    @property
    def num_classes(self) -> int:
        """Values a target takes: 2, or m for mod_add."""
        return self.modulus

    def state_dict(self) -> dict:
        """What fixes episode ``i``; equal state dicts give equal episodes."""
        return {"sampler": type(self).__name__, "language": self.language, "max_length": self.max_length,
                "min_length": self.min_length, "modulus": self.modulus, "seed": self.rng.seed}

    def lengths(self, ids: torch.Tensor) -> torch.Tensor:
        """Each string's length, int64 ``[B]``."""
        if self.language == "anbn":  # n uniform, length 2n
            low, high = (self.min_length + 1) // 2, self.max_length // 2
            return 2 * (low + self.rng.randint(ids, STREAM_LENGTH, torch.full((len(ids),), high - low + 1)))
        span = self.max_length - self.min_length + 1
        return self.min_length + self.rng.randint(ids, STREAM_LENGTH, torch.full((len(ids),), span))

    def tokens(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The strings, int64 ``[B, T]`` (0 past each length)."""
        B, T = len(ids), self.max_length
        position = torch.arange(T).expand(B, T)
        if self.language != "anbn":
            tokens = self.rng.randint(ids, STREAM_TOKENS, torch.full((B, T), self.modulus))
            return tokens.masked_fill(position >= lengths[:, None], 0)
        n = lengths // 2
        kind = self.rng.uniform(ids, STREAM_KIND, ())  # < 1/2: a^n b^n; < 3/4: wrong count; else swapped
        count = self.rng.randint(ids, STREAM_COUNT, lengths)  # i in [0, 2n] without n
        a_count = torch.where(kind < 0.75, torch.where(kind < 0.5, n, count + (count >= n).long()), n)
        is_b = (position >= a_count[:, None]) & (position < lengths[:, None])
        swap = self.rng.randint(ids, STREAM_SWAP, torch.stack([n, n], 1))  # an a at p, a b at n + p'
        swapped = kind >= 0.75
        rows = torch.arange(B)[swapped]
        is_b[rows, swap[swapped, 0]] = True
        is_b[rows, n[swapped] + swap[swapped, 1]] = False
        return is_b.long()

    def targets(self, tokens: torch.Tensor) -> torch.Tensor:
        """The target of every prefix, int64 ``[B, T]``."""
        if self.language != "anbn":
            return tokens.cumsum(1) % self.modulus
        length = torch.arange(1, tokens.shape[1] + 1)
        a_count = (tokens == 0).cumsum(1)
        leading_a = ((tokens == 1).cumsum(1) == 0).sum(1, keepdim=True)
        return ((length % 2 == 0) & (2 * a_count == length) & (2 * leading_a >= length)).long()

    def sample(self, episode_ids) -> EpisodeBatch:
        ids = as_episode_ids(episode_ids)
        lengths = self.lengths(ids)
        tokens = self.tokens(ids, lengths)
        real = torch.arange(self.max_length).expand(len(ids), -1) < lengths[:, None]
        inputs = tokens.masked_fill(~real, PADDING_TOKEN)
        position = torch.arange(1, self.max_length + 1).expand(len(ids), -1)
        return EpisodeBatch(inputs=inputs, feedback=torch.zeros(len(ids), self.max_length, 0),
                            targets=self.targets(tokens).masked_fill(~real, 0), loss_mask=real,
                            shot=position.masked_fill(~real, 0), segment=torch.zeros_like(position).masked_fill(
                                ~real, PADDING_SEGMENT), episode_ids=ids, num_classes=None)
