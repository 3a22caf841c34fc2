"""Residual blocks: a sequence mixer (any Table-1 rule, the mesa rule, the SRWM, a recurrent FWP, an
LSTM or causal attention) and a feed-forward layer, each with its state passed through."""
from __future__ import annotations

import torch
import torch.nn as nn

from metafwp.nn.baseline_layers import CausalAttentionLayer, LSTMLayer
from metafwp.nn.fast_weight_layer import LAYER_RULES, FastWeightLayer
from metafwp.nn.recurrent_fwp_layer import RecurrentFWPLayer
from metafwp.nn.srwm_layer import SRWMLayer
from metafwp.ops import RECURRENT_FWPS

MIXERS = ("srwm", "lstm", "attention") + LAYER_RULES + RECURRENT_FWPS


def build_mixer(mixer: str, d_model: int, num_heads: int, dropout: float = 0.0, srwm_input_norm: bool = False,
                **fast_weight_options) -> nn.Module:
    """A mixer by name: ``srwm`` (an SRWMLayer with ``input_norm=srwm_input_norm``), ``lstm``,
    ``attention``, a recurrent FWP (a RecurrentFWPLayer) or a Table-1 rule or ``mesa`` (a
    FastWeightLayer; ``fast_weight_options`` such as feature_map, beta_activation, mesa_lambda,
    backend go to it)."""
    if mixer == "srwm":
        return SRWMLayer(d_model, num_heads, dropout=dropout, input_norm=srwm_input_norm)
    if mixer == "lstm":
        return LSTMLayer(d_model)
    if mixer == "attention":
        return CausalAttentionLayer(d_model, num_heads, dropout=dropout)
    if mixer in RECURRENT_FWPS:
        if fast_weight_options:
            raise ValueError(f"mixer {mixer!r} takes none of {', '.join(fast_weight_options)} (its maps and rates "
                             f"are the authors'); leave them out")
        return RecurrentFWPLayer(d_model, num_heads, kind=mixer)
    if mixer in LAYER_RULES:
        return FastWeightLayer(d_model, num_heads, rule=mixer, **fast_weight_options)
    raise ValueError(f"Unknown mixer {mixer!r}. Valid: {', '.join(MIXERS)}")


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

    The SRWM keeps the reference wrapping instead (it reads the raw stream and carries its own
    LayerNorm on the skip path: ``h = LN(h) + Dropout(W_o SRWM(h))``; with ``input_norm`` it reads
    ``LN(h)``), then the same feed-forward.

    ``forward(h [B, T, d_model], state or None) -> (h, state)`` with the mixer's state.
    """

    def __init__(self, mixer: nn.Module, d_model: int, ff_multiplier: int = 4, dropout: float = 0.0):
        super().__init__()
        self.mixer = mixer
        self.self_normalised = isinstance(mixer, SRWMLayer)
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
