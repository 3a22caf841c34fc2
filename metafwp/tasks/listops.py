"""Sequential ListOps (Irie et al. 2021, after Nangia & Bowman 2018): read a prefix expression of
MIN, MAX and FIRST over digits, of one exact nesting depth, token by token, and output its value
(10 classes) at the last token."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from episodes import ListOpsSampler
from metafwp.errors import ConfigError
from metafwp.tasks.base import GeneratorData, GeneratorTask, ScoredAtLastStep


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


class ListOpsTask(ScoredAtLastStep, GeneratorTask):
    """``task: listops``."""

    name = "listops"
    DataConfig = ListOpsData

    @classmethod
    def chance(cls, config) -> float:
        return 100 / ListOpsSampler.num_classes

    def make_sampler(self, seed: int, dataset_size: int | None = None) -> ListOpsSampler:
        return ListOpsSampler(self.data.depth, dataset_size=dataset_size, seed=seed)
