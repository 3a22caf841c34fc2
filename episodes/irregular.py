"""Irregularly sampled sequences: each MNIST digit read as 28 rows of 28 pixels at times 0 .. 27,
with a fixed fraction of its rows dropped at random (the same rows across channels, as the
neural-CDE literature's protocol, Kidger et al. 2020), to classify after its last observed row.

The 5,000 embedded digits (``MNIST5k``) are split once, 4,000 / 500 / 500
(``datasets/splits/mnist5k.json``). Episode i of ``train`` is a digit drawn uniformly with the
episode's randomness; episode i of ``val`` and ``test`` is that split's i-th digit, so a test of
500 episodes reads each once. The dropped rows are drawn per episode from the sampler's seed.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from episodes.batch import EpisodeBatch
from episodes.sampling import as_episode_ids, choose_distinct, make_rng

SPLITS_FILE = Path(__file__).parent / "datasets" / "splits" / "mnist5k.json"


def split_size(split: str) -> int:
    """How many of the 5,000 digits the shipped split puts in ``split`` (train, val or test)."""
    return len(json.loads(SPLITS_FILE.read_text())[split])


def split_indices(split: str) -> torch.Tensor:
    """The indices into ``MNIST5k()`` of the shipped split's ``split`` (train, val or test)."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"Unknown split {split!r}. Valid: train, val, test")
    return torch.tensor(json.loads(SPLITS_FILE.read_text())[split])


def pick_examples(rng, stream: int, split: str, indices: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The digit of each episode id: a uniform draw from ``indices`` (``train``, with ``rng``'s
    ``stream``), else the split's id-th digit (ids beyond the split are a ValueError)."""
    if split == "train":
        picks = rng.randint(ids, stream, torch.full((len(ids),), len(indices)))
    else:
        if int(ids.max()) >= len(indices):
            raise ValueError(f"the {split} split holds {len(indices)} digits; episode ids go up to {len(indices) - 1}")
        picks = ids
    return indices[picks]

ROWS = 28
STREAM_DIGIT, STREAM_DROP = 70, 71   # choose_distinct uses 2 s and 2 s + 1


class IrregularRowsSampler:
    """Row sequences of MNIST digits with ``floor(28 drop_rate)`` rows dropped.

    Args:
        digits: an ImageClasses of 28x28 digits (``MNIST5k()``).
        split: ``train``, ``val`` or ``test`` of the shipped split.
        drop_rate: the fraction of rows dropped, in [0, 1).
        seed, generator: the randomness. Default: seed 0.

    ``sample(ids)``: vector inputs ``[B, L, 30]`` over the L = 28 - floor(28 r) observed rows in time
    order, channels ``(t / 27, gap to the previous observation / 27 (from t = -1), 28 pixels / 255)``;
    targets the digit, scored at the last row (``loss_mask``); ``shot`` the row's time + 1.
    """

    num_classes = 10
    features = 2 + ROWS

    def __init__(self, digits, split: str = "train", drop_rate: float = 0.0, *, seed: int | None = None,
                 generator: torch.Generator | None = None):
        self.indices = split_indices(split)
        if not 0 <= drop_rate < 1:
            raise ValueError(f"drop_rate must be in [0, 1) (the fraction of rows dropped), got {drop_rate!r}")
        if tuple(digits.images.shape[1:]) != (1, ROWS, ROWS) or len(digits.labels) != 5000:
            raise ValueError(f"the row sequences read the 5,000 28x28 digits of MNIST5k(), got {len(digits.labels)} "
                             f"images of {tuple(digits.images.shape[1:])}")
        self.digits, self.split, self.drop_rate = digits, split, drop_rate
        self.num_dropped = int(ROWS * drop_rate)
        self.rng = make_rng(seed, generator)

    def __len__(self) -> int:
        return len(self.indices)

    def state_dict(self) -> dict:
        return {"sampler": type(self).__name__, "split": self.split, "drop_rate": self.drop_rate,
                "seed": self.rng.seed}

    def sample(self, episode_ids) -> EpisodeBatch:
        ids = as_episode_ids(episode_ids)
        B, L = len(ids), ROWS - self.num_dropped
        examples = pick_examples(self.rng, STREAM_DIGIT, self.split, self.indices, ids)
        kept = torch.ones(B, ROWS, dtype=torch.bool)
        if self.num_dropped:
            kept.scatter_(1, choose_distinct(self.rng, ids, STREAM_DROP, ROWS, self.num_dropped), False)
        times = torch.arange(ROWS).expand(B, ROWS)[kept].view(B, L)                     # ascending
        rows = self.digits.images[examples, 0].float() / 255                              # [B, 28, 28]
        pixels = rows.gather(1, times[:, :, None].expand(B, L, ROWS))
        gaps = torch.diff(times, dim=1, prepend=torch.full((B, 1), -1))
        inputs = torch.cat([times[:, :, None] / (ROWS - 1), gaps[:, :, None] / (ROWS - 1), pixels], 2)
        labels = self.digits.labels[examples]
        mask = torch.zeros(B, L, dtype=torch.bool)
        mask[:, -1] = True
        return EpisodeBatch(inputs=inputs, feedback=torch.zeros(B, L, 0), targets=labels[:, None].expand(B, L).clone(),
                            loss_mask=mask, shot=times + 1, segment=torch.zeros(B, L, dtype=torch.int64),
                            episode_ids=ids, num_classes=None)
