"""SequenceLearner: the in-context learner that reads an EpisodeBatch step by step (docs/protocols.md section 4)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from episodes import EpisodeBatch
from episodes.frames import frames_to_float
from metafwp.nn.blocks import MixerBlock
from metafwp.nn.mixers import MIXERS, build_mixer, mixer_entry


class SequenceLearner(nn.Module):
    """Backbone per frame, features joined with the feedback, Linear to ``d_model``,
    ``num_layers`` x [mixer + feed-forward], LayerNorm, Linear to the outputs.

    Args:
        backbone: per-frame encoder ``[N, C, H, W] -> [N, feature_dim]``; ``None`` feeds the raw
            inputs: float vectors ``[B, T, Dx]`` (regression) or int64 token ids ``[B, T]`` of a
            vocabulary of ``feature_dim`` (-1 on padding), each selecting its column of the input
            projection: what a one-hot vector through it gives, without building the one-hot.
        feature_dim: the backbone's output width, Dx, or the vocabulary size.
        num_outputs: n_way logits, or Dy for regression.
        feedback_dim: width of the encoded feedback: ``n_way + 1`` (one-hot label incl. unknown),
            ``Dy + 1`` (regression target and unknown flag) or 0 (none).
        mixer: a name of ``metafwp.nn.MIXERS`` (``srwm``, ``lstm``, ``attention``, a Table-1 rule,
            ``mesa``, a recurrent FWP, ...) for every layer, or a list of ``num_layers`` names, one
            per layer (e.g. ``["delta", "attention"]``).
        d_model, num_layers, ff_multiplier, dropout: the sequence model's size.
        mixer_options: the mixers' options (``num_heads``, ``feature_map``, ``beta_activation``,
            ``mesa_lambda``, ``num_householder``, ``srwm_input_norm``, ``backend``, ...); each layer
            takes those its mixer reads (the table's ``options``). ``matched_init=True`` starts every
            mixer that has keys with keys matched to queries (``match_keys_to_queries``): a shorter
            plateau at chance before in-context learning starts. Default: False.

    ``forward(batch, state=None) -> (outputs [B, T, num_outputs], state)``: ``state`` is the list of
    each layer's state after the last step, so a later call with ``batch.steps(a, b)`` continues
    the sequence exactly (evaluation can branch from a saved state). ``forward`` is
    ``read(embed(batch), state)``: an objective that branches (bootstrapping) embeds every frame
    once and reads the parts of the embedded sequence from different states.
    """

    def __init__(self, backbone: nn.Module | None, feature_dim: int, num_outputs: int, feedback_dim: int, *,
                 mixer: str | list[str] = "srwm", d_model: int = 256, num_layers: int = 2, ff_multiplier: int = 4,
                 dropout: float = 0.0, **mixer_options):
        super().__init__()
        self.backbone, self.feature_dim, self.feedback_dim = backbone, feature_dim, feedback_dim
        self.mixers = layer_mixers(mixer, num_layers)
        self.input_proj = nn.Linear(feature_dim + feedback_dim, d_model)
        self.blocks = nn.ModuleList(self.block(name, d_model, ff_multiplier, dropout, mixer_options)
                                    for name in self.mixers)
        self.out_norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_outputs)

    @staticmethod
    def block(name: str, d_model: int, ff_multiplier: int, dropout: float, mixer_options: dict) -> MixerBlock:
        """One residual block around mixer ``name`` built with the options of ``mixer_options`` it reads."""
        entry = mixer_entry(name)
        options = {k: v for k, v in mixer_options.items() if k in entry.options}
        mixer = build_mixer(name, d_model, dropout, **options)
        if options.get("matched_init") and hasattr(mixer, "match_keys_to_queries"):
            mixer.match_keys_to_queries()
        return MixerBlock(mixer, d_model, ff_multiplier, dropout, self_normalised=entry.self_normalised)

    @classmethod
    def from_config(cls, model_config, backbone: nn.Module | None, feature_dim: int, num_outputs: int,
                    feedback_dim: int) -> "SequenceLearner":
        """The learner of a recipe's ``model`` section (``metafwp.models.kinds.SequenceConfig``), each
        layer's mixer given the options the mixer table says it reads."""
        m = model_config
        options = {key: getattr(m, key) for name in layer_mixers(m.mixer, m.num_layers)
                   for key in MIXERS[name].options}
        if options.get("feature_map", "unset") is None:  # None: the layer's default map
            options.pop("feature_map")
        return cls(backbone, feature_dim, num_outputs, feedback_dim, mixer=m.mixer, d_model=m.d_model,
                   num_layers=m.num_layers, ff_multiplier=m.ff_multiplier, dropout=m.dropout, **options)

    def encode_feedback(self, batch: EpisodeBatch) -> torch.Tensor:
        """``[B, T, feedback_dim]``: one-hot labels (the unknown label is the last slot) or the
        regression feedback as given."""
        if batch.num_classes is None:
            return batch.feedback.float()
        if batch.num_classes + 1 != self.feedback_dim:
            raise ValueError(f"this learner reads {self.feedback_dim - 1}-way episodes (feedback_dim "
                             f"{self.feedback_dim}), got a {batch.num_classes}-way batch")
        return F.one_hot(batch.feedback, self.feedback_dim).float()

    def embed(self, batch: EpisodeBatch) -> torch.Tensor:
        """``[B, T, d_model]``: the backbone's features of every frame (the raw vectors, or the
        token ids' columns) joined with the feedback, projected."""
        if batch.inputs.dtype == torch.int64:
            return self.embed_tokens(batch.inputs, self.encode_feedback(batch))
        B, T = batch.feedback.shape[:2]
        x = frames_to_float(batch.inputs)
        features = x if self.backbone is None else self.backbone(x.flatten(0, 1)).view(B, T, -1)
        return self.input_proj(torch.cat([features, self.encode_feedback(batch)], -1))

    def embed_tokens(self, tokens: torch.Tensor, feedback: torch.Tensor) -> torch.Tensor:
        """``input_proj`` of one-hot ``tokens [B, T]`` (-1: padding, a zero vector) joined with
        ``feedback [B, T, feedback_dim]``, read as a column lookup."""
        if self.backbone is not None:
            raise ValueError("this learner reads frames through its backbone, got token ids")
        V, weight = self.feature_dim, self.input_proj.weight  # [d_model, V + feedback_dim]
        if tokens.max() >= V:
            raise ValueError(f"token id {int(tokens.max())} is outside this learner's vocabulary of {V}")
        real = (tokens >= 0).unsqueeze(-1)
        columns = F.embedding(tokens.clamp_min(0), weight[:, :V].t()) * real
        return columns + F.linear(feedback.to(weight.dtype), weight[:, V:], self.input_proj.bias)

    def read(self, h: torch.Tensor, state: list | None = None):
        """The layers over embedded steps ``h [B, T, d_model]`` from ``state``: ``(outputs, state)``."""
        new_state = []
        for i, block in enumerate(self.blocks):
            h, layer_state = block(h, None if state is None else state[i])
            new_state.append(layer_state)
        return self.head(self.out_norm(h)), new_state

    def forward(self, batch: EpisodeBatch, state: list | None = None):
        return self.read(self.embed(batch), state)


def layer_mixers(mixer: str | list[str], num_layers: int) -> list[str]:
    """The mixer of each of ``num_layers`` layers: ``mixer`` repeated, or the list as given."""
    if isinstance(mixer, str):
        return [mixer] * num_layers
    mixers = list(mixer)
    if len(mixers) != num_layers:
        raise ValueError(f"{len(mixers)} mixers {mixers} for {num_layers} layers: give one per layer, or one name")
    return mixers
