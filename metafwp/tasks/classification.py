"""Plain image classification: an image in, its class out, accuracy; nothing is learned in context
(``model.kind=classifier``). The embedded MNIST digits (``MNIST5k``, 4,000 / 500 / 500), trained on
fresh draws of the training images, validated and tested on their splits, each image read once. The
dual-form analysis and the fast weight painters' Fréchet features read networks trained here."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from episodes import EpisodeBatch, LabelledImagesSampler, MNIST5k
from episodes.irregular import split_size
from metafwp.errors import ConfigError, DataError
from metafwp.models import LearnerInputs
from metafwp.plots import plot_accuracy_bars
from metafwp.tasks.base import (GeneratorData, Scores, Task, check_test_episodes, last_step_scores,
                                summarise_last_step)
from metafwp.tasks.images import frame_inputs

DATASETS = ("mnist5k",)


@dataclass
class ClassificationData(GeneratorData):
    """``dataset``: ``mnist5k`` (the embedded digits; ``pip install 'metafwp[mnist]'``)."""
    dataset: str = "mnist5k"
    num_workers: int = 0

    def check(self) -> None:
        if self.dataset not in DATASETS:
            raise ConfigError(f"Unknown data.dataset {self.dataset!r}. Valid: {', '.join(DATASETS)}")


class ClassificationTask(Task):
    """``task: classification``."""

    name = "classification"
    DataConfig = ClassificationData
    metric = "accuracy"
    higher_is_better = True
    inputs, targets, sequential = "frames", "classes", False

    @classmethod
    def chance(cls, config) -> float:
        return 10.0

    @classmethod
    def check_config(cls, config) -> None:
        super().check_config(config)
        check_test_episodes(config, split_size("test"), "images")

    def make_sampler(self, split: str, seed: int) -> LabelledImagesSampler:
        try:
            digits = MNIST5k()
        except (FileNotFoundError, ValueError) as error:
            raise DataError(str(error)) from None
        return LabelledImagesSampler(digits, split, seed=seed)

    def train_episodes(self) -> LabelledImagesSampler:
        return self.make_sampler("train", self.config.train.seed)

    def validation_episodes(self) -> LabelledImagesSampler:
        return self.make_sampler("val", self.config.eval.val_seed)

    def test_episodes(self) -> dict[str, tuple[LabelledImagesSampler, dict]]:
        return {"": (self.make_sampler("test", self.config.eval.seed), {})}

    def learner_inputs(self) -> LearnerInputs:
        return frame_inputs(tuple(self.sampler.images.images.shape[1:]), self.sampler.num_classes)

    def objective(self, model: nn.Module, batch: EpisodeBatch) -> Scores:
        """Cross-entropy of each image's class; tallies ``loss_sum``, ``sequences``, ``correct``."""
        return last_step_scores(model(batch)[0], batch)

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict:
        return summarise_last_step(sums)

    def write_figures(self, results: dict[str, dict], run_dir: Path, title: str) -> list[Path]:
        names = list(results)
        return [plot_accuracy_bars(names, [results[n]["accuracy"] for n in names], [results[n]["ci95"] for n in names],
                                   run_dir / "accuracy.png", chance=10.0, title=title)]
