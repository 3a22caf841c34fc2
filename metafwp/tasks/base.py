"""What every task gives the trainer: episodes, what the learner is told about them, an objective
with tallies, and an evaluation protocol. The loop, checkpoints, DDP, logging and the CLI use only
this interface, so a new task is a module with a ``Task`` subclass and one entry in ``TASKS``."""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

from episodes import EpisodeStream
from metafwp.errors import ConfigError


@dataclass
class Scores:
    """One batch through the objective.

    Fields:
        loss: scalar to minimise (carries the graph).
        sums: detached float64 ``[S]`` tallies that add up over batches and ranks (the task's
            ``summarise`` reads them).
        per_episode: detached ``[B]`` the task's headline metric per episode (accuracy in [0, 1],
            or loss), for confidence intervals.
    """

    loss: torch.Tensor
    sums: torch.Tensor
    per_episode: torch.Tensor


def confidence_interval(values: torch.Tensor) -> tuple[float, float]:
    """``(mean, 1.96 * std / sqrt(n))`` of ``values [n]`` (std with Bessel's correction)."""
    n = values.numel()
    std = values.double().std().item() if n > 1 else 0.0
    return values.double().mean().item(), 1.96 * std / math.sqrt(n)


class Task:
    """A kind of episode task. Subclasses set the class attributes and implement the methods.

    Class attributes:
        name: the ``task`` key of a recipe.
        DataConfig: the dataclass of the recipe's ``data`` section.
        learner_kinds: the ``model.kind`` values the task can train.
        metric: the headline metric in ``summarise`` / ``evaluate`` results (``accuracy``, ``loss``).
        higher_is_better: whether validation keeps the checkpoint with the largest ``metric``.
    """

    name: str
    DataConfig: type
    learner_kinds: tuple[str, ...]
    metric: str
    higher_is_better: bool

    def __init__(self, config, progress: bool = True):
        """``config`` is the RunConfig; building the task loads the training data and checks the
        sampler settings (a bad value raises a ConfigError naming the key)."""
        raise NotImplementedError

    @classmethod
    def default_baselines(cls, config) -> list[str]:
        """The baselines tested beside the learner when the recipe does not set ``eval.baselines``."""
        raise NotImplementedError

    @classmethod
    def baselines(cls, config) -> list[str]:
        """``eval.baselines``, or the task's defaults when it is not set."""
        return cls.default_baselines(config) if config.eval.baselines is None else list(config.eval.baselines)

    @classmethod
    def unread_model_keys(cls, model_config) -> set[str]:
        """``model`` keys this task never reads (e.g. the backbone of a task without images)."""
        return set()

    @classmethod
    def check_config(cls, config) -> None:
        """Raise a ConfigError for settings that do not fit together (called when the config loads)."""
        raise NotImplementedError

    def train_sampler(self):
        """The training episodes: a sampler with ``sample(ids)`` and ``state_dict()``."""
        raise NotImplementedError

    def build_learner(self, model_config) -> nn.Module:
        """The learner of ``model_config`` sized for this task's episodes."""
        raise NotImplementedError

    def objective(self, model: nn.Module, batch) -> Scores:
        """Loss and tallies of ``model`` on ``batch`` (called under autocast by the loop)."""
        raise NotImplementedError

    def summarise(self, sums: torch.Tensor) -> dict:
        """A log record (``loss``, ``metric`` and what else the task reports) from summed tallies."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, sampler, num_episodes: int, device: torch.device, desc: str) -> dict:
        """``evaluate_episodes`` of ``model`` with the recipe's eval batch size, bf16 and progress settings."""
        return evaluate_episodes(self, model.to(device), sampler, num_episodes, self.config.eval.batch_size, device,
                                 self.config.train.bf16, self.progress, desc)

    def validate(self, model: nn.Module, device: torch.device) -> dict | None:
        """The metric on the fixed validation episodes of ``self.val_sampler`` (set by the subclass),
        or None when the recipe sets no validation."""
        if self.val_sampler is None:
            return None
        return self.evaluate(model, self.val_sampler, self.config.eval.val_episodes, device, "validating")

    def test(self, model: nn.Module, device: torch.device, split: str | None = None) -> dict[str, dict]:
        """``{name: result}`` for the learner and each baseline of the recipe on the fixed test
        episodes of ``split`` (Default: the recipe's test split)."""
        raise NotImplementedError

    def write_figures(self, results: dict[str, dict], run_dir: Path, title: str) -> list[Path]:
        """The task's test figures under ``run_dir``."""
        raise NotImplementedError


class StreamTask(Task):
    """A task that meta-trains sequence learners on streams of image tasks and runs no baselines
    beside them (multi-task and continual streams; the README quotes the published ones)."""

    learner_kinds = ("sequence",)
    metric = "accuracy"
    higher_is_better = True

    @classmethod
    def default_baselines(cls, config) -> list[str]:
        return []

    @classmethod
    def unread_model_keys(cls, model_config) -> set[str]:
        return {"mlp_hidden"}

    @classmethod
    def check_config(cls, config) -> None:
        if cls.baselines(config):
            raise ConfigError(f"task={cls.name} has no baselines to run beside the learner; set eval.baselines=[], "
                              f"got {cls.baselines(config)}")


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
        sums = scores.sums.cpu() if sums is None else sums + scores.sums.cpu()
        per_episode.append(scores.per_episode.cpu())
    model.train(was_training)
    record = task.summarise(sums)
    mean, ci95 = confidence_interval(torch.cat(per_episode))
    scale = 100 if task.metric == "accuracy" else 1
    record.update({task.metric: scale * mean, "ci95": scale * ci95, "episodes": num_episodes})
    return record
