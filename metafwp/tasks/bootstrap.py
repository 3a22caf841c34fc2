"""Bootstrapped self-improvement (Irie & Schmidhuber 2023): few-shot episodes of K support, F future
and Q query examples per class; the learner's K-shot prediction of the queries is pulled towards its
own prediction after K + F shots. Tested like few-shot classification, at the K it was meta-trained
on and at larger K, beside raw-pixel nearest neighbour."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, List, Optional

import torch
import torch.nn as nn

from episodes import BootstrapSampler, FewShotSampler
from metafwp.errors import ConfigError
from metafwp.losses import BOOTSTRAP_TARGETS, bootstrap_loss, check_bootstrap_weights
from metafwp.plots import plot_accuracy_by_support_shots
from metafwp.tasks.base import Scores, evaluate_episodes
from metafwp.tasks.few_shot import FewShotData, FewShotScoring, FewShotTask


@dataclass
class BootstrapData(FewShotData):
    """FewShotData (synchronous) with the bootstrapping episode and objective. ``n_future``: F further
    labelled examples per class after the ``k_shot`` support; ``loss_weights``: main, future,
    bootstrap (``[1, 0, 0]`` is plain K-shot meta-training); ``bootstrap_target``: ``logits``
    (KL between the predictions) or ``state`` (MSE between the layer states); ``test_k_shots``: the
    larger K the test reads the queries after, beside ``k_shot`` (Default: ``[k_shot + n_future]``)."""
    n_future: int = 5
    loss_weights: List[float] = field(default_factory=lambda: [1.0, 1.0, 10.0])
    bootstrap_target: str = "logits"
    test_k_shots: Optional[List[int]] = None

    TEST_KEYS: ClassVar[tuple[str, ...]] = FewShotData.TEST_KEYS + ("test_k_shots",)

    def check(self) -> None:
        super().check()
        if self.feedback != "synchronous":
            raise ConfigError(f"task=bootstrap reads synchronous episodes (labelled support and future, then "
                              f"queries); set data.feedback=synchronous, got {self.feedback}")
        if self.bootstrap_target not in BOOTSTRAP_TARGETS:
            raise ConfigError(f"Unknown data.bootstrap_target {self.bootstrap_target!r}. Valid: "
                              f"{', '.join(BOOTSTRAP_TARGETS)}")
        try:
            check_bootstrap_weights(self.loss_weights)
        except ValueError as error:
            raise ConfigError(f"data.loss_weights: {error}") from None
        if self.n_future < 1:
            raise ConfigError(f"data.n_future must be >= 1, got {self.n_future}")
        if any(k < 1 for k in self.test_k_shots or ()):
            raise ConfigError(f"data.test_k_shots must be shots >= 1, got {self.test_k_shots}")

    def test_shots(self) -> list[int]:
        """``k_shot`` then the larger K of the test, each once."""
        extra = self.test_k_shots if self.test_k_shots is not None else [self.k_shot + self.n_future]
        return sorted({self.k_shot, *extra})


class BootstrapTask(FewShotTask):
    """``task: bootstrap``: meta-train a sequence learner with the bootstrapping objective on
    ``data.dataset``; validate and test on plain few-shot episodes."""

    name = "bootstrap"
    DataConfig = BootstrapData
    sequential = True

    @classmethod
    def check_config(cls, config) -> None:
        super().check_config(config)
        if config.data.bootstrap_target == "state" and config.model.mixer == "attention":
            raise ConfigError("data.bootstrap_target=state matches fixed-size states; attention's key/value cache "
                              "grows with the context: use data.bootstrap_target=logits or another model.mixer")

    def train_episodes(self) -> BootstrapSampler:
        """The bootstrapping episodes; test shots that the training split's classes could not hold are
        refused here, before training (the test split is checked again when it is read)."""
        data = self.data
        dataset = self.load_split(data.train_split)
        try:
            sampler = BootstrapSampler(dataset, data.n_way, data.k_shot, data.n_future, data.n_query,
                                       seed=self.config.train.seed, frame_shape=self.frame_shape(dataset))
        except ValueError as error:
            raise ConfigError(f"data ({data.train_split}): {error}") from None
        smallest, largest_k = int(dataset.class_counts.min()), max(data.test_shots())
        if largest_k + data.n_query > smallest:
            raise ConfigError(f"data.test_k_shots: K = {largest_k} + n_query = {data.n_query} is larger than the "
                              f"{smallest} examples of a class; lower data.test_k_shots")
        return sampler

    def objective(self, model: nn.Module, batch) -> Scores:
        """``bootstrap_loss``; tallies (each x queries) ``loss``, ``main``, ``future``, ``bootstrap``;
        ``student_correct`` (from S_K), ``teacher_correct`` (from S_{K+F}) and ``queries``."""
        result = bootstrap_loss(model, batch, self.data.loss_weights, self.data.bootstrap_target)
        queries = result.count.sum()
        sums = {"loss": result.loss * queries, "main": result.main * queries, "future": result.future * queries,
                "bootstrap": result.bootstrap * queries, "student_correct": result.student_correct.sum(),
                "teacher_correct": result.teacher_correct.sum(), "queries": queries}
        return Scores(result.loss, sums, result.student_correct / result.count)

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict:
        mean = {name: (value / sums["queries"]).item() for name, value in sums.items()}
        record = {"loss": mean["loss"], "accuracy": 100 * mean["student_correct"], "main_loss": mean["main"]}
        _, future_weight, bootstrap_weight = self.data.loss_weights
        if future_weight or bootstrap_weight:
            record.update(future_loss=mean["future"], bootstrap_loss=mean["bootstrap"],
                          future_accuracy=100 * mean["teacher_correct"])
        return record

    def evaluate(self, model: nn.Module, sampler, num_episodes: int, device: torch.device, desc: str) -> dict:
        """Plain few-shot scoring of ``sampler``'s episodes (validation and test)."""
        return evaluate_episodes(FewShotScoring(sampler.num_shots), model.to(device), sampler, num_episodes,
                                 self.config.eval.batch_size, device, self.config.train.bf16, self.progress, desc)

    def test_episodes(self) -> dict[str, tuple[FewShotSampler, dict]]:
        """Plain few-shot episodes of the test split at every K of ``data.test_shots()``: results
        named ``"<learner> K=<K>"``."""
        data = self.data
        dataset = self.load_split(data.test_split)
        test_sets = {}
        for k in data.test_shots():
            try:
                sampler = FewShotSampler(dataset, data.n_way, k, data.n_query, feedback=data.feedback,
                                         seed=self.config.eval.seed, frame_shape=self.frame_shape(dataset))
            except ValueError as error:
                raise ConfigError(f"data.test_split ({data.test_split}, K = {k}): {error}") from None
            test_sets[f" K={k}"] = (sampler, {"k_shot": k})
        return test_sets

    def write_figures(self, results: dict[str, dict], run_dir: Path, title: str) -> list[Path]:
        curves = {}
        for result in results.values():
            curves.setdefault(result["learner"], {})[result["k_shot"]] = (result["accuracy"], result["ci95"])
        return [plot_accuracy_by_support_shots(curves, run_dir / "accuracy_by_support_shots.png",
                                               chance=self.chance(self.config), trained_shots=self.data.k_shot,
                                               title=title)]
