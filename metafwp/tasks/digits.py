"""Tasks on the embedded MNIST digits' fixed 4,000 / 500 / 500 split (``MNIST5k``,
``episodes/datasets/splits/mnist5k.json``): trained on draws of the training digits, validated and
tested on their splits, each test digit read once; every episode classified at one step."""
from __future__ import annotations

from episodes import MNIST5k
from episodes.irregular import split_size
from metafwp.errors import DataError
from metafwp.tasks.base import ScoredAtLastStep, SplitTask, check_test_episodes


class SplitDigitsTask(ScoredAtLastStep, SplitTask):
    """Subclasses give ``sampler_of(digits, split, seed)``: a sampler of the split's episodes."""

    @classmethod
    def chance(cls, config) -> float:
        return 10.0

    @classmethod
    def check_config(cls, config) -> None:
        super().check_config(config)
        check_test_episodes(config, split_size("test"), "digits")

    def sampler_of(self, digits: MNIST5k, split: str, seed: int):
        raise NotImplementedError

    def make_sampler(self, split: str, seed: int):
        try:
            digits = MNIST5k()
        except (FileNotFoundError, ValueError) as error:
            raise DataError(str(error)) from None
        return self.sampler_of(digits, split, seed)
