"""Expressivity: formal languages that tell the sequence models apart (parity, modular addition,
``a^n b^n``). Trained on strings up to ``train_length`` with the prefix's label at every step,
tested on fixed seeded strings of exactly ``train_length`` and ``test_length`` (Default: 4x) steps:
the whole string's label is its last step's, so accuracy there measures length generalisation."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from episodes import EpisodeBatch
from episodes.formal import LANGUAGES, FormalLanguageSampler
from metafwp.errors import ConfigError
from metafwp.models import LearnerInputs
from metafwp.plots import plot_accuracy_by_position
from metafwp.tasks.base import Scores, Task


@dataclass
class ExpressivityData:
    """``language`` (parity, mod_add, anbn) with ``modulus`` m for mod_add; training strings of
    ``min_train_length .. train_length`` steps; test strings of exactly ``train_length`` and of
    exactly ``test_length`` steps (Default: 4 x train_length)."""
    language: str = "parity"
    modulus: int = 2
    train_length: int = 16
    min_train_length: Optional[int] = None  # Default: 1 (2 for anbn)
    test_length: Optional[int] = None
    num_workers: int = 0

    DECIDING_KEYS: ClassVar[tuple[str, ...]] = ("language",)
    TEST_KEYS: ClassVar[tuple[str, ...]] = ("test_length",)  # shape only the test: may change on resume and in evaluate

    def unread_keys(self) -> set[str]:
        return set() if self.language == "mod_add" else {"modulus"}

    def check(self) -> None:
        if self.language not in LANGUAGES:
            raise ConfigError(f"Unknown data.language {self.language!r}. Valid: {', '.join(LANGUAGES)}")
        if self.train_length < 1:
            raise ConfigError(f"data.train_length must be >= 1, got {self.train_length}")
        if self.language == "mod_add" and self.modulus < 2:
            raise ConfigError(f"data.modulus must be >= 2, got {self.modulus}")
        if self.test_length is not None and self.test_length < self.train_length:
            raise ConfigError(f"data.test_length={self.test_length} is shorter than data.train_length="
                              f"{self.train_length}; length generalisation tests longer strings (Default: 4x)")

    @property
    def test_lengths(self) -> tuple[int, int]:
        return self.train_length, self.test_length or 4 * self.train_length


class ExpressivityTask(Task):
    """``task: expressivity``: a formal language, every prefix labelled."""

    name = "expressivity"
    DataConfig = ExpressivityData
    metric = "accuracy"
    higher_is_better = True
    inputs, targets, sequential = "tokens", "classes", True

    @classmethod
    def chance(cls, config) -> float:
        return 100 / (config.data.modulus if config.data.language == "mod_add" else 2)

    def make_sampler(self, max_length: int, min_length: int | None, seed: int) -> FormalLanguageSampler:
        data = self.data
        try:
            return FormalLanguageSampler(data.language, max_length, min_length=min_length, modulus=data.modulus,
                                         seed=seed)
        except ValueError as error:
            raise ConfigError(f"data: {error}") from None

    def train_episodes(self) -> FormalLanguageSampler:
        return self.make_sampler(self.data.train_length, self.data.min_train_length, self.config.train.seed)

    def validation_episodes(self) -> FormalLanguageSampler:
        return self.make_sampler(self.data.train_length, self.data.train_length, self.config.eval.val_seed)

    def test_episodes(self) -> dict[str, tuple[FormalLanguageSampler, dict]]:
        """Strings of exactly the training length and of the test length: results ``"<learner>@<length>"``."""
        return {f"@{length}": (self.make_sampler(length, length, self.config.eval.seed), {"length": length})
                for length in self.data.test_lengths}

    def learner_inputs(self) -> LearnerInputs:
        """Token ids, no feedback, ``num_classes`` outputs."""
        return LearnerInputs("tokens", (self.sampler.vocab_size,), self.sampler.num_classes, 0, "classes")

    def objective(self, model: nn.Module, batch: EpisodeBatch) -> Scores:
        """Cross-entropy on every real step; tallies ``loss_sum``, ``steps``, ``last_correct`` (the
        last step right), ``correct`` and ``scored`` by position [T]; per episode: the last step right or not."""
        outputs, _ = model(batch)
        mask = batch.loss_mask
        loss_per_step = F.cross_entropy(outputs.flatten(0, 1).float(), batch.targets.flatten(), reduction="none")
        loss_sum = (loss_per_step * mask.flatten()).sum()
        loss = loss_sum / mask.sum()
        correct = (outputs.detach().argmax(-1) == batch.targets) & mask  # [B, T]
        last = batch.shot.argmax(1)  # the position of each string's last step
        last_correct = correct.gather(1, last[:, None]).squeeze(1).double()
        sums = {"loss_sum": loss_sum, "steps": mask.sum(), "last_correct": last_correct.sum(),
                "correct": correct.sum(0), "scored": mask.sum(0)}
        return Scores(loss, sums, last_correct, mask.sum())

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict:
        """``loss``; ``accuracy`` of the whole string (its last step), ``step_accuracy`` over every
        step, ``by_position`` (None where no string reaches it)."""
        loss_sum, steps, last_correct = (sums[name].item() for name in ("loss_sum", "steps", "last_correct"))
        correct, scored = sums["correct"], sums["scored"]
        strings = scored[0].item()
        return {"loss": loss_sum / steps, "accuracy": 100 * last_correct / strings,
                "step_accuracy": 100 * (correct.sum() / scored.sum()).item(),
                "by_position": [100 * (c / s).item() if s > 0 else None for c, s in zip(correct, scored)]}

    def write_figures(self, results: dict[str, dict], run_dir: Path, title: str) -> list[Path]:
        return [plot_accuracy_by_position(results, run_dir / "accuracy_by_position.png",
                                          chance=self.chance(self.config), train_length=self.data.train_length,
                                          title=title)]
