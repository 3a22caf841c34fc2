"""Continuous-time fast weight programmers (Irie, Faccio & Schmidhuber 2022): a learning rule as a
vector field ``dW/dt = f(W, x(t))``, integrated by an ODE solver, on a path ``X(t)`` interpolated
through irregular observations by a natural cubic spline.

Per head, with raw slow-net outputs ``k`` (keys), ``v`` (values), ``b`` (rate), the authors' maps
``k~ = softmax(k)``, ``v~ = tanh(v)``, ``beta = sigmoid(b)``, and ``W [d_v, d_k]`` (a read is ``W k``):

- ``hebb``:  dW/dt = beta v~ (x) k~
- ``oja``:   dW/dt = v~ (x) [beta softmax(k - W^T v~)]       (the correction inside the softmax)
- ``delta``: dW/dt = beta (v~ - W k~) (x) k~

The initial value is the write term at t0, ``beta v~ (x) k~`` (not zeros). The solver is
torchdiffeq's ``odeint`` (fixed-step rk4 with the smallest observation gap as the step by default,
any of its solvers by name) or ``odeint_adjoint`` (gradients in memory independent of the number
of steps).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

CT_RULES = ("hebb", "oja", "delta")
# torchdiffeq's solvers (but scipy_solver, which does not run on torch tensors' graphs)
FIXED_STEP_SOLVERS = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams", "fixed_adams")
ODE_SOLVERS = FIXED_STEP_SOLVERS + ("dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun")


def write_term(k: torch.Tensor, v: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sigmoid(b) tanh(v) (x) softmax(k)`` for ``k, v [..., d]``, ``b [...]``: ``[..., d_v, d_k]``."""
    return torch.sigmoid(b)[..., None, None] * torch.tanh(v)[..., :, None] * torch.softmax(k, -1)[..., None, :]


