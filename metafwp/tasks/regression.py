"""In-context regression: each episode is a function drawn from a family (linear, sparse linear, ReLU
network, sinusoid), its labelled points and queries under synchronous or delayed feedback, squared
error on the loss mask. Tested on fresh seeded tasks by the number of in-context examples k, beside
least squares, ridge, gradient descent, nearest neighbours, averaging and Lasso."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from episodes import EpisodeBatch, RegressionSampler
from episodes.feedback import FEEDBACK_MODES
from episodes.regression import INPUT_DISTRIBUTIONS, REGRESSION_FAMILIES
from metafwp.baselines.regression import BASELINES, SEARCH_GRIDS, TUNED, make_baseline
from metafwp.constructions import gd_predict
from metafwp.errors import ConfigError
from metafwp.losses import check_outputs
from metafwp.models import LEARNER_KINDS, LearnerInputs, LinearSelfAttention
from metafwp.plots import plot_error_by_examples
from metafwp.tasks.base import Scores, Task, evaluate_episodes

TUNING_EPISODES = 256  # training tasks the tuned baselines choose their setting on


@dataclass
class RegressionData:
    """The family and the episode layout. Synchronous: ``num_support`` labelled points then
    ``num_query`` queries; delayed: a sequence of ``num_support`` points, each predicted before its
    target is shown (the error-by-k curve from k = 0 to ``num_support - 1``)."""
    family: str = "linear"
    dim: int = 10
    num_support: int = 10
    num_query: int = 1
    feedback: str = "synchronous"
    noise_std: float = 0.0
    input_distribution: str = "normal"
    input_range: float = 2.0          # uniform inputs: U(-input_range / 2, input_range / 2)
    num_nonzero: int = 3              # sparse_linear: non-zero weights
    hidden: int = 32                  # relu_network: hidden units
    gd_steps: int = 1                 # steps of the gd baseline
    num_workers: int = 0

    DECIDING_KEYS: ClassVar[tuple[str, ...]] = ("family", "feedback", "input_distribution")
    TEST_KEYS: ClassVar[tuple[str, ...]] = ("gd_steps",)  # shape only the test: may change on resume and in evaluate

    def unread_keys(self) -> set[str]:
        unread = set()
        if self.family != "sparse_linear":
            unread.add("num_nonzero")
        if self.family != "relu_network":
            unread.add("hidden")
        if self.family == "sinusoid":
            unread |= {"dim", "input_distribution", "input_range"}
        elif self.input_distribution != "uniform":
            unread.add("input_range")
        if self.feedback == "delayed":
            unread.add("num_query")
        return unread

    def check(self) -> None:
        for key, value, valid in (("family", self.family, REGRESSION_FAMILIES),
                                  ("feedback", self.feedback, FEEDBACK_MODES),
                                  ("input_distribution", self.input_distribution, INPUT_DISTRIBUTIONS)):
            if value not in valid:
                raise ConfigError(f"Unknown data.{key} {value!r}. Valid: {', '.join(valid)}")
        if self.gd_steps < 1:
            raise ConfigError(f"data.gd_steps must be >= 1, got {self.gd_steps}")


def squared_error_by_examples(outputs: torch.Tensor, batch: EpisodeBatch):
    """``(per_step [B, T], examples [B, T])``: the squared error summed over the target dims and the
    number of labelled examples shown before each step (``shot - 1``)."""
    check_outputs(outputs, batch)
    return (outputs.float() - batch.targets).square().sum(-1), batch.shot - 1


class InContextBaseline(nn.Module):
    """A regression baseline read as a learner: at every step it fits the examples whose targets the
    feedback has shown so far (the support, or the steps before under delayed feedback) and
    predicts the step's input; with no example yet it predicts 0 (the prior mean).

    ``forward(batch) -> (predictions [B, T, dy], None)``.
    """

    def __init__(self, baseline, feedback: str):
        super().__init__()
        self.baseline, self.feedback = baseline, feedback

    def forward(self, batch: EpisodeBatch, state=None):
        x, y = batch.inputs.double(), batch.feedback[..., :-1].double()
        predictions = torch.zeros_like(y)
        if self.feedback == "synchronous":
            support = int((batch.feedback[0, :, -1] == 0).sum())
            predictions[:, support:] = self.baseline(x[:, :support], y[:, :support], x[:, support:])
        else:  # step t shows y_{t-1}: predict x_t from steps 0 .. t-1
            for t in range(1, x.shape[1]):
                predictions[:, t:t + 1] = self.baseline(x[:, :t], y[:, 1:t + 1], x[:, t:t + 1])
        return predictions.to(batch.targets.dtype), None


class RegressionTask(Task):
    """``task: regression``: in-context regression episodes of ``data.family``."""

    name = "regression"
    DataConfig = RegressionData
    metric = "error"
    higher_is_better = False
    inputs, targets = "vectors", "values"
    BASELINES = BASELINES

    @classmethod
    def default_baselines(cls, config) -> list[str]:
        """least squares, ridge (with noise), one tuned GD step, 3-NN, averaging, Lasso (sparse tasks)."""
        names = ["least_squares"] + (["ridge"] if config.data.noise_std else []) + ["gd", "nearest_neighbours",
                                                                                    "averaging"]
        return names + (["lasso"] if config.data.family == "sparse_linear" else [])

    @classmethod
    def check_config(cls, config) -> None:
        super().check_config(config)
        if not LEARNER_KINDS[config.model.kind].sequential and config.data.feedback != "synchronous":
            raise ConfigError(f"model.kind={config.model.kind} pairs each x with its own target, which delayed "
                              f"feedback shows one step later; set data.feedback=synchronous or use "
                              f"model.kind=sequence")

    def make_sampler(self, seed: int) -> RegressionSampler:
        data = self.data
        num_query = data.num_query if data.feedback == "synchronous" else 0
        try:
            return RegressionSampler(data.family, data.num_support, num_query, dim=data.dim,
                                     noise_std=data.noise_std, input_distribution=data.input_distribution,
                                     input_range=data.input_range, num_nonzero=data.num_nonzero,
                                     hidden=data.hidden, feedback=data.feedback, seed=seed)
        except ValueError as error:
            raise ConfigError(f"data: {error}") from None

    def train_episodes(self) -> RegressionSampler:
        return self.make_sampler(self.config.train.seed)

    def validation_episodes(self) -> RegressionSampler:
        return self.make_sampler(self.config.eval.val_seed)

    def test_episodes(self) -> dict[str, tuple[RegressionSampler, dict]]:
        """Fresh tasks drawn with ``eval.seed``."""
        return {"": (self.make_sampler(self.config.eval.seed), {})}

    def learner_inputs(self) -> LearnerInputs:
        """The raw ``[x_t, feedback]`` steps: ``x`` of ``dim`` values, one target value and its unknown flag."""
        return LearnerInputs("vectors", (self.sampler.dim,), 1, 2, "values")

    def objective(self, model: nn.Module, batch: EpisodeBatch) -> Scores:
        """Mean squared error on the loss mask; tallies by k for k = 0 .. num_steps (k: labelled
        examples shown before the step) ``squared_error`` and ``scored`` (steps), and over the
        episodes scored at k, ``episodes``, ``episode_error`` and ``episode_error_squared`` (each
        episode's mean squared error at k, for the confidence interval by k)."""
        outputs, _ = model(batch)
        per_step, examples = squared_error_by_examples(outputs, batch)
        mask = batch.loss_mask.to(per_step.dtype)
        scored = mask.sum()
        loss = (per_step * mask).sum() / (scored * outputs.shape[-1])
        scored_error, mask = (per_step.detach() * mask).double(), mask.double()
        slots = examples.clamp_min(0).flatten()  # padding (shot 0) weighs nothing
        sums = torch.zeros(2, batch.num_steps + 1, dtype=torch.float64, device=mask.device)
        sums[0].index_add_(0, slots, scored_error.flatten())
        sums[1].index_add_(0, slots, mask.flatten())
        by_episode = torch.zeros(2, batch.batch_size, batch.num_steps + 1, dtype=torch.float64, device=mask.device)
        by_episode[0].scatter_add_(1, examples.clamp_min(0), scored_error)
        by_episode[1].scatter_add_(1, examples.clamp_min(0), mask)
        at_k = by_episode[1] > 0
        episode_error = torch.where(at_k, by_episode[0] / by_episode[1].clamp_min(1), 0)  # [B, num_steps + 1]
        per_episode = scored_error.sum(1) / mask.sum(1) / self.sampler.dim
        tallies = {"squared_error": sums[0], "scored": sums[1], "episodes": at_k.double().sum(0),
                   "episode_error": episode_error.sum(0), "episode_error_squared": episode_error.square().sum(0)}
        return Scores(loss, tallies, per_episode, scored)

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict:
        """``loss`` (mean squared error), ``error`` (squared error / dim, Garg et al.'s normalisation),
        ``by_examples`` ``{k: error}`` and ``by_examples_ci95`` ``{k: 1.96 std / sqrt(n)}`` over the n
        episodes scored at k (0 where n < 2)."""
        error, count, episodes = sums["squared_error"], sums["scored"], sums["episodes"]
        dim = self.sampler.dim
        held = [k for k in range(len(count)) if count[k] > 0]
        by_examples = {k: (error[k] / count[k] / dim).item() for k in held}
        mean = sums["episode_error"] / episodes.clamp_min(1)
        variance = (sums["episode_error_squared"] - episodes * mean.square()) / (episodes - 1).clamp_min(1)
        ci95 = 1.96 * variance.clamp_min(0).sqrt() / episodes.clamp_min(1).sqrt() / dim
        mse = (error.sum() / count.sum()).item()
        return {"loss": mse, "error": mse / dim, "by_examples": by_examples,
                "by_examples_ci95": {k: ci95[k].item() if episodes[k] > 1 else 0.0 for k in held}}

    def learner_fields(self, model: nn.Module) -> dict:
        """For linear self-attention: the GD++ preconditioner its first layer applies,
        ``gd_plus_plus_gamma`` and ``gamma_off_diagonal`` (``LinearSelfAttention.gd_plus_plus_gamma``)."""
        if not isinstance(model, LinearSelfAttention):
            return {}
        gamma, off_diagonal = model.gd_plus_plus_gamma(0)
        return {"gd_plus_plus_gamma": gamma, "gamma_off_diagonal": off_diagonal}

    def tuned_setting(self, name: str, device: torch.device) -> float:
        """The ``TUNED[name]`` of baseline ``name`` from ``SEARCH_GRIDS`` with the lowest error on the
        first ``TUNING_EPISODES`` training tasks."""
        def error(setting: float) -> float:
            baseline = InContextBaseline(self.baseline(name, setting), self.data.feedback)
            return evaluate_episodes(self, baseline, self.sampler, TUNING_EPISODES, TUNING_EPISODES, device)["error"]
        errors = {setting: error(setting) for setting in SEARCH_GRIDS[TUNED[name]]}
        return min(errors, key=lambda setting: math.inf if math.isnan(errors[setting]) else errors[setting])

    def baseline(self, name: str, setting: float | None = None):
        return make_baseline(name, noise_std=self.data.noise_std, gd_steps=self.data.gd_steps, setting=setting)

    def baseline_learners(self, model: nn.Module, device: torch.device) -> dict[str, tuple[nn.Module, dict]]:
        """Each of ``eval.baselines`` read as a learner; tuned ones report their setting."""
        learners = {}
        for name in self.baselines(self.config):
            setting = self.tuned_setting(name, device) if name in TUNED else None
            fields = {} if setting is None else {TUNED[name]: setting}
            learners[name] = (InContextBaseline(self.baseline(name, setting), self.data.feedback), fields)
        return learners

    def write_figures(self, results: dict[str, dict], run_dir: Path, title: str) -> list[Path]:
        return [plot_error_by_examples(results, run_dir / "error_by_examples.png", dim=self.sampler.dim,
                                       title=title)]


def one_step_gd_learning_rate(sampler: RegressionSampler, episodes: int = 100_000, batch_size: int = 10_000) -> float:
    """The ``gd_lr`` of one GD step from W0 = 0, ``y* = (gd_lr / N) sum_i y_i x_i . x*`` for N support
    examples, that minimises the squared error on ``episodes`` tasks of ``sampler`` (a scalar
    least-squares fit: exact, no grid)."""
    moment, power = 0.0, 0.0
    for start in range(0, episodes, batch_size):
        batch = sampler.sample(range(start, min(start + batch_size, episodes)))
        x, y = batch.inputs.double(), batch.targets.double()
        n = sampler.num_support
        read = torch.einsum("bnd,bny,bmd->bmy", x[:, :n], y[:, :n], x[:, n:])  # sum_i y_i x_i^T x*
        moment += (read * y[:, n:]).sum().item()
        power += read.square().sum().item()
    return sampler.num_support * moment / power


def compare_with_gradient_descent(model: nn.Module, sampler: RegressionSampler, gd_lr: float, episodes: int = 10_000,
                                  batch_size: int = 2000) -> dict:
    """von Oswald et al.'s comparison of a trained learner with the constructed GD layers
    (``gd_predict``: one step from W0 = 0, learning rate ``gd_lr``, a step of ``gd_lr / N`` per
    example) on tasks ``0 .. episodes - 1`` of ``sampler`` (synchronous, one query per task).

    Returns ``{"loss_learner", "loss_gd"}`` (1/2 squared error, their loss), ``prediction_difference``
    (mean |y_learner - y_GD|), and the sensitivities ``d y / d x_query`` compared per task:
    ``sensitivity_cosine`` (mean cosine similarity) and ``sensitivity_distance`` (mean L2 distance),
    with ``gd_lr`` and its ``step_size`` per example ``gd_lr / N``.
    """
    if sampler.feedback != "synchronous" or sampler.num_query != 1:
        raise ValueError("the comparison reads synchronous episodes with one query (num_query=1)")
    n, sums = sampler.num_support, torch.zeros(5, dtype=torch.float64)
    was_training = model.training
    model.eval()
    for start in range(0, episodes, batch_size):
        batch = sampler.sample(range(start, min(start + batch_size, episodes)))
        inputs = batch.inputs.clone().requires_grad_(True)
        batch.inputs = inputs
        learner = model(batch)[0][:, n:]
        (learner_sensitivity,) = torch.autograd.grad(learner.sum(), inputs)
        x = inputs.detach().double().requires_grad_(True)
        W0 = x.new_zeros(1, x.shape[-1])
        gd = gd_predict(x[:, :n], batch.targets[:, :n].double(), x[:, n:], W0, [gd_lr / n])
        (gd_sensitivity,) = torch.autograd.grad(gd.sum(), x)
        learner, gd, target = learner.detach().double(), gd.detach(), batch.targets[:, n:].double()
        a, b = learner_sensitivity[:, n].double(), gd_sensitivity[:, n]
        sums += torch.stack([0.5 * (learner - target).square().sum(), 0.5 * (gd - target).square().sum(),
                             (learner - gd).abs().sum(), F.cosine_similarity(a, b, dim=-1).sum(),
                             (a - b).norm(dim=-1).sum()])
    model.train(was_training)
    names = ("loss_learner", "loss_gd", "prediction_difference", "sensitivity_cosine", "sensitivity_distance")
    return {name: (value / episodes).item() for name, value in zip(names, sums)} | {
        "gd_lr": gd_lr, "step_size": gd_lr / n, "episodes": episodes}


def error_at(result: dict, k: int) -> float:
    """The normalised error of a test ``result`` (a learner's or a baseline's) after ``k`` in-context examples."""
    by_examples = {int(key): value for key, value in result["by_examples"].items()}
    if k not in by_examples:
        held = sorted(by_examples)
        raise ValueError(f"k = {k} is beyond the episode: this result holds k = {held[0]} .. {held[-1]} "
                         f"(delayed feedback scores k = 0 .. data.num_support - 1; set data.num_support >= {k + 1})")
    return by_examples[k]
