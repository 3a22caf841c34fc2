"""Residual blocks: a sequence mixer (any layer of ``metafwp.nn.mixers.MIXERS``) and a feed-forward
layer, the mixer's state passed through."""
from __future__ import annotations

import torch
import torch.nn as nn


class FeedForward(nn.Module):
    """``Linear(d, m d) - ReLU - Dropout - Linear(m d, d) - Dropout``."""

    def __init__(self, d_model: int, multiplier: int = 4, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, multiplier * d_model), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(multiplier * d_model, d_model), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MixerBlock(nn.Module):
    """``h = h + Dropout(mixer(LN(h)))`` then ``h = h + FF(LN(h))``.

    A ``self_normalised`` mixer (the SRWM) keeps the reference wrapping instead (it reads the raw stream and carries its own
    LayerNorm on the skip path: ``h = LN(h) + Dropout(W_o SRWM(h))``; with ``input_norm`` it reads
    ``LN(h)``), then the same feed-forward.

    ``forward(h [B, T, d_model], state or None) -> (h, state)`` with the mixer's state.
    """

    def __init__(self, mixer: nn.Module, d_model: int, ff_multiplier: int = 4, dropout: float = 0.0,
                 self_normalised: bool = False):
        super().__init__()
        self.mixer = mixer
        self.self_normalised = self_normalised
        if not self.self_normalised:
            self.mixer_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.ff_norm = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, ff_multiplier, dropout)

    def forward(self, h: torch.Tensor, state=None):
        if self.self_normalised:
            h, state = self.mixer(h, state)
        else:
            mixed, state = self.mixer(self.mixer_norm(h), state)
            h = h + self.dropout(mixed)
        return h + self.ff(self.ff_norm(h)), state
