"""What every task gives the trainer: episodes, what the learner is told about them, an objective
with named tallies, and an evaluation protocol. The loop, checkpoints, DDP, logging and the CLI use
only this interface, so a new task is a module with a ``Task`` subclass and one entry in ``TASKS``."""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from episodes import EpisodeStream
from metafwp.errors import ConfigError
from metafwp.models import LEARNER_KINDS, LearnerInputs
from metafwp.plots import plot_accuracy_bars


LEARNER = "learner"  # the model every task has: validated, tested, and the checkpoint's "model"


@dataclass
class Scores:
    """One batch through the objective.

    Fields:
        loss: scalar to minimise (carries the graph).
        sums: named, detached float64 tallies (each a tensor of any shape) that add up over batches
            and ranks; the task's ``summarise`` reads them by name.
        per_episode: detached ``[B]`` the task's headline metric per episode (accuracy in [0, 1],
            or loss), for confidence intervals.
        loss_terms: how many terms ``loss`` is the mean of (e.g. scored steps), when that differs
            from batch to batch: under torchrun each rank's loss is then weighted by its share of
            all ranks' terms, so that the gradient is that of one process on the whole batch.
            None: the loss is a mean over terms of equal number in every batch.
    """

    loss: torch.Tensor
    sums: dict[str, torch.Tensor]
    per_episode: torch.Tensor
    loss_terms: torch.Tensor | None = None


