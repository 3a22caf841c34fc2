"""Synthetic regression families and their in-context sequences.

Each episode is one task (a function drawn from the family) and its points, all drawn from
``EpisodeRNG`` keyed by the episode id, so a task is the same whatever the batch. Families:

- ``linear``: ``y = w.x + noise``, ``w ~ N(0, I_d)``, ``x ~ N(0, I_d)`` or ``U(-r/2, r/2)^d``.
- ``sparse_linear``: as linear with only ``num_nonzero`` random coordinates of w kept.
- ``relu_network``: ``y = a.relu(W x) / sqrt(hidden)``, W and a standard normal.
- ``sinusoid``: ``y = A sin(x - phase)``, A in [0.1, 5], phase in [0, pi], x in [-5, 5] (d = 1).
"""
from __future__ import annotations

import math

import torch

from episodes.batch import EpisodeBatch
from episodes.feedback import check_feedback_mode, delayed, synchronous
from episodes.sampling import as_episode_ids, make_rng

REGRESSION_FAMILIES = ("linear", "sparse_linear", "relu_network", "sinusoid")
INPUT_DISTRIBUTIONS = ("normal", "uniform")
STREAM_TASK, STREAM_TASK_EXTRA, STREAM_INPUTS, STREAM_NOISE, STREAM_SPARSITY = 20, 21, 22, 23, 24


