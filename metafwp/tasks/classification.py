"""Plain image classification: an image in, its class out, accuracy; nothing is learned in context
(``model.kind=classifier``). The embedded MNIST digits (``MNIST5k``, 4,000 / 500 / 500) or the glyph
set's 383 training classes split by drawer (0-15 / 16-17 / 18-19), trained on fresh draws of the
training images, validated and tested on their splits, each image read once. The dual-form
analysis and the image-generation task's Fréchet features read networks trained here."""
from __future__ import annotations

from dataclasses import dataclass

from episodes.labelled_images import (IMAGE_DATASETS, LabelledImagesSampler, dataset_classes, labelled_images,
                                      split_images)
from metafwp.errors import ConfigError, DataError
from metafwp.models import LearnerInputs
from metafwp.tasks.base import GeneratorData, ScoredAtLastStep, SplitTask, check_test_episodes
from metafwp.tasks.images import frame_inputs


@dataclass
class ClassificationData(GeneratorData):
    """``dataset``: ``mnist5k`` (the embedded digits; ``pip install 'metafwp[mnist]'``) or ``glyphs``."""
    dataset: str = "mnist5k"
    num_workers: int = 0

    def check(self) -> None:
        if self.dataset not in IMAGE_DATASETS:
            raise ConfigError(f"Unknown data.dataset {self.dataset!r}. Valid: {', '.join(IMAGE_DATASETS)}")


def load_images(dataset: str):
    """``labelled_images(dataset)``, a missing package or file raised as a DataError."""
    try:
        return labelled_images(dataset)
    except (FileNotFoundError, ValueError) as error:
        raise DataError(str(error)) from None


class ClassificationTask(ScoredAtLastStep, SplitTask):
    """``task: classification``."""

    name = "classification"
    DataConfig = ClassificationData
    inputs, targets, sequential = "frames", "classes", False

    @classmethod
    def chance(cls, config) -> float:
        return 100 / dataset_classes(config.data.dataset)

    @classmethod
    def check_config(cls, config) -> None:
        super().check_config(config)
        noun = "digits" if config.data.dataset == "mnist5k" else "glyph images"
        check_test_episodes(config, split_images(config.data.dataset, "test"), noun)

    def make_sampler(self, split: str, seed: int) -> LabelledImagesSampler:
        return LabelledImagesSampler(load_images(self.data.dataset), split, seed=seed)

    def learner_inputs(self) -> LearnerInputs:
        return frame_inputs(tuple(self.sampler.images.images.shape[1:]), self.sampler.num_classes)
