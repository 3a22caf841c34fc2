"""Multi-query associative recall (MQAR; Arora et al. 2024): key-value pairs, then each key queried
once among random tokens; at a query the learner must output the value paired with that key.
Scored as Zoology: per episode the fraction of its queries answered right, averaged over episodes;
``by_distance`` splits the queries by how far back their pair lies (from the query to the pair's
key), which tells a memory that holds everything from one that holds only a recent window."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from episodes import EpisodeBatch, MQARSampler
from metafwp.errors import ConfigError
from metafwp.plots import plot_accuracy_by_distance
from metafwp.tasks.base import GeneratorData, GeneratorTask, Scores, masked_token_scores

DISTANCE_BINS = (8, 16, 32, 64, 128, 256, 512)   # upper ends: 1 .. 8, 9 .. 16, ...; the last holds the rest


@dataclass
class MQARData(GeneratorData):
    """Episodes of ``length`` tokens over ``vocab_size`` with ``num_pairs`` pairs (``power_a``: the
    gaps' exponent); ``dataset_size`` fixes the training set (Default: a fresh episode per step)."""
    vocab_size: int = 512
    length: int = 64
    num_pairs: int = 4
    power_a: float = 0.01
    dataset_size: Optional[int] = None
    num_workers: int = 0

    def check(self) -> None:
        try:
            MQARSampler(self.vocab_size, self.length, self.num_pairs, power_a=self.power_a,
                        dataset_size=self.dataset_size)
        except ValueError as error:
            raise ConfigError(f"data: {error}") from None


def pair_distances(batch: EpisodeBatch, num_pairs: int) -> torch.Tensor:
    """``[B, L]``: at each query, the steps back to its key in the context (``position - 2 j`` for
    pair j); meaningless elsewhere."""
    context_keys = batch.inputs[:, 0:2 * num_pairs:2]                          # [B, N]
    pair = (batch.inputs[:, :, None] == context_keys[:, None, :]).float().argmax(-1)
    return torch.arange(batch.inputs.shape[1]) - 2 * pair


def distance_bin(distances: torch.Tensor) -> torch.Tensor:
    return torch.bucketize(distances, torch.tensor(DISTANCE_BINS), right=False).clamp_max(len(DISTANCE_BINS) - 1)


class MQARTask(GeneratorTask):
    """``task: mqar``."""

    name = "mqar"
    DataConfig = MQARData

    @classmethod
    def chance(cls, config) -> float:
        """A guess among the values (the upper half of the vocabulary)."""
        vocab = config.data.vocab_size
        return 100 / (vocab - vocab // 2)

    def make_sampler(self, seed: int, dataset_size: int | None = None) -> MQARSampler:
        data = self.data
        return MQARSampler(data.vocab_size, data.length, data.num_pairs, power_a=data.power_a,
                           dataset_size=dataset_size, seed=seed)

    def objective(self, model: nn.Module, batch: EpisodeBatch) -> Scores:
        """Cross-entropy at the queries; tallies ``loss_sum``, ``queries``, ``episode_accuracy`` (the
        sum over episodes of each one's fraction right), ``episodes``, and ``correct`` / ``scored``
        by distance bin."""
        outputs, _ = model(batch)
        mask = batch.loss_mask
        loss_sum, right = masked_token_scores(outputs, batch)
        per_episode = right.sum(1).double() / mask.sum(1)
        bins = distance_bin(pair_distances(batch, self.data.num_pairs))[mask]
        size = len(DISTANCE_BINS)
        sums = {"loss_sum": loss_sum.detach(), "queries": mask.sum(), "episode_accuracy": per_episode.sum(),
                "episodes": torch.tensor(float(batch.batch_size)),
                "correct": torch.bincount(bins, right[mask].long(), minlength=size),
                "scored": torch.bincount(bins, minlength=size)}
        return Scores(loss_sum / mask.sum(), sums, per_episode, mask.sum())

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict:
        """``loss`` per query, ``accuracy`` (Zoology's: per episode, then averaged), ``by_distance``
        (``{"1-8": %, "9-16": %, ...}`` for the bins that hold queries)."""
        lows = (1,) + tuple(b + 1 for b in DISTANCE_BINS[:-1])
        names = [f"{lo}-{hi}" for lo, hi in zip(lows, DISTANCE_BINS[:-1])] + [f">={lows[-1]}"]
        return {"loss": (sums["loss_sum"] / sums["queries"]).item(),
                "accuracy": 100 * (sums["episode_accuracy"] / sums["episodes"]).item(),
                "by_distance": {name: 100 * (c / s).item() for name, c, s in zip(names, sums["correct"], sums["scored"])
                                if s > 0}}

    def write_figures(self, results: dict[str, dict], run_dir: Path, title: str) -> list[Path]:
        return [plot_accuracy_by_distance(results, run_dir / "accuracy_by_distance.png",
                                          chance=self.chance(self.config), title=title)]
