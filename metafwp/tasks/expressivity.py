"""Expressivity: formal languages that tell the sequence models apart (parity, modular addition,
``a^n b^n``), under one of three protocols (``data.protocol``):

- ``prefix`` (Default): trained on strings of ``1 .. train_length`` steps with the prefix's label at
  every step; tested on fixed seeded strings of exactly ``train_length`` and ``test_length``
  (Default: 4x) steps; the headline is the last step's label (the whole string's).
- ``bhattamishra`` (Bhattamishra et al. 2020, used by Irie et al. 2023): the prefix's label at every
  step; trained on ``2 .. 50`` steps; tested on two bins, ``2 .. 50`` and ``51 .. 100``; a string
  counts only if every step is right.
- ``grazzi`` (Grazzi et al. 2025): only the last step is supervised and scored; trained on
  ``3 .. 40`` steps; tested on ``3 .. 40`` and ``40 .. 256``.

Under ``bhattamishra`` and ``grazzi`` validation strings span every test length (a fresh seed)."""
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


PROTOCOLS = ("prefix", "bhattamishra", "grazzi")
# protocol -> (shortest training string, longest, longest test string as a function of the longest training one)
PROTOCOL_LENGTHS = {"prefix": (1, 16, lambda longest: 4 * longest),
                    "bhattamishra": (2, 50, lambda longest: 2 * longest),
                    "grazzi": (3, 40, lambda longest: 256)}


