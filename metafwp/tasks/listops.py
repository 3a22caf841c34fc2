"""Sequential ListOps (Irie et al. 2021, after Nangia & Bowman 2018): read a prefix expression of
MIN, MAX and FIRST over digits, of one exact nesting depth, token by token, and output its value
(10 classes) at the last token."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional

import torch
import torch.nn as nn

from episodes import EpisodeBatch, ListOpsSampler
from metafwp.errors import ConfigError
from metafwp.models import LearnerInputs
from metafwp.plots import plot_accuracy_bars
from metafwp.tasks.base import Scores, Task, masked_token_scores


@dataclass
class ListOpsData:
    """Expressions of operator ``depth`` (the authors: 10 and 15); ``dataset_size`` of the training
    set (None: a fresh expression per episode)."""
    depth: int = 10
    dataset_size: Optional[int] = None
    num_workers: int = 0

    DECIDING_KEYS: ClassVar[tuple[str, ...]] = ()
    TEST_KEYS: ClassVar[tuple[str, ...]] = ()

    def unread_keys(self) -> set[str]:
        return set()

    def check(self) -> None:
        try:
            ListOpsSampler(self.depth, dataset_size=self.dataset_size)
        except ValueError as error:
            raise ConfigError(f"data: {error}") from None


class ListOpsTask(Task):
    """``task: listops``."""

    name = "listops"
    DataConfig = ListOpsData
    metric = "accuracy"
    higher_is_better = True
    inputs, targets, sequential = "tokens", "classes", True

    @classmethod
    def chance(cls, config) -> float:
        return 100 / ListOpsSampler.num_classes

    def make_sampler(self, seed: int, dataset_size: int | None = None) -> ListOpsSampler:
        return ListOpsSampler(self.data.depth, dataset_size=dataset_size, seed=seed)

    def train_episodes(self) -> ListOpsSampler:
        return self.make_sampler(self.config.train.seed, self.data.dataset_size)

    def validation_episodes(self) -> ListOpsSampler:
        return self.make_sampler(self.config.eval.val_seed)

    def test_episodes(self) -> dict[str, tuple[ListOpsSampler, dict]]:
        return {"": (self.make_sampler(self.config.eval.seed), {})}

    def learner_inputs(self) -> LearnerInputs:
        return LearnerInputs("tokens", (ListOpsSampler.vocab_size,), ListOpsSampler.num_classes, 0, "classes")

    def objective(self, model: nn.Module, batch: EpisodeBatch) -> Scores:
        """Cross-entropy at each expression's last token; tallies ``loss_sum``, ``expressions``, ``correct``."""
        outputs, _ = model(batch)
        loss_sum, right = masked_token_scores(outputs, batch)
        correct = right.any(1).double()   # one scored step per expression
        sums = {"loss_sum": loss_sum.detach(), "expressions": torch.tensor(float(len(correct))),
                "correct": correct.sum()}
        return Scores(loss_sum / len(correct), sums, correct)

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict:
        return {"loss": (sums["loss_sum"] / sums["expressions"]).item(),
                "accuracy": 100 * (sums["correct"] / sums["expressions"]).item()}

    def write_figures(self, results: dict[str, dict], run_dir: Path, title: str) -> list[Path]:
        names = list(results)
        return [plot_accuracy_bars(names, [results[n]["accuracy"] for n in names], [results[n]["ci95"] for n in names],
                                   run_dir / "accuracy.png", chance=self.chance(self.config), title=title)]