class RegressionSampler:
    """In-context regression episodes: ``num_support`` labelled points then ``num_query`` queries.

    Args:
        family: one of ``linear``, ``sparse_linear``, ``relu_network``, ``sinusoid``.
        num_support: points per episode whose targets are shown (synchronous), or the sequence
            length (delayed).
        num_query: query points per episode (synchronous only). Default: 0.
        dim: input dimension d (1 for sinusoid). Default: 10.
        noise_std: standard deviation of Gaussian noise added to the targets. Default: 0.
        input_distribution: ``normal`` (``N(0, I)``) or ``uniform`` (``U(-r/2, r/2)^d``); ignored by
            sinusoid. Default: normal.
        input_range: the width r of the uniform inputs (von Oswald et al.'s code: 1). Default: 2.
        num_nonzero: non-zero weights of ``sparse_linear``. Default: 3.
        hidden: hidden units of ``relu_network``. Default: 32.
        feedback: ``synchronous`` or ``delayed``. Default: synchronous.
        seed, generator: the randomness. Default: seed 0.

    ``sample(range(0, 64))`` returns an EpisodeBatch with inputs ``[B, T, d]`` float32, targets
    ``[B, T, 1]`` and feedback ``[B, T, 2]`` (target, unknown flag). ``tasks(ids)`` gives the
    drawn parameters, e.g. for the least-squares baseline.
    """

    def __init__(self, family: str, num_support: int, num_query: int = 0, *, dim: int = 10,
                 noise_std: float = 0.0, input_distribution: str = "normal", input_range: float = 2.0,
                 num_nonzero: int = 3,
                 hidden: int = 32, feedback: str = "synchronous", seed: int | None = None,
                 generator: torch.Generator | None = None):
        if family not in REGRESSION_FAMILIES:
            raise ValueError(f"Unknown family {family!r}. Valid: {', '.join(REGRESSION_FAMILIES)}")
        if input_distribution not in INPUT_DISTRIBUTIONS:
            raise ValueError(f"Unknown input_distribution {input_distribution!r}. Valid: {', '.join(INPUT_DISTRIBUTIONS)}")
        self.feedback = check_feedback_mode(feedback)
        if not isinstance(num_support, int) or num_support < 1 or not isinstance(num_query, int) or num_query < 0:
            raise ValueError(f"need num_support >= 1 and num_query >= 0, got {num_support!r}, {num_query!r}")
        if feedback == "delayed" and num_query:
            raise ValueError("delayed feedback scores every step, so it has no queries: set num_query=0")
        if family == "sinusoid":
            dim = 1
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be an int >= 1, got {dim!r}")
        if family == "sparse_linear" and not 1 <= num_nonzero <= dim:
            raise ValueError(f"num_nonzero must be in [1, dim={dim}], got {num_nonzero}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        if input_range <= 0:
            raise ValueError(f"input_range must be > 0, got {input_range}")
        self.family, self.num_support, self.num_query, self.dim = family, num_support, num_query, dim
        self.noise_std, self.input_distribution, self.input_range = noise_std, input_distribution, input_range
        self.num_nonzero, self.hidden = num_nonzero, hidden
        self.rng = make_rng(seed, generator)

    @property
    def num_steps(self) -> int:
        return self.num_support + self.num_query

    def tasks(self, episode_ids) -> dict[str, torch.Tensor]:
        """The functions of the episodes, float64: ``weights [B, d]`` (linear families),
        ``hidden_weights [B, hidden, d]`` and ``output_weights [B, hidden]`` (relu_network),
        ``amplitude [B]`` and ``phase [B]`` (sinusoid)."""
        ids = as_episode_ids(episode_ids)
        if self.family == "sinusoid":
            u = self.rng.uniform(ids, STREAM_TASK, (2,))
            return {"amplitude": 0.1 + 4.9 * u[:, 0], "phase": math.pi * u[:, 1]}
        if self.family == "relu_network":
            return {"hidden_weights": self.rng.normal(ids, STREAM_TASK, (self.hidden, self.dim)),
                    "output_weights": self.rng.normal(ids, STREAM_TASK_EXTRA, (self.hidden,))}
        weights = self.rng.normal(ids, STREAM_TASK, (self.dim,))
        if self.family == "sparse_linear":
            keys = self.rng.permutation(ids, STREAM_SPARSITY, (self.dim,))[:, : self.num_nonzero]
            weights = torch.zeros_like(weights).scatter(1, keys, weights.gather(1, keys))
        return {"weights": weights}

    def inputs(self, episode_ids) -> torch.Tensor:
        """The points of the episodes, float64 ``[B, T, d]``."""
        ids = as_episode_ids(episode_ids)
        shape = (self.num_steps, self.dim)
        if self.family == "sinusoid":
            return -5.0 + 10.0 * self.rng.uniform(ids, STREAM_INPUTS, shape)
        if self.input_distribution == "uniform":
            return self.input_range * (self.rng.uniform(ids, STREAM_INPUTS, shape) - 0.5)
        return self.rng.normal(ids, STREAM_INPUTS, shape)

    def evaluate(self, tasks: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Noise-free targets ``[B, T, 1]`` of ``tasks`` at points ``x [B, T, d]``."""
        if self.family == "sinusoid":
            return tasks["amplitude"][:, None, None] * torch.sin(x - tasks["phase"][:, None, None])
        if self.family == "relu_network":
            hidden = torch.relu(torch.einsum("bhd,btd->bth", tasks["hidden_weights"], x))
            return (hidden @ tasks["output_weights"][..., None]) / math.sqrt(self.hidden)
        return x @ tasks["weights"][..., None]

    def state_dict(self) -> dict:
        """What fixes episode ``i``: the family and its settings, the episode shape, the feedback and
        the seed. Two samplers with equal state dicts give equal episodes."""
        return {"sampler": type(self).__name__, "family": self.family, "num_support": self.num_support,
                "num_query": self.num_query, "dim": self.dim, "noise_std": self.noise_std,
                "input_distribution": self.input_distribution, "input_range": self.input_range,
                "num_nonzero": self.num_nonzero, "hidden": self.hidden, "feedback": self.feedback,
                "seed": self.rng.seed}

    def sample(self, episode_ids) -> EpisodeBatch:
        """The EpisodeBatch of ``episode_ids`` (float32)."""
        ids = as_episode_ids(episode_ids)
        x = self.inputs(ids)
        y = self.evaluate(self.tasks(ids), x)
        if self.noise_std:
            y = y + self.noise_std * self.rng.normal(ids, STREAM_NOISE, (self.num_steps, 1))
        x, y = x.float(), y.float()
        if self.feedback == "synchronous":
            feedback, loss_mask, shot = synchronous(y, self.num_support)
        else:
            feedback, loss_mask, shot = delayed(y)
        return EpisodeBatch(inputs=x, feedback=feedback, targets=y, loss_mask=loss_mask, shot=shot,
                            segment=torch.zeros_like(shot), episode_ids=ids, num_classes=None)