@dataclass
class ExpressivityData:
    """``language`` (parity, mod_add, anbn) with ``modulus`` m for mod_add; ``protocol`` (prefix,
    bhattamishra, grazzi: what is supervised, scored and tested, module docstring); training strings of
    ``min_train_length .. train_length`` steps and test strings up to ``test_length``, each Default
    the protocol's (prefix: 1 (2 for anbn), 16, 4x; bhattamishra: 2, 50, 2x; grazzi: 3, 40, 256)."""
    language: str = "parity"
    modulus: int = 2
    protocol: str = "prefix"
    train_length: Optional[int] = None
    min_train_length: Optional[int] = None
    test_length: Optional[int] = None
    num_workers: int = 0

    DECIDING_KEYS: ClassVar[tuple[str, ...]] = ("language",)
    TEST_KEYS: ClassVar[tuple[str, ...]] = ("test_length",)  # shape only the test: may change on resume and in evaluate

    def unread_keys(self) -> set[str]:
        return set() if self.language == "mod_add" else {"modulus"}

    def check(self) -> None:
        if self.language not in LANGUAGES:
            raise ConfigError(f"Unknown data.language {self.language!r}. Valid: {', '.join(LANGUAGES)}")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"Unknown data.protocol {self.protocol!r}. Valid: {', '.join(PROTOCOLS)}")
        if self.train_length is not None and self.train_length < 1:
            raise ConfigError(f"data.train_length must be >= 1, got {self.train_length}")
        if self.language == "mod_add" and self.modulus < 2:
            raise ConfigError(f"data.modulus must be >= 2, got {self.modulus}")
        shortest, longest, longest_test = self.lengths
        if shortest > longest:
            raise ConfigError(f"data.min_train_length={shortest} is above data.train_length={longest}")
        if self.protocol == "prefix" and longest_test < longest:
            raise ConfigError(f"data.test_length={longest_test} is shorter than data.train_length={longest}; "
                              "length generalisation tests longer strings (Default: 4x)")
        if self.protocol != "prefix" and longest_test <= longest:
            raise ConfigError(f"data.test_length={longest_test} does not exceed data.train_length={longest}: under "
                              f"the {self.protocol} protocol the test range must reach past the training range")

    @property
    def lengths(self) -> tuple[int, int, int]:
        """(shortest training string, longest, longest test string), the protocol's where unset."""
        shortest, longest, longest_test = PROTOCOL_LENGTHS[self.protocol]
        if self.protocol == "prefix" and self.language == "anbn":
            shortest = 2
        longest = self.train_length or longest
        return self.min_train_length or shortest, longest, self.test_length or longest_test(longest)

    @property
    def test_bins(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """The two test ranges of string lengths, ``(shortest, longest)`` each: in and beyond training."""
        shortest, longest, longest_test = self.lengths
        if self.protocol == "prefix":
            return (longest, longest), (longest_test, longest_test)
        return (shortest, longest), (longest + (self.protocol == "bhattamishra"), longest_test)


class ExpressivityTask(Task):
    """``task: expressivity``: a formal language, every prefix labelled."""

    name = "expressivity"
    DataConfig = ExpressivityData
    metric = "accuracy"
    higher_is_better = True
    inputs, targets, sequential = "tokens", "classes", True

    @classmethod
    def step_chance(cls, config) -> float:
        """The accuracy (%) of a uniform guess at one step: 1 / classes."""
        return 100 / (config.data.modulus if config.data.language == "mod_add" else 2)

    @classmethod
    def chance(cls, config) -> float:
        """The headline accuracy (%) of a uniform guess at every step: ``step_chance``, or under the
        bhattamishra protocol, where a string counts only if every step is right, the mean over the
        training range's lengths n (even ones for anbn) of ``step_chance ** n``."""
        step = cls.step_chance(config) / 100
        if config.data.protocol != "bhattamishra":
            return 100 * step
        shortest, longest = config.data.test_bins[0]
        lengths = [n for n in range(shortest, longest + 1) if config.data.language != "anbn" or n % 2 == 0]
        return 100 * sum(step ** n for n in lengths) / len(lengths)

    def make_sampler(self, shortest: int, longest: int, seed: int) -> FormalLanguageSampler:
        data = self.data
        try:
            return FormalLanguageSampler(data.language, longest, min_length=shortest, modulus=data.modulus, seed=seed)
        except ValueError as error:
            raise ConfigError(f"data: {error}") from None

    def train_episodes(self) -> FormalLanguageSampler:
        shortest, longest, _ = self.data.lengths
        return self.make_sampler(shortest, longest, self.config.train.seed)

    def validation_episodes(self) -> FormalLanguageSampler:
        """Strings of the training length (prefix), or of every test length (the literature's protocols)."""
        (low, _), (_, high) = self.data.test_bins
        if self.data.protocol == "prefix":
            low = high = self.data.lengths[1]
        return self.make_sampler(low, high, self.config.eval.val_seed)

    def test_episodes(self) -> dict[str, tuple[FormalLanguageSampler, dict]]:
        """One sampler per test bin: results ``"<learner>@<length>"`` or ``"<learner>@<shortest>-<longest>"``."""
        return {f"@{low}" if low == high else f"@{low}-{high}":
                (self.make_sampler(low, high, self.config.eval.seed), {"lengths": [low, high]})
                for low, high in self.data.test_bins}

    def learner_inputs(self) -> LearnerInputs:
        """Token ids, no feedback, ``num_classes`` outputs."""
        return LearnerInputs("tokens", (self.sampler.vocab_size,), self.sampler.num_classes, 0, "classes")

    def objective(self, model: nn.Module, batch: EpisodeBatch) -> Scores:
        """Cross-entropy on every real step (the last one only under ``grazzi``); tallies ``loss_sum``,
        ``steps`` (supervised), ``strings``, ``last_correct`` (the last step right), ``all_correct`` (every
        step right), ``correct`` and ``scored`` by position [T]; per episode: the protocol's verdict."""
        outputs, _ = model(batch)
        real = batch.loss_mask
        last = batch.shot.argmax(1)  # the position of each string's last step
        is_last = torch.zeros_like(real).scatter_(1, last[:, None], True)
        supervised = is_last if self.data.protocol == "grazzi" else real
        loss_per_step = F.cross_entropy(outputs.flatten(0, 1).float(), batch.targets.flatten(), reduction="none")
        loss_sum = (loss_per_step * supervised.flatten()).sum()
        loss = loss_sum / supervised.sum()
        correct = (outputs.detach().argmax(-1) == batch.targets) & real  # [B, T]
        last_correct = correct.gather(1, last[:, None]).squeeze(1).double()
        all_correct = (correct == real).all(1).double()
        verdict = all_correct if self.data.protocol == "bhattamishra" else last_correct
        sums = {"loss_sum": loss_sum, "steps": supervised.sum(), "strings": torch.tensor(float(len(last))),
                "last_correct": last_correct.sum(), "all_correct": all_correct.sum(), "correct": correct.sum(0),
                "scored": real.sum(0)}
        return Scores(loss, sums, verdict, supervised.sum())

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict:
        """``loss``; ``accuracy``, the protocol's headline: ``string_accuracy`` (every step right) under
        ``bhattamishra``, else ``last_step_accuracy`` (the whole string's label); ``step_accuracy`` over
        every step, ``by_position`` (None where no string reaches it)."""
        loss_sum, steps, strings = (sums[name].item() for name in ("loss_sum", "steps", "strings"))
        correct, scored = sums["correct"], sums["scored"]
        summary = {"loss": loss_sum / steps, "last_step_accuracy": 100 * sums["last_correct"].item() / strings,
                   "string_accuracy": 100 * sums["all_correct"].item() / strings,
                   "step_accuracy": 100 * (correct.sum() / scored.sum()).item(),
                   "by_position": [100 * (c / s).item() if s > 0 else None for c, s in zip(correct, scored)]}
        headline = "string_accuracy" if self.data.protocol == "bhattamishra" else "last_step_accuracy"
        return {"accuracy": summary[headline], **summary}

    def write_figures(self, results: dict[str, dict], run_dir: Path, title: str) -> list[Path]:
        return [plot_accuracy_by_position(results, run_dir / "accuracy_by_position.png",
                                          chance=self.step_chance(self.config), train_length=self.data.lengths[1],
                                          title=title)]
