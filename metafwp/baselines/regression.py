"""Regression baselines, batched over tasks: each maps ``(x_support [B, N, dx], y_support [B, N, dy],
x_query [B, M, dx]) -> y_query [B, M, dy]`` and computes in float64 (the result has x_query's dtype).

- ``least_squares``: the minimum-norm least-squares solution (``pinv``); exact from N = dx on
  noiseless linear tasks.
- ``ridge``: ``W = (X^T X + lambda I)^-1 X^T Y``, the posterior mean for ``w ~ N(0, I)`` and noise
  variance ``lambda``; ``lambda = 0`` is least squares.
- ``gradient_descent``: ``steps`` steps from 0 on the mean loss ``1/(2N) sum_i ||y_i - W x_i||^2``
  with learning rate ``gd_lr``, ``W <- W + gd_lr / N sum_i (y_i - W x_i) x_i^T``.
- ``nearest_neighbours``: the mean target of the ``k`` nearest support points (fewer if N < k).
- ``averaging``: ``w = sum_i y_i x_i / N`` read at x* (Garg et al. 2022).
- ``lasso``: ``argmin_w 1/(2N) ||y - X w||^2 + alpha ||w||_1`` per output (scikit-learn's
  objective), by FISTA.

``BASELINES`` names them for ``eval.baselines``; ``make_baseline`` builds one with its setting.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch

Baseline = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _float64(*tensors):
    return [t.to(torch.float64) for t in tensors]


def least_squares(x_support, y_support, x_query):
    X, Y, Q = _float64(x_support, y_support, x_query)
    return (Q @ (torch.linalg.pinv(X) @ Y)).to(x_query.dtype)


def ridge(x_support, y_support, x_query, *, lam: float):
    if lam == 0:
        return least_squares(x_support, y_support, x_query)
    X, Y, Q = _float64(x_support, y_support, x_query)
    gram = X.transpose(1, 2) @ X + lam * torch.eye(X.shape[-1], dtype=X.dtype, device=X.device)
    return (Q @ torch.linalg.solve(gram, X.transpose(1, 2) @ Y)).to(x_query.dtype)


def gradient_descent(x_support, y_support, x_query, *, gd_lr: float, steps: int):
    X, Y, Q = _float64(x_support, y_support, x_query)
    W = X.new_zeros(X.shape[0], X.shape[-1], Y.shape[-1])  # [B, dx, dy], predictions X @ W
    for _ in range(steps):
        W = W + gd_lr / X.shape[1] * X.transpose(1, 2) @ (Y - X @ W)
    return (Q @ W).to(x_query.dtype)


def nearest_neighbours(x_support, y_support, x_query, *, k: int = 3):
    X, Y, Q = _float64(x_support, y_support, x_query)
    nearest = torch.cdist(Q, X).topk(min(k, X.shape[1]), dim=-1, largest=False).indices  # [B, M, k]
    neighbours = Y.gather(1, nearest.flatten(1)[..., None].expand(-1, -1, Y.shape[-1]))
    return neighbours.view(*nearest.shape, -1).mean(2).to(x_query.dtype)


def averaging(x_support, y_support, x_query):
    X, Y, Q = _float64(x_support, y_support, x_query)
    return (Q @ (X.transpose(1, 2) @ Y / X.shape[1])).to(x_query.dtype)


def lasso(x_support, y_support, x_query, *, alpha: float, max_iterations: int = 3000, tol: float = 1e-10):
    """FISTA on the Lasso objective, step 1/L with L the largest eigenvalue of X^T X / N, until no
    weight moves by more than ``tol`` in an iteration (checked every 50) or ``max_iterations``."""
    X, Y, Q = _float64(x_support, y_support, x_query)
    N = X.shape[1]
    gram, correlation = X.transpose(1, 2) @ X / N, X.transpose(1, 2) @ Y / N
    step = 1.0 / torch.linalg.eigvalsh(gram)[:, -1].clamp_min(1e-12)[:, None, None]
    W = momentum = torch.zeros_like(correlation)
    t = 1.0
    for iteration in range(max_iterations):
        z = momentum - step * (gram @ momentum - correlation)
        W_next = z.sign() * (z.abs() - step * alpha).clamp_min(0)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        momentum = W_next + (t - 1) / t_next * (W_next - W)
        converged = iteration % 50 == 49 and (W_next - W).abs().max() <= tol
        W, t = W_next, t_next
        if converged:
            break
    return (Q @ W).to(x_query.dtype)


BASELINES = ("least_squares", "ridge", "gd", "nearest_neighbours", "averaging", "lasso")
TUNED = {"gd": "gd_lr", "lasso": "alpha"}  # baselines whose setting is chosen on training tasks
SEARCH_GRIDS = {"gd_lr": torch.logspace(-3, 2, 51).tolist(), "alpha": torch.logspace(-4, 0, 9).tolist()}


def make_baseline(name: str, *, noise_std: float = 0.0, gd_steps: int = 1, setting: float | None = None) -> Baseline:
    """The baseline ``name`` of ``BASELINES``; ``ridge`` takes ``lambda = noise_std ** 2``, ``gd`` runs
    ``gd_steps`` steps, and ``setting`` is the learning rate of ``gd`` or the alpha of ``lasso``."""
    if name not in BASELINES:
        raise ValueError(f"Unknown regression baseline {name!r}. Valid: {', '.join(BASELINES)}")
    if name in TUNED and setting is None:
        raise ValueError(f"baseline {name} needs its {TUNED[name]} (setting=...)")
    return {"least_squares": least_squares, "ridge": partial(ridge, lam=noise_std ** 2),
            "gd": partial(gradient_descent, gd_lr=setting, steps=gd_steps), "nearest_neighbours": nearest_neighbours,
            "averaging": averaging, "lasso": partial(lasso, alpha=setting)}[name]