def rule_field(rule: str, W: torch.Tensor, k: torch.Tensor, v: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``dW/dt`` of learning rule ``rule`` (``hebb``, ``oja``, ``delta``) for fast weights
    ``W [..., d_v, d_k]`` and raw ``k [..., d_k]``, ``v [..., d_v]``, ``b [...]``."""
    if rule == "hebb":
        return write_term(k, v, b)
    if rule == "oja":
        value = torch.tanh(v)
        key = torch.softmax(k - (W.transpose(-1, -2) @ value[..., None])[..., 0], -1)
        return torch.sigmoid(b)[..., None, None] * value[..., :, None] * key[..., None, :]
    if rule == "delta":
        key = torch.softmax(k, -1)
        error = torch.tanh(v) - (W @ key[..., None])[..., 0]
        return torch.sigmoid(b)[..., None, None] * error[..., :, None] * key[..., None, :]
    raise ValueError(f"Unknown continuous-time rule {rule!r}. Valid: {', '.join(CT_RULES)}")


class NaturalCubicSpline:
    """A natural cubic spline per sequence and channel through the observed points of
    ``values [B, T, C]`` at ``times [T]`` (NaN where not observed); before its first and after its
    last observation a channel is held at that value (slope 0). Fitted once, in numpy (channels
    observed at the same times share one solve); ``evaluate(t)`` and ``derivative(t)`` give
    ``[B, C]`` at any scalar t, on the interval ``index = (t > times).sum() - 1`` (clamped), so at
    a knot the interval to its left."""

    def __init__(self, times: torch.Tensor, values: torch.Tensor):
        if times.dim() != 1 or values.dim() != 3 or values.shape[1] != len(times) or len(times) < 2:
            raise ValueError(f"times must be [T] (T >= 2) and values [B, T, C], got {tuple(times.shape)} and "
                             f"{tuple(values.shape)}")
        grid = times.detach().double().cpu().numpy()
        if not (np.diff(grid) > 0).all():
            raise ValueError("times must increase strictly")
        data = values.detach().double().cpu().numpy()
        B, T, C = data.shape
        coefficients = np.zeros((4, B, T - 1, C))   # a + b s + c s^2 + d s^3 with s = t - times[i]
        finite = np.isfinite(data)
        unobserved = np.flatnonzero(~finite.any((1, 2)))
        if len(unobserved):
            raise ValueError(f"sequence {int(unobserved[0])} of the batch has no observed point (every value NaN): "
                             "a path needs at least one observation")
        for n in range(B):
            patterns = {}                            # channels observed at the same times share one solve
            for channel in range(C):
                patterns.setdefault(finite[n, :, channel].tobytes(), []).append(channel)
            for channels in patterns.values():
                coefficients[:, n][:, :, channels] = grid_coefficients(grid, data[n][:, channels])
        self.times = times.detach()
        self.coefficients = torch.as_tensor(coefficients, dtype=values.dtype, device=values.device)

    def piece(self, t: torch.Tensor | float):
        t = torch.as_tensor(t, dtype=self.times.dtype, device=self.times.device)
        index = ((t > self.times).sum() - 1).clamp(0, len(self.times) - 2)
        return index, t - self.times[index]

    def evaluate(self, t) -> torch.Tensor:
        index, s = self.piece(t)
        a, b, c, d = self.coefficients[:, :, index]
        return a + s * (b + s * (c + s * d))

    def derivative(self, t) -> torch.Tensor:
        index, s = self.piece(t)
        _, b, c, d = self.coefficients[:, :, index]
        return b + s * (2 * c + 3 * s * d)


def grid_coefficients(grid: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``[4, T - 1, C]`` cubic coefficients on every interval of ``grid [T]`` of the natural cubic
    splines through the finite rows of ``values [T, C]`` (its columns share which rows are finite;
    constant when one row is, zero when none)."""
    seen = np.isfinite(values).all(1)
    knots, y = grid[seen], values[seen]                                   # [n], [n, C]
    n, intervals = len(knots), len(grid) - 1
    out = np.zeros((4, intervals, values.shape[1]))
    if n == 0:
        return out
    if n == 1:
        out[0] = y[0]
        return out
    h = np.diff(knots)
    second = np.zeros_like(y)                  # second derivatives at the knots; 0 at both ends (natural)
    if n > 2:
        diagonal, off = 2 * (h[:-1] + h[1:]), h[1:-1]
        rhs = 6 * (np.diff(y[1:], axis=0) / h[1:, None] - np.diff(y[:-1], axis=0) / h[:-1, None])
        diagonal = diagonal.copy()
        for i in range(1, n - 2):             # Thomas algorithm, every column at once
            w = off[i - 1] / diagonal[i - 1]
            diagonal[i] -= w * off[i - 1]
            rhs[i] -= w * rhs[i - 1]
        solution = np.zeros_like(rhs)
        solution[-1] = rhs[-1] / diagonal[-1]
        for i in range(n - 4, -1, -1):
            solution[i] = (rhs[i] - off[i] * solution[i + 1]) / diagonal[i]
        second[1:-1] = solution
    left = grid[:-1]
    inside = (left >= knots[0]) & (left < knots[-1])
    j = np.clip(np.searchsorted(knots, left, side="right") - 1, 0, n - 2)    # the piece [knots[j], knots[j+1]]
    s, hj = (left - knots[j])[:, None], h[j][:, None]
    slope = (y[j + 1] - y[j]) / hj - hj * (2 * second[j] + second[j + 1]) / 6
    c2, c3 = second[j] / 2, (second[j + 1] - second[j]) / (6 * hj)
    expanded = [y[j] + s * (slope + s * (c2 + s * c3)), slope + s * (2 * c2 + 3 * s * c3), c2 + 3 * s * c3, c3]
    held = np.where((left < knots[0])[:, None], y[0], y[-1])             # before the first, after the last: held
    for k, coefficient in enumerate(expanded):                           # the piece re-expanded around ``left``
        out[k] = np.where(inside[:, None], coefficient, held if k == 0 else 0.0)
    return out


class LearningRuleField(torch.nn.Module):
    """The slow net and learning rule of a continuous-time FWP as an ODE vector field on a path.

    ``ode`` form (``cde=False``): ``k, v, b`` from ``LayerNorm(input_proj(X(t)))``; ``cde`` form
    (the authors' ``delta_cde``, delta rule only): ``k, b`` from ``LayerNorm(input_proj(dX/dt(t)))``
    and ``v = value_proj(X(t))``. ``read(spline)`` sets the path; ``forward(t, W [B, H d d])`` is
    ``dW/dt`` flattened (the ODE state); ``initial(t0)`` is the write term at ``t0``.
    """

    def __init__(self, input_size: int, hidden: int, num_heads: int, rule: str = "delta", cde: bool = False):
        super().__init__()
        if rule not in CT_RULES:
            raise ValueError(f"Unknown continuous-time rule {rule!r}. Valid: {', '.join(CT_RULES)}")
        if cde and rule != "delta":
            raise ValueError(f"the CDE form is the authors' delta_cde; their {rule}_cde fields have quirks that are "
                             "not reproduced: use rule='delta' or cde=False")
        if hidden % num_heads:
            raise ValueError(f"hidden={hidden} is not divisible by num_heads={num_heads}")
        self.rule, self.cde, self.num_heads, self.head_dim = rule, cde, num_heads, hidden // num_heads
        self.input_proj = torch.nn.Linear(input_size, hidden)
        self.input_norm = torch.nn.LayerNorm(hidden)
        d = self.head_dim
        self.slow_net = torch.nn.Linear(hidden, num_heads * ((d + 1) if cde else (2 * d + 1)))
        self.value_proj = torch.nn.Linear(input_size, hidden) if cde else None
        self.path: NaturalCubicSpline | None = None

    def read(self, path: NaturalCubicSpline) -> "LearningRuleField":
        self.path = path
        return self

    def keys_values_rates(self, t):
        """``k, v [B, H, d]`` and ``b [B, H]`` at time t (raw: before softmax, tanh and sigmoid)."""
        H, d = self.num_heads, self.head_dim
        x = self.path.evaluate(t)
        if self.cde:
            k, b = self.slow_net(self.input_norm(self.input_proj(self.path.derivative(t)))).view(-1, H, d + 1).split(
                [d, 1], -1)
            v = self.value_proj(x).view(-1, H, d)
        else:
            k, v, b = self.slow_net(self.input_norm(self.input_proj(x))).view(-1, H, 2 * d + 1).split([d, d, 1], -1)
        return k, v, b.squeeze(-1)

    def forward(self, t, W: torch.Tensor) -> torch.Tensor:
        k, v, b = self.keys_values_rates(t)
        return rule_field(self.rule, W.view(*k.shape, -1), k, v, b).flatten(1)

    def initial(self, t0) -> torch.Tensor:
        return write_term(*self.keys_values_rates(t0)).flatten(1)


def solve_ode(field: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], y0: torch.Tensor,
              times: torch.Tensor, *, method: str = "rk4", step_size: float | None = None,
              adjoint: bool = False, parameters: tuple = (), rtol: float = 1e-5, atol: float = 1e-7) -> torch.Tensor:
    """``y(t)`` at every entry of ``times [T]`` (increasing): ``[T, *y0.shape]``, from ``dy/dt = field(t, y)``
    -- a fast weight ``W`` (``LearningRuleField``) or a neural CDE's hidden state (``CDEField``).

    ``method``: a torchdiffeq solver (Default: ``rk4``, fixed steps of ``step_size``, Default: the
    smallest gap of ``times``); ``adjoint``: ``odeint_adjoint``, whose backward integrates the
    adjoint equation instead of storing the solver's steps (``parameters``: the tensors the field
    reads that need gradients, e.g. the slow net's parameters)."""
    from torchdiffeq import odeint, odeint_adjoint

    if method not in ODE_SOLVERS:
        raise ValueError(f"Unknown ODE solver {method!r}. Valid: {', '.join(ODE_SOLVERS)}")
    if step_size is not None and not step_size > 0:
        raise ValueError(f"step_size must be > 0 (the fixed solver step), got {step_size}")
    if times.dim() != 1 or len(times) < 2 or not bool((times[1:] > times[:-1]).all()):
        raise ValueError(f"times must be a strictly increasing [T] with T >= 2, got {times.tolist()}")
    options = None
    if method in FIXED_STEP_SOLVERS:
        gaps = times[1:] - times[:-1]
        options = {"step_size": float(gaps.min()) if step_size is None else step_size}
    if adjoint:
        if not parameters and not isinstance(field, torch.nn.Module):
            raise ValueError("adjoint=True needs the tensors the field reads (parameters=...) or a field that is an "
                             "nn.Module")
        return odeint_adjoint(field, y0, times, method=method, options=options, rtol=rtol, atol=atol,
                              adjoint_params=tuple(parameters) or None)
    return odeint(field, y0, times, method=method, options=options, rtol=rtol, atol=atol)
