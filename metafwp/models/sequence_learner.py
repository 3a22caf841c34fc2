"""SequenceLearner: the in-context learner that reads an EpisodeBatch step by step (docs/protocols.md section 4)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from episodes import EpisodeBatch
from metafwp.nn.blocks import MixerBlock, build_mixer
from metafwp.ops import RULES


def frames_to_float(inputs: torch.Tensor) -> torch.Tensor:
    """uint8 frames to float in [0, 1]; float inputs (regression) unchanged."""
    return inputs.float().div_(255.0) if inputs.dtype == torch.uint8 else inputs


class SequenceLearner(nn.Module):
    """Backbone per frame, features joined with the feedback, Linear to ``d_model``,
    ``num_layers`` x [mixer + feed-forward], LayerNorm, Linear to the outputs.

    Args:
        backbone: per-frame encoder ``[N, C, H, W] -> [N, feature_dim]``; ``None`` feeds the raw
            inputs (regression, ``[B, T, Dx]``).
        feature_dim: the backbone's output width (or Dx).
        num_outputs: n_way logits, or Dy for regression.
        feedback_dim: width of the encoded feedback: ``n_way + 1`` (one-hot label incl. unknown)
            or ``Dy + 1`` (regression target and unknown flag).
        mixer: one of ``metafwp.nn.MIXERS``: ``srwm``, ``lstm``, ``attention``, a Table-1 rule,
            ``mesa`` or a recurrent FWP (``delta_rnn``, ...).
        d_model, num_layers, num_heads, ff_multiplier, dropout: the sequence model's size.
        matched_init: start every mixer that has keys with keys matched to queries
            (``match_keys_to_queries``): shortens the plateau at chance before in-context learning
            starts. Default: False (the reference initialisation).
        srwm_input_norm: the SRWM mixers read the LayerNorm'd stream (``SRWMLayer(input_norm=True)``).
            Default: False (the reference wrapping: the raw stream).
        fast_weight_options: passed to FastWeightLayer (feature_map, beta_activation, mesa_lambda, backend).

    ``forward(batch, state=None) -> (outputs [B, T, num_outputs], state)``: ``state`` is the list of
    each layer's state after the last step, so a later call with ``batch.steps(a, b)`` continues
    the sequence exactly (evaluation can branch from a saved state). ``forward`` is
    ``read(embed(batch), state)``: an objective that branches (bootstrapping) embeds every frame
    once and reads the parts of the embedded sequence from different states.
    """

    def __init__(self, backbone: nn.Module | None, feature_dim: int, num_outputs: int, feedback_dim: int, *,
                 mixer: str = "srwm", d_model: int = 256, num_layers: int = 2, num_heads: int = 16,
                 ff_multiplier: int = 4, dropout: float = 0.0, matched_init: bool = False,
                 srwm_input_norm: bool = False, **fast_weight_options):
        super().__init__()
        self.backbone, self.feedback_dim = backbone, feedback_dim
        self.input_proj = nn.Linear(feature_dim + feedback_dim, d_model)
        self.blocks = nn.ModuleList(
            MixerBlock(build_mixer(mixer, d_model, num_heads, dropout, srwm_input_norm, **fast_weight_options),
                       d_model, ff_multiplier, dropout) for _ in range(num_layers))
        if matched_init:
            for block in self.blocks:
                if hasattr(block.mixer, "match_keys_to_queries"):
                    block.mixer.match_keys_to_queries()
        self.out_norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_outputs)

    @classmethod
    def from_config(cls, model_config, backbone: nn.Module | None, feature_dim: int, num_outputs: int,
                    feedback_dim: int) -> "SequenceLearner":
        """The learner of a recipe's ``model`` section (``metafwp.train.config.ModelConfig``), passing
        each mixer only the options it reads."""
        m = model_config
        options = {}
        if m.mixer in RULES:
            options["beta_activation"] = m.beta_activation
        if m.mixer in ("delta", "gated_delta"):
            options["num_householder"] = m.num_householder
        if m.mixer == "mesa":
            options["mesa_lambda"] = m.mesa_lambda
        if m.mixer in RULES + ("mesa",) and m.feature_map is not None:
            options["feature_map"] = m.feature_map
        return cls(backbone, feature_dim, num_outputs, feedback_dim, mixer=m.mixer, d_model=m.d_model,
                   num_layers=m.num_layers, num_heads=m.num_heads, ff_multiplier=m.ff_multiplier, dropout=m.dropout,
                   matched_init=m.matched_init, srwm_input_norm=m.srwm_input_norm, **options)

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
        """``[B, T, d_model]``: the backbone's features of every frame joined with the feedback, projected."""
        B, T = batch.feedback.shape[:2]
        x = frames_to_float(batch.inputs)
        features = x if self.backbone is None else self.backbone(x.flatten(0, 1)).view(B, T, -1)
        return self.input_proj(torch.cat([features, self.encode_feedback(batch)], -1))

    def read(self, h: torch.Tensor, state: list | None = None):
        """The layers over embedded steps ``h [B, T, d_model]`` from ``state``: ``(outputs, state)``."""
        new_state = []
        for i, block in enumerate(self.blocks):
            h, layer_state = block(h, None if state is None else state[i])
            new_state.append(layer_state)
        return self.head(self.out_norm(h)), new_state

    def forward(self, batch: EpisodeBatch, state: list | None = None):
        return self.read(self.embed(batch), state)
