"""Plain image classification: an image in, its class out, accuracy; nothing is learned in context
(``model.kind=classifier``). The embedded MNIST digits (``MNIST5k``, 4,000 / 500 / 500), trained on
fresh draws of the training images, validated and tested on their splits, each image read once. The
dual-form analysis and the fast weight painters' Fréchet features read networks trained here."""
from __future__ import annotations

from dataclasses import dataclass

from episodes import LabelledImagesSampler, MNIST5k
from metafwp.errors import ConfigError
from metafwp.models import LearnerInputs
from metafwp.tasks.base import GeneratorData
from metafwp.tasks.digits import SplitDigitsTask
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


class ClassificationTask(SplitDigitsTask):
    """``task: classification``."""

    name = "classification"
    DataConfig = ClassificationData
    inputs, targets, sequential = "frames", "classes", False

    def sampler_of(self, digits: MNIST5k, split: str, seed: int) -> LabelledImagesSampler:
        return LabelledImagesSampler(digits, split, seed=seed)

    def learner_inputs(self) -> LearnerInputs:
        return frame_inputs(tuple(self.sampler.images.images.shape[1:]), self.sampler.num_classes)
