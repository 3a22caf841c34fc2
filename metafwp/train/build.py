"""From the model section of a config to a learner."""
from __future__ import annotations

import torch.nn as nn

from metafwp.models import PixelNearestNeighbour, PrototypicalNetwork, SequenceLearner, build_backbone, feature_size
from metafwp.train.config import RunConfig


def build_model(config: RunConfig, frame_shape: tuple[int, int, int]) -> nn.Module:
    """The learner of ``config.model`` for frames of ``frame_shape`` (C, H, W) and ``config.data.n_way``."""
    m = config.model
    if m.kind == "pixel_nn":
        return PixelNearestNeighbour()
    backbone = build_backbone(m.backbone, frame_shape[0], m.filters, m.norm, m.backbone_dropout, frame_shape[-1])
    if m.kind == "prototypical":
        return PrototypicalNetwork(backbone)
    fast_weight_options = {"beta_activation": m.beta_activation}
    if m.feature_map is not None:
        fast_weight_options["feature_map"] = m.feature_map
    n_way = config.data.n_way
    return SequenceLearner(backbone, feature_size(backbone, frame_shape), n_way, n_way + 1, mixer=m.mixer,
                           d_model=m.d_model, num_layers=m.num_layers, num_heads=m.num_heads,
                           ff_multiplier=m.ff_multiplier, dropout=m.dropout,
                           matched_init=m.matched_init, srwm_input_norm=m.srwm_input_norm, **fast_weight_options)