def add_tallies(total: dict[str, torch.Tensor] | None, sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``total + sums`` name by name, on the CPU in float64 (``total`` None: a copy of ``sums``)."""
    sums = {name: value.detach().double().cpu() for name, value in sums.items()}
    if total is None:
        return sums
    if set(total) != set(sums):
        raise ValueError(f"tallies {sorted(sums)} do not match the earlier {sorted(total)}")
    return {name: total[name] + sums[name] for name in total}


def masked_token_scores(outputs: torch.Tensor, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss_sum, right)``: the summed cross-entropy of ``outputs [B, T, classes]`` at the batch's
    loss-mask steps (carries the graph), and ``[B, T]`` which of those steps the argmax gets right."""
    mask = batch.loss_mask
    per_step = F.cross_entropy(outputs.flatten(0, 1).float(), batch.targets.flatten(), reduction="none")
    right = (outputs.detach().argmax(-1) == batch.targets) & mask
    return (per_step.view_as(mask) * mask).sum(), right


def detach_state(state):
    """A learner's state (nested lists and tuples of tensors) cut from the graph."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # a named state (DeltaRNNState, ...)
        return type(state)(*map(detach_state, state))
    if isinstance(state, (list, tuple)):
        return type(state)(map(detach_state, state))
    return state


def confidence_interval(values: torch.Tensor) -> tuple[float, float]:
    """``(mean, 1.96 * std / sqrt(n))`` of ``values [n]`` (std with Bessel's correction)."""
    n = values.numel()
    std = values.double().std().item() if n > 1 else 0.0
    return values.double().mean().item(), 1.96 * std / math.sqrt(n)


class Task:
    """A kind of episode task. The base holds what every task shares: the config, the progress
    setting, the training and validation samplers (built once through ``train_episodes`` and
    ``validation_episodes``), the learner (built by its kind for ``learner_inputs``), validation,
    the test of the learner and the baselines on each of ``test_episodes``, and the checks of
    ``eval.baselines``, validation and the learner kind. Subclasses set the class attributes and
    implement the hooks.

    Class attributes:
        name: the ``task`` key of a recipe.
        DataConfig: the dataclass of the recipe's ``data`` section.
        metric: the headline metric in ``summarise`` / ``evaluate`` results (``accuracy``, ``error``, ...).
        higher_is_better: whether validation keeps the checkpoint with the largest ``metric``.
        inputs, targets: what learners read (``LearnerInputs.inputs`` and ``.targets``).
        sequential: only learner kinds that carry a state step to step can train on it.
        BASELINES: the ``eval.baselines`` it can test beside the learner.
        validation_key: the ``data`` key that names the validation split (None: validation draws
            fresh seeded episodes and needs no split).
    """

    name: str
    DataConfig: type
    metric: str
    higher_is_better: bool
    inputs: str
    targets: str
    sequential: bool = False
    BASELINES: tuple[str, ...] = ()
    validation_key: str | None = None

    def __init__(self, config, progress: bool = True):
        """``config`` is the RunConfig; building the task loads the training (and, when the recipe
        validates, the validation) data and checks the sampler settings (a bad value raises a
        ConfigError naming the key)."""
        self.config, self.data, self.progress = config, config.data, progress
        self.kind = LEARNER_KINDS[config.model.kind]
        self.learner = self.kind.label(config.model)
        self.sampler = self.train_episodes()
        self.val_sampler = self.validation_episodes() if config.eval.val_every else None

    # the hooks a task implements

    def train_episodes(self):
        """The training episodes: a sampler with ``sample(ids)`` and ``state_dict()``."""
        raise NotImplementedError

    def validation_episodes(self):
        """The fixed validation episodes (called when the recipe validates)."""
        raise NotImplementedError

    def test_episodes(self) -> dict[str, tuple[object, dict]]:
        """``{suffix: (sampler, fields)}``: each test set, its results named ``<learner><suffix>``
        and carrying ``fields`` (e.g. ``{" K=5": (sampler, {"k_shot": 5})}``)."""
        raise NotImplementedError

    def learner_inputs(self):
        """The ``LearnerInputs`` of this task's episodes."""
        raise NotImplementedError

    @classmethod
    def test_set_name(cls, config) -> str:
        """What ``config``'s test episodes come from, in result file names (Default: ``tasks``, fresh
        seeded ones)."""
        return "tasks"

    def objective(self, model: nn.Module, batch) -> Scores:
        """Loss and named tallies of ``model`` on ``batch`` (called under autocast by the loop)."""
        raise NotImplementedError

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict:
        """A log record (``loss``, ``metric`` and what else the task reports) from summed tallies."""
        raise NotImplementedError

    def baseline_learners(self, model: nn.Module, device: torch.device) -> dict[str, tuple[nn.Module, dict]]:
        """``{name: (learner, fields)}`` of ``eval.baselines`` to test beside ``model`` (Default: none)."""
        return {}

    def write_figures(self, results: dict[str, dict], run_dir: Path, title: str) -> list[Path]:
        """The task's test figures under ``run_dir``."""
        raise NotImplementedError

    # the training side: override where a task needs more than one model, one optimiser step per
    # batch or no state across batches

    def build_models(self, model_config) -> dict[str, nn.Module]:
        """The models the run trains and saves, by name, ``LEARNER`` first (Default: the learner alone;
        a GAN adds its discriminator and an EMA copy)."""
        return {LEARNER: self.build_learner(model_config)}

    def optimised_parameters(self, models: dict[str, nn.Module]) -> dict[str, list]:
        """``{optimiser name: parameters}``: one ``optim.optimizer`` each, with its own schedule
        (Default: one over the learner's trainable parameters, none when it has nothing to train)."""
        parameters = [p for p in models[LEARNER].parameters() if p.requires_grad]
        return {LEARNER: parameters} if parameters else {}

    def training_step(self, trainer, batch) -> Scores:
        """One batch of training through ``trainer`` (``metafwp.train.loop.Trainer``: its ``models``,
        ``autocast()`` and ``step(loss, optimizer)``); returns the batch's scores for the log.
        Default: the objective on the whole batch and one optimiser step."""
        with trainer.autocast():
            scores = self.objective(trainer.models[LEARNER], batch)
        trainer.step(scores.loss, terms=scores.loss_terms)
        return scores

    def state_dict(self) -> dict:
        """What the task carries from batch to batch (e.g. a recurrent state), saved per rank with the
        checkpoint and restored on resume (Default: nothing)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict``'s state."""

    @classmethod
    def chance(cls, config) -> float | None:
        """The metric of guessing (e.g. ``100 / n_way`` % for accuracy), read from ``config`` alone;
        None where the metric has no chance level (regression's error)."""
        return None

    # what every task shares

    @classmethod
    def default_baselines(cls, config) -> list[str]:
        """The baselines tested beside the learner when the recipe does not set ``eval.baselines``."""
        return []

    @classmethod
    def baselines(cls, config) -> list[str]:
        """``eval.baselines``, or the task's defaults when it is not set."""
        return cls.default_baselines(config) if config.eval.baselines is None else list(config.eval.baselines)

    @classmethod
    def learner_kinds(cls) -> list[str]:
        """The registered learner kinds that read this task's episodes."""
        return [name for name, kind in LEARNER_KINDS.items()
                if kind.reads(cls.inputs, cls.targets) and (kind.sequential or not cls.sequential)]

    @classmethod
    def check_config(cls, config) -> None:
        """Raise a ConfigError for settings that do not fit together (called when the config loads,
        before any data is read); subclasses add theirs after ``super().check_config``."""
        for baseline in cls.baselines(config):
            if not cls.BASELINES:
                raise ConfigError(f"task={cls.name} has no baselines to run beside the learner; set "
                                  f"eval.baselines=[], got {cls.baselines(config)}")
            if baseline not in cls.BASELINES:
                raise ConfigError(f"Unknown eval.baselines entry {baseline!r} for task {cls.name}. Valid: "
                                  f"{', '.join(cls.BASELINES)}")
        if config.eval.val_every and cls.validation_key is not None:
            if getattr(config.data, cls.validation_key) is None:
                raise ConfigError(f"eval.val_every={config.eval.val_every} needs data.{cls.validation_key}, the "
                                  f"classes validation episodes come from (e.g. val)")

    def train_sampler(self):
        return self.sampler

    def build_learner(self, model_config) -> nn.Module:
        """The learner of ``model_config`` (the recipe's ``model`` section) sized for this task's episodes."""
        return self.kind.build(model_config, self.learner_inputs())

    def evaluate(self, model: nn.Module, sampler, num_episodes: int, device: torch.device, desc: str) -> dict:
        """``evaluate_episodes`` of ``model`` with the recipe's eval batch size, bf16 and progress settings."""
        return evaluate_episodes(self, model.to(device), sampler, num_episodes, self.config.eval.batch_size, device,
                                 self.config.train.bf16, self.progress, desc)

    def validate(self, model: nn.Module, device: torch.device) -> dict | None:
        """The metric on the fixed validation episodes, or None when the recipe sets no validation."""
        if self.val_sampler is None:
            return None
        return self.evaluate(model, self.val_sampler, self.config.eval.val_episodes, device, "validating")

    def validation_images(self, model: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
        """``{name: images [N, C, H, W] in [0, 1]}`` written to tensorboard at each validation
        (Default: none; a generator's samples)."""
        return {}

    def learner_fields(self, model: nn.Module) -> dict:
        """What the trained learner's weights say, reported beside its test results (Default: nothing)."""
        return {}

    def test(self, model: nn.Module, device: torch.device) -> dict[str, dict]:
        """``{name: result}`` for the learner and each baseline of the recipe on the same
        ``eval.episodes`` seeded episodes of every test set of ``test_episodes``; each result
        names its ``learner`` (the learner or the baseline)."""
        test_sets = self.test_episodes()
        learners = {self.learner: (model, self.learner_fields(model)), **self.baseline_learners(model, device)}
        results = {}
        for suffix, (sampler, fields) in test_sets.items():
            for name, (learner, extra) in learners.items():
                result = self.evaluate(learner, sampler, self.config.eval.episodes, device, f"testing {name}{suffix}")
                results[f"{name}{suffix}"] = {**result, "learner": name, **extra, **fields}
        return results


class StreamTask(Task):
    """A task that meta-trains sequence learners on delayed-feedback streams of image tasks and
    runs no baselines beside them (multi-task and continual streams; the README quotes the
    published ones)."""

    metric = "accuracy"
    higher_is_better = True
    inputs, targets, sequential = "frames", "classes", True


class SplitTask(Task):
    """A task whose samplers are ``make_sampler(split, seed)`` of a dataset's fixed splits: training
    from ``train`` at ``train.seed``, validation from ``val`` at ``eval.val_seed``, the test from
    ``test`` at ``eval.seed``."""

    def make_sampler(self, split: str, seed: int):
        raise NotImplementedError

    def train_episodes(self):
        return self.make_sampler("train", self.config.train.seed)

    def validation_episodes(self):
        return self.make_sampler("val", self.config.eval.val_seed)

    def test_episodes(self) -> dict:
        return {"": (self.make_sampler("test", self.config.eval.seed), {})}


class GeneratorData:
    """A ``data:`` section of a generated task: no key depends on another, none shapes only the test.
    Subclasses are dataclasses that add their keys and ``check``."""

    DECIDING_KEYS: ClassVar[tuple[str, ...]] = ()
    TEST_KEYS: ClassVar[tuple[str, ...]] = ()

    def unread_keys(self) -> set[str]:
        return set()


class GeneratorTask(Task):
    """A task whose episodes come from one seeded generator of token sequences: training at
    ``train.seed`` (a fixed set of ``data.dataset_size`` episodes when the section has that key and
    it is set), validation at ``eval.val_seed``, the test at ``eval.seed``. Subclasses give
    ``make_sampler(seed, dataset_size)`` (a sampler with ``vocab_size`` and ``num_classes``)."""

    metric = "accuracy"
    higher_is_better = True
    inputs, targets, sequential = "tokens", "classes", True

    def make_sampler(self, seed: int, dataset_size: int | None = None):
        raise NotImplementedError

    def train_episodes(self):
        return self.make_sampler(self.config.train.seed, getattr(self.data, "dataset_size", None))

    def validation_episodes(self):
        return self.make_sampler(self.config.eval.val_seed)

    def test_episodes(self) -> dict:
        return {"": (self.make_sampler(self.config.eval.seed), {})}

    def learner_inputs(self) -> LearnerInputs:
        return LearnerInputs("tokens", (self.sampler.vocab_size,), self.sampler.num_classes, 0, "classes")


class ScoredAtLastStep:
    """A mixin for tasks whose episodes are classified at one step each (their last): the
    cross-entropy there, accuracy with its interval, and a bar chart against ``chance``."""

    metric = "accuracy"
    higher_is_better = True

    def objective(self, model: nn.Module, batch) -> Scores:
        """Cross-entropy at each episode's scored step; tallies ``loss_sum``, ``sequences``, ``correct``."""
        return last_step_scores(model(batch)[0], batch)

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict:
        return summarise_last_step(sums)

    def write_figures(self, results: dict[str, dict], run_dir: Path, title: str) -> list[Path]:
        names = list(results)
        return [plot_accuracy_bars(names, [results[n]["accuracy"] for n in names], [results[n]["ci95"] for n in names],
                                   run_dir / "accuracy.png", chance=self.chance(self.config), title=title)]


def check_test_episodes(config, available: int, items: str) -> None:
    """A test that reads each of ``available`` fixed ``items`` once cannot take more episodes: refused
    when the config loads."""
    if config.eval.episodes > available:
        raise ConfigError(f"eval.episodes={config.eval.episodes}: the test split holds {available} {items}, each "
                          f"read once; set eval.episodes <= {available}")


def last_step_scores(outputs: torch.Tensor, batch) -> Scores:
    """Cross-entropy and accuracy of sequences scored at one step each (their last): tallies
    ``loss_sum``, ``sequences``, ``correct``; ``summarise_last_step`` reads them."""
    loss_sum, right = masked_token_scores(outputs, batch)
    correct = right.any(1).double()
    sums = {"loss_sum": loss_sum.detach(), "sequences": torch.tensor(float(len(correct))), "correct": correct.sum()}
    return Scores(loss_sum / len(correct), sums, correct)


def summarise_last_step(sums: dict[str, torch.Tensor]) -> dict:
    return {"loss": (sums["loss_sum"] / sums["sequences"]).item(),
            "accuracy": 100 * (sums["correct"] / sums["sequences"]).item()}


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA when asked; float32 elsewhere."""
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def evaluate_episodes(task: Task, model: nn.Module, sampler, num_episodes: int, batch_size: int,
                      device: torch.device, bf16: bool = False, progress: bool = False,
                      desc: str = "evaluating") -> dict:
    """``task``'s metric of ``model`` on episodes ``0 .. num_episodes - 1`` of ``sampler``; ``task`` is a
    Task or any scoring with its ``objective``, ``summarise`` and ``metric`` (e.g. ``FewShotScoring``).

    Returns ``task.summarise`` of the summed tallies, with ``task.metric`` replaced by its mean over
    episodes (in percent for accuracy), ``ci95`` its 95% confidence interval and ``episodes``. The
    same sampler seed gives the same episodes to every model, so results sit side by side.
    """
    was_training = model.training
    model.eval()
    sums, per_episode, seen = None, [], 0
    stream = EpisodeStream(sampler, batch_size, num_batches=math.ceil(num_episodes / batch_size), rank=0,
                           world_size=1)
    for batch in tqdm(stream, desc=desc, unit="batch", disable=not progress, leave=False):
        batch = batch[:num_episodes - seen].to(device)  # the last batch may hold fewer
        seen += batch.batch_size
        with autocast(device, bf16):
            scores = task.objective(model, batch)
        sums = add_tallies(sums, scores.sums)
        per_episode.append(scores.per_episode.cpu())
    model.train(was_training)
    record = task.summarise(sums)
    mean, ci95 = confidence_interval(torch.cat(per_episode))
    scale = 100 if task.metric == "accuracy" else 1
    record.update({task.metric: scale * mean, "ci95": scale * ci95, "episodes": num_episodes})
    return record
