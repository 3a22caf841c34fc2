"""The continuous-time FWP learner (Irie, Faccio & Schmidhuber 2022): a learning rule integrated along
the spline path of irregular observations, read out at each observation time as the authors:

    q = softmax(query_net(LayerNorm(input_proj(dX/dt(t)))))  per head,   y_h = W_h(t) q_h,
    logits = head(FF(dropout(out_proj(concat_h y_h))))

with ``FF(x) = x + Drop(W2 Drop(ReLU(W1 LayerNorm(x))))``. It reads vector episodes whose first
channel is the observation time scaled to [0, 1] over ``grid_steps`` steps (``IrregularRowsSampler``):
the path is the natural cubic spline through the observed rows of the grid ``0 .. grid_steps - 1``
(time channel and features; the gap channel, the second, is left out), solved with rk4 at step 1
from the grid's start, the initial fast weight the write term there.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from metafwp.ops.ct_fwp import LearningRuleField, NaturalCubicSpline, solve_ode


def observation_path(inputs: torch.Tensor, grid_steps: int) -> tuple[torch.Tensor, NaturalCubicSpline, torch.Tensor]:
    """``(grid [G], spline, steps [B, L])`` of irregular observations ``inputs [B, L, 2 + F]`` (time
    over the grid, gap, features): the natural cubic spline through each sequence's observed grid
    steps (time channel and features; NaN rows where none), and each observation's grid step."""
    B, L, _ = inputs.shape
    steps = (inputs[:, :, 0] * (grid_steps - 1)).round().long()
    values = torch.cat([inputs[:, :, :1], inputs[:, :, 2:]], 2)
    grid_values = inputs.new_full((B, grid_steps, values.shape[2]), float("nan"))
    grid_values.scatter_(1, steps[:, :, None].expand_as(values), values)
    grid = torch.arange(grid_steps, dtype=inputs.dtype, device=inputs.device)
    return grid, NaturalCubicSpline(grid, grid_values), steps


def at_observations(logits: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """``logits [B, G, classes]`` on the grid read at each observation's grid step ``steps [B, L]``."""
    return logits.gather(1, steps[:, :, None].expand(-1, -1, logits.shape[2]))


class ContinuousTimeFWP(nn.Module):
    """Args: ``features`` the path's channels (the inputs' channels but the gap), ``grid_steps`` the
    observation grid's length, ``num_classes``, ``hidden`` and ``num_heads`` of the fast weight,
    ``rule`` (hebb, oja, delta), ``cde`` (the authors' delta_cde form), ``ff_dim``, ``dropout``,
    ``method`` (a torchdiffeq solver), ``adjoint``.

    ``forward(batch, state=None) -> (logits [B, L, classes], None)``: a prediction at every observation."""

    def __init__(self, features: int, grid_steps: int, num_classes: int, hidden: int = 32, num_heads: int = 4,
                 rule: str = "delta", cde: bool = True, ff_dim: int = 64, dropout: float = 0.0,
                 method: str = "rk4", adjoint: bool = True):
        super().__init__()
        self.grid_steps, self.method, self.adjoint = grid_steps, method, adjoint
        self.field = LearningRuleField(features, hidden, num_heads, rule=rule, cde=cde)
        self.query_net = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.ff = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, ff_dim), nn.ReLU(), nn.Dropout(dropout),
                                nn.Linear(ff_dim, hidden), nn.Dropout(dropout))
        self.head = nn.Linear(hidden, num_classes)

    def read(self, W: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        """Logits from the fast weights ``W [B, H d d]`` and the path's derivative ``dx [B, C]``."""
        field = self.field
        H, d = field.num_heads, field.head_dim
        q = torch.softmax(self.query_net(field.input_norm(field.input_proj(dx))).view(-1, H, d), -1)
        y = (W.view(-1, H, d, d) @ q[..., None])[..., 0].flatten(1)
        h = self.dropout(self.out_proj(y))
        return self.head(h + self.ff(h))

    def fast_weights(self, inputs: torch.Tensor) -> tuple[torch.Tensor, NaturalCubicSpline, torch.Tensor, torch.Tensor]:
        """``(grid [G], spline, steps [B, L], W [G, B, H d d])``: the path of ``inputs [B, L, 2 + F]`` and
        the fast weights solved along it, at every grid step."""
        grid, spline, steps = observation_path(inputs, self.grid_steps)
        self.field.read(spline)
        W = solve_ode(self.field, self.field.initial(grid[0]), grid, method=self.method, adjoint=self.adjoint,
                      parameters=tuple(self.field.parameters()))
        return grid, spline, steps, W

    def forward(self, batch, state=None):
        grid, spline, steps, W = self.fast_weights(batch.inputs)
        logits = torch.stack([self.read(W[g], spline.derivative(grid[g])) for g in range(self.grid_steps)], 1)
        return at_observations(logits, steps), None
