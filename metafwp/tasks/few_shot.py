"""Few-shot image classification: N-way K-shot episodes of an image dataset, under synchronous or
delayed feedback, cross-entropy on the loss mask; tested on held-out classes beside raw-pixel
nearest neighbour and nearest prototypes on the learner's own backbone."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional

import torch
import torch.nn as nn

from episodes import FewShotSampler, ImageClasses
from episodes.feedback import FEEDBACK_MODES
from metafwp.errors import ConfigError
from metafwp.losses import episode_loss
from metafwp.models import LEARNER_KINDS
from metafwp.plots import plot_accuracy_by_shot
from metafwp.tasks.base import Scores, Task
from metafwp.tasks.images import (DATASETS, IMAGE_BASELINES, check_image_baselines, check_splits, converted_shape,
                                  frame_inputs, image_baselines, load_image_split)


@dataclass
class FewShotData:
    """Where episodes come from. ``root`` is the user's data folder (not read for glyphs);
    ``val_split`` the classes validation episodes come from (Default: no validation)."""
    dataset: str = "glyphs"
    root: Optional[str] = None
    train_split: str = "background"
    val_split: Optional[str] = None
    test_split: str = "evaluation"
    n_way: int = 5
    k_shot: int = 1
    n_query: int = 1
    feedback: str = "synchronous"
    rotations: bool = False          # Omniglot: rotated characters as new classes
    image_size: Optional[int] = None  # frames resized to this (Default: as stored)
    channels: Optional[int] = None    # frames converted to this many channels (Default: as stored)
    num_workers: int = 0

    DECIDING_KEYS: ClassVar[tuple[str, ...]] = ("dataset",)
    TEST_KEYS: ClassVar[tuple[str, ...]] = ("test_split",)  # shape only the test: may change on resume and in evaluate

    def unread_keys(self) -> set[str]:
        unread = set()
        if self.dataset == "glyphs":
            unread.add("root")
        if self.dataset != "omniglot":
            unread.add("rotations")
        return unread

    def check(self) -> None:
        for key, value, valid in (("dataset", self.dataset, DATASETS), ("feedback", self.feedback, FEEDBACK_MODES)):
            if value not in valid:
                raise ConfigError(f"Unknown data.{key} {value!r}. Valid: {', '.join(valid)}")


class FewShotScoring:
    """The few-shot objective and its summary for episodes whose shot indices stay below ``num_shots``
    (a sampler's ``num_shots``): what ``evaluate_episodes`` needs of a task."""

    metric = "accuracy"

    def __init__(self, num_shots: int):
        self.num_shots = num_shots

    def objective(self, model: nn.Module, batch) -> Scores:
        """Cross-entropy on the loss mask; tallies ``loss_sum``, ``correct`` and ``scored`` (each by shot)."""
        outputs, _ = model(batch)
        result = episode_loss(outputs, batch, self.num_shots)
        sums = {"loss_sum": result.loss_sum, "correct": result.correct, "scored": result.count}
        return Scores(result.loss, sums, result.episode_correct / result.episode_count, result.count.sum())

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict:
        correct, count = sums["correct"], sums["scored"]
        by_shot = {shot: 100 * (correct[shot] / count[shot]).item() for shot in range(len(count)) if count[shot] > 0}
        return {"loss": (sums["loss_sum"] / count.sum()).item(), "accuracy": 100 * (correct.sum() / count.sum()).item(),
                "by_shot": by_shot}


class FewShotTask(Task):
    """``task: few_shot`` (the default): N-way K-shot classification episodes of ``data.dataset``."""

    name = "few_shot"
    DataConfig = FewShotData
    metric = "accuracy"
    higher_is_better = True
    inputs, targets = "frames", "classes"
    BASELINES = IMAGE_BASELINES
    validation_key = "val_split"

    @classmethod
    def default_baselines(cls, config) -> list[str]:
        return ["pixel_nn"]

    @classmethod
    def chance(cls, config) -> float:
        return 100 / config.data.n_way

    @classmethod
    def check_config(cls, config) -> None:
        """Settings that do not fit together, found before any data is read."""
        super().check_config(config)
        if not LEARNER_KINDS[config.model.kind].sequential and config.data.feedback != "synchronous":
            raise ConfigError(f"model.kind={config.model.kind} reads synchronous episodes; set "
                              f"data.feedback=synchronous")
        check_image_baselines(cls.baselines(config), config.model.kind)
        data = config.data
        check_splits(data.dataset, data.root, data.train_split,
                     {"data.val_split": data.val_split, "data.test_split": data.test_split})

    def load_split(self, split: str) -> ImageClasses:
        """The ImageClasses of one split of ``data.dataset``."""
        return load_image_split(self.data.dataset, self.data.root, split, self.data.rotations, self.progress)

    def frame_shape(self, dataset: ImageClasses) -> tuple[int, int, int]:
        """``(C, H, W)`` of the episodes' frames: the dataset's, converted as ``data`` asks."""
        return converted_shape(dataset, self.data.channels, self.data.image_size)

    def make_sampler(self, split: str, seed: int, key: str = "data") -> FewShotSampler:
        """The seeded episodes of ``split``; a sampler value that does not fit raises a ConfigError."""
        data = self.data
        dataset = self.load_split(split)
        try:
            return FewShotSampler(dataset, data.n_way, data.k_shot, data.n_query, feedback=data.feedback,
                                  seed=seed, frame_shape=self.frame_shape(dataset))
        except ValueError as error:
            raise ConfigError(f"{key} ({split}): {error}") from None

    def train_episodes(self) -> FewShotSampler:
        return self.make_sampler(self.data.train_split, self.config.train.seed)

    def validation_episodes(self) -> FewShotSampler:
        return self.make_sampler(self.data.val_split, self.config.eval.val_seed, key="data.val_split")

    def test_episodes(self) -> dict[str, tuple[FewShotSampler, dict]]:
        return {"": (self.make_sampler(self.data.test_split, self.config.eval.seed, key="data.test_split"), {})}

    def learner_inputs(self):
        return frame_inputs(self.sampler.frame_shape, self.sampler.num_classes)

    @classmethod
    def test_set_name(cls, config) -> str:
        return config.data.test_split

    @property
    def scoring(self) -> FewShotScoring:
        return FewShotScoring(self.sampler.num_shots)

    def objective(self, model: nn.Module, batch) -> Scores:
        return self.scoring.objective(model, batch)

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict:
        return self.scoring.summarise(sums)

    def baseline_learners(self, model: nn.Module, device: torch.device) -> dict[str, tuple[nn.Module, dict]]:
        return image_baselines(self.baselines(self.config), model, self.config.model.kind)

    def write_figures(self, results: dict[str, dict], run_dir: Path, title: str) -> list[Path]:
        n_way = self.data.n_way
        first = None
        if self.data.feedback == "delayed":  # a guesser that never repeats a label already shown
            first = 100 * sum(1 / (n_way - seen) for seen in range(n_way)) / n_way
        return [plot_accuracy_by_shot(results, run_dir / "accuracy_by_shot.png", chance=self.chance(self.config),
                                      first_sighting_chance=first, title=title)]
