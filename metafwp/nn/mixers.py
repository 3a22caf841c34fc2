"""The mixer table: every sequence mixer a SequenceLearner can stack, by name, with the ``model``
options it reads. The table drives both the config's checks (an option no chosen mixer reads is an
error) and the construction of layers; adding a mixer is one ``register_mixer`` call."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from metafwp.nn.baseline_layers import CausalAttentionLayer, LSTMLayer, SlidingWindowAttentionLayer
from metafwp.nn.dct_layers import DCTLSTM, FastDCTRNN
from metafwp.nn.elstm_layer import ELSTMLayer
from metafwp.nn.fast_weight_layer import FastWeightLayer
from metafwp.nn.hybrid_layer import HybridQLTLayer
from metafwp.nn.recurrent_fwp_layer import LOOP_KINDS, RATE_KINDS, RecurrentFWPLayer
from metafwp.nn.srwm_layer import SRWMLayer
from metafwp.ops import RECURRENT_FWPS, RULES

# options read by the sequence learner itself, not passed to a mixer's builder: matched_init calls
# the layer's ``match_keys_to_queries`` after it is built
LEARNER_OPTIONS = ("matched_init",)


@dataclass(frozen=True)
class Mixer:
    """One row of the table.

    Fields:
        build: ``build(d_model, dropout, **options) -> nn.Module``, a layer with
            ``forward(x [B, T, d_model], state or None) -> (y [B, T, d_model], state)``.
        options: the ``model`` keys it reads beside ``d_model`` and ``dropout`` (``matched_init``
            for layers with ``match_keys_to_queries``).
        self_normalised: the layer carries its own LayerNorm on the skip path (the SRWM's reference
            wrapping); the block then adds none around it.
    """

    build: Callable[..., nn.Module]
    options: tuple[str, ...]
    self_normalised: bool = False


MIXERS: dict[str, Mixer] = {}


def register_mixer(name: str, build: Callable[..., nn.Module], options: tuple[str, ...] = (),
                   self_normalised: bool = False) -> None:
    """Add mixer ``name`` to the table (a later entry of the same name replaces the earlier one)."""
    MIXERS[name] = Mixer(build, tuple(options), self_normalised)


def mixer_entry(name: str) -> Mixer:
    """The table's row of mixer ``name``; an unknown name is a ValueError listing the valid ones."""
    if name not in MIXERS:
        raise ValueError(f"Unknown mixer {name!r}. Valid: {', '.join(MIXERS)}")
    return MIXERS[name]


def build_mixer(name: str, d_model: int, dropout: float = 0.0, **options) -> nn.Module:
    """The layer of mixer ``name`` with ``options`` (only those it reads; any other is an error)."""
    entry = mixer_entry(name)
    unread = sorted(set(options) - set(entry.options))
    if unread:
        raise ValueError(f"mixer {name!r} takes none of {', '.join(unread)} (it reads "
                         f"{', '.join(entry.options) or 'no options'}); leave them out")
    return entry.build(d_model, dropout, **{k: v for k, v in options.items() if k not in LEARNER_OPTIONS})


def fast_weight_builder(rule: str) -> Callable[..., nn.Module]:
    def build(d_model, dropout, num_heads, **options):
        return FastWeightLayer(d_model, num_heads, rule=rule, **options)
    return build


def recurrent_fwp_builder(kind: str) -> Callable[..., nn.Module]:
    def build(d_model, dropout, num_heads, **options):
        return RecurrentFWPLayer(d_model, num_heads, kind=kind, **options)
    return build


register_mixer("srwm", lambda d_model, dropout, num_heads, srwm_input_norm=False:
               SRWMLayer(d_model, num_heads, dropout=dropout, input_norm=srwm_input_norm),
               ("num_heads", "matched_init", "srwm_input_norm"), self_normalised=True)
register_mixer("lstm", lambda d_model, dropout: LSTMLayer(d_model))
register_mixer("attention", lambda d_model, dropout, num_heads, short_conv=False:
               CausalAttentionLayer(d_model, num_heads, dropout, short_conv),
               ("num_heads", "matched_init", "short_conv"))
for _rule in RULES:
    register_mixer(_rule, fast_weight_builder(_rule),
                   ("num_heads", "matched_init", "feature_map", "beta_activation", "short_conv")
                   + (("num_householder",) if _rule in ("delta", "gated_delta") else ()))
register_mixer("mesa", fast_weight_builder("mesa"), ("num_heads", "matched_init", "feature_map", "mesa_lambda",
                                                     "short_conv"))
for _kind in RECURRENT_FWPS:
    register_mixer(_kind, recurrent_fwp_builder(_kind),
                   ("num_heads",) + (("beta_activation", "learned_initial_r") if _kind in RATE_KINDS else ())
                   + (("compile_loop",) if _kind in LOOP_KINDS else ()))
register_mixer("elstm", lambda d_model, dropout, elstm_cells=None: ELSTMLayer(d_model, elstm_cells), ("elstm_cells",))
register_mixer("window_attention", lambda d_model, dropout, num_heads, window=8, short_conv=False:
               SlidingWindowAttentionLayer(d_model, num_heads, window, short_conv),
               ("num_heads", "matched_init", "window", "short_conv"))
register_mixer("hqlt", lambda d_model, dropout, num_heads, hybrid_variant="synchronous", hybrid_mixing="gate",
               **options: HybridQLTLayer(d_model, num_heads, variant=hybrid_variant, mixing=hybrid_mixing, **options),
               ("num_heads", "window", "hybrid_variant", "hybrid_mixing", "short_conv", "beta_activation",
                "delayed_rate"))
register_mixer("dct_lstm", lambda d_model, dropout, dct_sparsity=0.5: DCTLSTM(d_model, d_model, dct_sparsity),
               ("dct_sparsity",))
register_mixer("fast_dct_rnn", lambda d_model, dropout, dct_sparsity=0.5:
               FastDCTRNN(d_model, d_model, dct_sparsity, dct_sparsity), ("dct_sparsity",))
