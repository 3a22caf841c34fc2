"""The neural controlled differential equation (Kidger, Morrill, Foster & Lyons 2020), the baseline of
the continuous-time FWP on irregular observations: a hidden state driven by the spline path,

    z(t0) = zeta(X(t0)),   dz/dt = f(z) dX/dt,   logits(t) = head(z(t)),

with ``f`` an MLP ``[hidden] -> [hidden, channels]`` (ReLU inside, tanh at the end, as their code). It
reads the same path as ``ContinuousTimeFWP`` (the natural cubic spline through the observed rows of
the grid ``0 .. grid_steps - 1``), solved with rk4 at step 1 from the grid's start.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from metafwp.models.ct_fwp import at_observations, observation_path
from metafwp.ops.ct_fwp import NaturalCubicSpline, solve_ode


class CDEField(nn.Module):
    """``dz/dt = f(z) dX/dt(t)`` for ``z [B, hidden]`` on a path of ``channels``; ``field_width`` is
    the MLP's hidden width. ``read(spline)`` sets the path."""

    def __init__(self, channels: int, hidden: int, field_width: int):
        super().__init__()
        self.channels, self.hidden = channels, hidden
        self.net = nn.Sequential(nn.Linear(hidden, field_width), nn.ReLU(), nn.Linear(field_width, hidden * channels),
                                 nn.Tanh())
        self.path: NaturalCubicSpline | None = None

    def read(self, path: NaturalCubicSpline) -> "CDEField":
        self.path = path
        return self

    def forward(self, t, z: torch.Tensor) -> torch.Tensor:
        f = self.net(z).view(-1, self.hidden, self.channels)
        return (f @ self.path.derivative(t)[..., None])[..., 0]


class NeuralCDE(nn.Module):
    """Args: ``features`` the path's channels (the inputs' channels but the gap), ``grid_steps``,
    ``num_classes``, ``hidden`` (the state's width), ``field_width``, ``method`` (a torchdiffeq
    solver), ``adjoint``.

    ``forward(batch, state=None) -> (logits [B, L, classes], None)``: a prediction at every observation."""

    def __init__(self, features: int, grid_steps: int, num_classes: int, hidden: int = 32, field_width: int = 8,
                 method: str = "rk4", adjoint: bool = True):
        super().__init__()
        self.grid_steps, self.method, self.adjoint = grid_steps, method, adjoint
        self.initial = nn.Linear(features, hidden)
        self.field = CDEField(features, hidden, field_width)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, batch, state=None):
        grid, spline, steps = observation_path(batch.inputs, self.grid_steps)
        z = solve_ode(self.field.read(spline), self.initial(spline.evaluate(grid[0])), grid, method=self.method,
                      adjoint=self.adjoint, parameters=tuple(self.field.parameters()))        # [G, B, hidden]
        return at_observations(self.head(z).transpose(0, 1), steps), None
