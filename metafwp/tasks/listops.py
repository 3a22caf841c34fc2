"""Sequential ListOps (Irie et al. 2021, after Nangia & Bowman 2018): read a prefix expression of
MIN, MAX and FIRST over digits, of one exact nesting depth, token by token, and output its value
(10 classes) at the last token."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from episodes import EpisodeBatch, ListOpsSampler
from metafwp.errors import ConfigError
from metafwp.plots import plot_accuracy_bars
from metafwp.tasks.base import GeneratorData, GeneratorTask, Scores, last_step_scores, summarise_last_step


@dataclass
class ListOpsData(GeneratorData):
    """Expressions of operator ``depth`` (the authors: 10 and 15); ``dataset_size`` of the training
    set (None: a fresh expression per episode)."""
    depth: int = 10
    dataset_size: Optional[int] = None
    num_workers: int = 0

    def check(self) -> None:
        try:
            ListOpsSampler(self.depth, dataset_size=self.dataset_size)
        except ValueError as error:
            raise ConfigError(f"data: {error}") from None


class ListOpsTask(GeneratorTask):
    """``task: listops``."""

    name = "listops"
    DataConfig = ListOpsData

    @classmethod
    def chance(cls, config) -> float:
        return 100 / ListOpsSampler.num_classes

    def make_sampler(self, seed: int, dataset_size: int | None = None) -> ListOpsSampler:
        return ListOpsSampler(self.data.depth, dataset_size=dataset_size, seed=seed)

    def objective(self, model: nn.Module, batch: EpisodeBatch) -> Scores:
        """Cross-entropy at each expression's last token; tallies ``loss_sum``, ``sequences``, ``correct``."""
        return last_step_scores(model(batch)[0], batch)

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict:
        return summarise_last_step(sums)

    def write_figures(self, results: dict[str, dict], run_dir: Path, title: str) -> list[Path]:
        names = list(results)
        return [plot_accuracy_bars(names, [results[n]["accuracy"] for n in names], [results[n]["ci95"] for n in names],
                                   run_dir / "accuracy.png", chance=self.chance(self.config), title=title)]
