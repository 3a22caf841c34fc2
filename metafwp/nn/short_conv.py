"""The short convolution of the fla-style mixers: a causal depthwise convolution over time of a few
steps on the projections q, k, v, which lets a step's key and value mix with its neighbours' (the
previous-token information associative recall needs)."""
from __future__ import annotations

import torch
import torch.nn as nn

CONV_STEPS = 4


class ShortConvolution(nn.Conv1d):
    """``y_t = sum_{j < steps} w_j * x_{t - j}`` per channel (no bias), ``steps`` Default 4.

    ``forward(x [B, T, C], history [B, steps - 1, C] or None (zeros)) -> (y [B, T, C], history)``:
    the returned history (the last ``steps - 1`` inputs) continues the sequence exactly in a later call.
    """

    def __init__(self, channels: int, steps: int = CONV_STEPS):
        super().__init__(channels, channels, steps, groups=channels, bias=False)

    def forward(self, x: torch.Tensor, history: torch.Tensor | None = None):
        steps = self.kernel_size[0]
        if history is None:
            history = x.new_zeros(x.shape[0], steps - 1, x.shape[2])
        window = torch.cat([history, x], 1)                                     # [B, steps - 1 + T, C]
        return super().forward(window.transpose(1, 2)).transpose(1, 2), window[:, window.shape[1] - (steps - 1):]
