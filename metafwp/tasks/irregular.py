"""Irregularly sampled sequence classification: MNIST digits read row by row with a fraction of the
rows dropped (``episodes.IrregularRowsSampler``), classified after the last observed row. A
continuous-time learner (``model.kind=ct_fwp``) reads the spline path through the observations; a
discrete one (``kind: sequence``) reads only the observed rows, with their time and gap as channels.
Tested on the 500 test digits, each read once."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import torch
import torch.nn as nn

from episodes import EpisodeBatch, MNIST5k
from episodes.irregular import IrregularRowsSampler, split_size
from metafwp.errors import ConfigError, DataError
from metafwp.models import LearnerInputs
from metafwp.plots import plot_accuracy_bars
from metafwp.tasks.base import (GeneratorData, Scores, Task, check_test_episodes, last_step_scores,
                                summarise_last_step)


@dataclass
class IrregularRowsData(GeneratorData):
    """``drop_rate``: the fraction of each digit's 28 rows dropped, in [0, 1) (the literature: 0.3,
    0.5, 0.7)."""
    drop_rate: float = 0.3
    num_workers: int = 0

    def check(self) -> None:
        if not 0 <= self.drop_rate < 1:
            raise ConfigError(f"data.drop_rate must be in [0, 1) (the fraction of rows dropped), got {self.drop_rate}")


class IrregularRowsTask(Task):
    """``task: irregular_rows``."""

    name = "irregular_rows"
    DataConfig = IrregularRowsData
    metric = "accuracy"
    higher_is_better = True
    inputs, targets, sequential = "vectors", "classes", False

    @classmethod
    def chance(cls, config) -> float:
        return 10.0

    @classmethod
    def check_config(cls, config) -> None:
        super().check_config(config)
        check_test_episodes(config, split_size("test"), "digits")

    def make_sampler(self, split: str, seed: int) -> IrregularRowsSampler:
        try:
            digits = MNIST5k()
        except (FileNotFoundError, ValueError) as error:
            raise DataError(str(error)) from None
        return IrregularRowsSampler(digits, split, self.data.drop_rate, seed=seed)

    def train_episodes(self) -> IrregularRowsSampler:
        return self.make_sampler("train", self.config.train.seed)

    def validation_episodes(self) -> IrregularRowsSampler:
        return self.make_sampler("val", self.config.eval.val_seed)

    def test_episodes(self) -> dict[str, tuple[IrregularRowsSampler, dict]]:
        return {"": (self.make_sampler("test", self.config.eval.seed), {})}

    def learner_inputs(self) -> LearnerInputs:
        return LearnerInputs("vectors", (IrregularRowsSampler.features,), IrregularRowsSampler.num_classes, 0,
                             "classes")

    def objective(self, model: nn.Module, batch: EpisodeBatch) -> Scores:
        """Cross-entropy of the digit after the last observed row; tallies ``loss_sum``, ``sequences``, ``correct``."""
        return last_step_scores(model(batch)[0], batch)

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict:
        return summarise_last_step(sums)

    def write_figures(self, results: dict[str, dict], run_dir: Path, title: str) -> list[Path]:
        names = list(results)
        return [plot_accuracy_bars(names, [results[n]["accuracy"] for n in names], [results[n]["ci95"] for n in names],
                                   run_dir / "accuracy.png", chance=10.0, title=title)]
