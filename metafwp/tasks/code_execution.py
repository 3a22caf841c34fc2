"""Code execution (Irie et al. 2021, after Fan et al. 2020): read a random program token by token and
output, at every position, no-op or the value a ``print`` prints there. Trained with cross-entropy
at every position, as the authors; scored by their three numbers: ``accuracy`` (a program counts
when every position is right, their headline), ``noop_accuracy`` and ``print_accuracy`` (the
positions whose target is no-op, or a printed value)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from episodes import CodeExecutionSampler, EpisodeBatch
from episodes.code_execution import NO_OP
from metafwp.errors import ConfigError
from metafwp.plots import plot_accuracy_bars
from metafwp.tasks.base import GeneratorData, GeneratorTask, Scores, masked_token_scores


@dataclass
class CodeExecutionData(GeneratorData):
    """Programs of ``num_statements`` statements over ``num_variables`` variables; ``semantics``
    ``clean`` or ``authors``; ``dataset_size`` programs in the training set (the authors': 10,000;
    None: a fresh program per episode)."""
    num_variables: int = 3
    num_statements: int = 20
    semantics: str = "clean"
    dataset_size: Optional[int] = 10000
    num_workers: int = 0

    def check(self) -> None:
        try:
            CodeExecutionSampler(self.num_variables, self.num_statements, semantics=self.semantics,
                                 dataset_size=self.dataset_size)
        except ValueError as error:
            raise ConfigError(f"data: {error}") from None


class CodeExecutionTask(GeneratorTask):
    """``task: code_execution``."""

    name = "code_execution"
    DataConfig = CodeExecutionData

    @classmethod
    def chance(cls, config) -> float:
        """A whole program right by guessing: nil."""
        return 0.0

    def make_sampler(self, seed: int, dataset_size: int | None = None) -> CodeExecutionSampler:
        data = self.data
        return CodeExecutionSampler(data.num_variables, data.num_statements, semantics=data.semantics,
                                    dataset_size=dataset_size, seed=seed)

    def objective(self, model: nn.Module, batch: EpisodeBatch) -> Scores:
        """Cross-entropy at every position; tallies ``loss_sum``, ``positions``, ``programs``,
        ``correct_programs``, and ``correct`` / ``scored`` of no-op and print positions."""
        outputs, _ = model(batch)
        mask = batch.loss_mask
        loss_sum, right = masked_token_scores(outputs, batch)
        whole = (right | ~mask).all(1).double()
        printed = mask & (batch.targets != NO_OP)
        sums = {"loss_sum": loss_sum.detach(), "positions": mask.sum(), "programs": torch.tensor(float(len(whole))),
                "correct_programs": whole.sum(), "noop_right": (right & ~printed).sum(),
                "noops": (mask & ~printed).sum(), "print_right": (right & printed).sum(), "prints": printed.sum()}
        return Scores(loss_sum / mask.sum(), sums, whole, mask.sum())

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict:
        return {"loss": (sums["loss_sum"] / sums["positions"]).item(),
                "accuracy": 100 * (sums["correct_programs"] / sums["programs"]).item(),
                "noop_accuracy": 100 * (sums["noop_right"] / sums["noops"]).item(),
                "print_accuracy": 100 * (sums["print_right"] / sums["prints"]).item()}

    def write_figures(self, results: dict[str, dict], run_dir: Path, title: str) -> list[Path]:
        names = list(results)
        return [plot_accuracy_bars(names, [results[n]["print_accuracy"] for n in names], [0.0] * len(names),
                                   run_dir / "print_accuracy.png", chance=100 / (self.sampler.num_classes - 1),
                                   title=title, ylabel="printed values right (%)")]
