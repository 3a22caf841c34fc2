"""Irregularly sampled sequence classification: MNIST digits read row by row with a fraction of the
rows dropped (``episodes.IrregularRowsSampler``), classified after the last observed row. A
continuous-time learner (``model.kind=ct_fwp``) reads the spline path through the observations; a
discrete one (``kind: sequence``) reads only the observed rows, with their time and gap as channels.
Tested on the 500 test digits, each read once."""
from __future__ import annotations

from dataclasses import dataclass

from episodes import MNIST5k
from episodes.irregular import IrregularRowsSampler
from metafwp.errors import ConfigError
from metafwp.models import LearnerInputs
from metafwp.tasks.base import GeneratorData
from metafwp.tasks.digits import SplitDigitsTask


@dataclass
class IrregularRowsData(GeneratorData):
    """``drop_rate``: the fraction of each digit's 28 rows dropped, in [0, 1) (the literature: 0.3,
    0.5, 0.7)."""
    drop_rate: float = 0.3
    num_workers: int = 0

    def check(self) -> None:
        if not 0 <= self.drop_rate < 1:
            raise ConfigError(f"data.drop_rate must be in [0, 1) (the fraction of rows dropped), got {self.drop_rate}")


class IrregularRowsTask(SplitDigitsTask):
    """``task: irregular_rows``."""

    name = "irregular_rows"
    DataConfig = IrregularRowsData
    inputs, targets, sequential = "vectors", "classes", False

    def sampler_of(self, digits: MNIST5k, split: str, seed: int) -> IrregularRowsSampler:
        return IrregularRowsSampler(digits, split, self.data.drop_rate, seed=seed)

    def learner_inputs(self) -> LearnerInputs:
        return LearnerInputs("vectors", (IrregularRowsSampler.features,), IrregularRowsSampler.num_classes, 0,
                             "classes")
