"""The fast weight painter (Irie & Schmidhuber 2023): an image is a weight matrix, painted by a
learning rule one rank-1 stroke at a time. A slow LSTM, started from a latent, emits per step and
channel a key, a value and a rate; the fast weight ``W [S, S]`` of each channel (rows: the value
index, columns: the key index) follows the rule, and the image is ``tanh(W_T)``.

    (h_0, c_0) = split(Linear(z)),  u_t = Linear(tanh(Linear(z))_t),  s_t = LSTM(u_t)
    [k, v, b]_t = Linear(s_t) per channel,  k~ = softmax(k),  beta = sigmoid(b)
    delta:   W_t = W_{t-1} + beta_t (v_t - W_{t-1} k~_t) k~_t^T      (W_0 = 0)
    hebbian: W_t = W_{t-1} + beta_t v_t k~_t^T
    oja:     W_t = W_{t-1} + beta_t v_t (k~_t - W_{t-1}^T v_t)^T

Painting is metafwp's ``fast_weight`` op, one head per channel. The authors' first stroke has no
rate (``W_1 = v_1 k~_1^T``): ``first_rate_one=True`` reproduces it; by default every stroke has
its own rate.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from metafwp.ops import fast_weight

PAINTER_RULES = ("delta", "hebbian", "oja")


def paint(keys: torch.Tensor, values: torch.Tensor, rates: torch.Tensor, rule: str = "delta") -> torch.Tensor:
    """The fast weights ``W [B, C, S_v, S_k]`` after the strokes ``keys [B, T, C, S_k]``,
    ``values [B, T, C, S_v]`` and ``rates [B, T, C]`` of ``rule`` from ``W_0 = 0`` (keys as given:
    apply the softmax before)."""
    if rule not in PAINTER_RULES:
        raise ValueError(f"Unknown painter rule {rule!r}. Valid: {', '.join(PAINTER_RULES)}")
    queries = keys.new_zeros(keys.shape)
    _, state = fast_weight(queries, keys, values, rule=rule, beta=rates, output_final_state=True)
    return state.transpose(-1, -2)           # the op's state is [B, C, S_k, S_v]


class FastWeightPainter(nn.Module):
    """A generator of ``channels x size x size`` images in (-1, 1) from ``z [B, latent]``.

    Args: ``latent`` (Default 64), ``steps`` T (Default 28: full rank at size 28), ``step_input``
    (8) and ``step_width`` (32) of the per-step input, ``hidden`` the LSTM's width (256), ``rule``
    (delta, hebbian, oja), ``first_rate_one`` (the authors' unit-rate first stroke),
    ``program_scale``: the program layer's initial weights and bias times this (1: PyTorch's
    ``U(+-1/sqrt(hidden))``; the authors' code draws ``U(+-1/sqrt(C (2S + 1)))``, 2.1x that here).
    At 1 the initial key logits and values are small, so every stroke is spread evenly over the
    columns and the images hardly depend on ``z``; larger scales start from sharper strokes.

    ``forward(z) -> images [B, C, S, S]``; ``strokes(z) -> (keys, values, rates)`` the painting
    program (keys after the softmax, rates after the sigmoid).
    """

    def __init__(self, latent: int = 64, channels: int = 1, size: int = 28, steps: int = 28, step_input: int = 8,
                 step_width: int = 32, hidden: int = 256, rule: str = "delta", first_rate_one: bool = False,
                 program_scale: float = 1.0):
        super().__init__()
        if rule not in PAINTER_RULES:
            raise ValueError(f"Unknown painter rule {rule!r}. Valid: {', '.join(PAINTER_RULES)}")
        for name, value in (("latent", latent), ("channels", channels), ("size", size), ("steps", steps)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if program_scale <= 0:
            raise ValueError(f"program_scale must be > 0, got {program_scale}")
        self.channels, self.size, self.steps, self.step_input = channels, size, steps, step_input
        self.rule, self.first_rate_one = rule, first_rate_one
        self.initial_state = nn.Linear(latent, 2 * hidden)
        self.step_inputs = nn.Linear(latent, steps * step_input)
        self.step_proj = nn.Linear(step_input, step_width)
        self.lstm = nn.LSTM(step_width, hidden, batch_first=True)
        self.program = nn.Linear(hidden, channels * (2 * size + 1))
        with torch.no_grad():
            self.program.weight.mul_(program_scale)
            self.program.bias.mul_(program_scale)
        self.program_scale = program_scale

    def strokes(self, z: torch.Tensor):
        """``keys, values [B, T, C, S]`` and ``rates [B, T, C]`` for latents ``z [B, latent]``."""
        B, C, S, T = z.shape[0], self.channels, self.size, self.steps
        h0, c0 = self.initial_state(z).chunk(2, -1)
        u = self.step_proj(torch.tanh(self.step_inputs(z)).view(B, T, self.step_input))
        s, _ = self.lstm(u, (h0[None].contiguous(), c0[None].contiguous()))
        k, v, b = self.program(s).view(B, T, C, 2 * S + 1).split([S, S, 1], -1)
        rates = torch.sigmoid(b.squeeze(-1))
        if self.first_rate_one:
            rates = torch.cat([torch.ones_like(rates[:, :1]), rates[:, 1:]], 1)
        return torch.softmax(k, -1), v, rates

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(paint(*self.strokes(z), rule=self.rule))

    def extra_repr(self) -> str:
        return (f"rule={self.rule}, steps={self.steps}, channels={self.channels}, size={self.size}"
                + (", first_rate_one=True" if self.first_rate_one else "")
                + (f", program_scale={self.program_scale:g}" if self.program_scale != 1 else ""))
