"""ImageClassifier: a plain network from an image to its class (no state, nothing learned in
context), for the classification task: an MLP on the pixels (the dual-form paper's 784-800-800-10)
or a convolutional backbone with a linear head."""
from __future__ import annotations

import torch
import torch.nn as nn

from episodes import EpisodeBatch
from episodes.frames import frames_to_float


class ImageClassifier(nn.Module):
    """``features`` (a module from ``[N, C, H, W]`` floats in [0, 1] to ``[N, D]``) then ``head`` (a
    linear layer, whose dtype the images take).

    ``forward(batch, state=None) -> (logits [B, T, classes], None)``: every frame of ``batch.inputs``
    ``[B, T, C, H, W]`` (uint8) classified on its own.
    """

    def __init__(self, features: nn.Module, head: nn.Module):
        super().__init__()
        self.features, self.head = features, head

    def forward(self, batch: EpisodeBatch, state=None):
        if batch.inputs.dim() != 5:
            raise ValueError(f"ImageClassifier reads frames [B, T, C, H, W], got {tuple(batch.inputs.shape)}")
        B, T = batch.inputs.shape[:2]
        images = frames_to_float(batch.inputs).flatten(0, 1).to(self.head.weight.dtype)
        return self.head(self.features(images)).view(B, T, -1), None


def mlp_classifier(shape: tuple[int, int, int], hidden: list[int], num_classes: int) -> ImageClassifier:
    """Linear layers of widths ``[C H W, *hidden]`` with ReLU after each, then a linear head."""
    widths = [int(torch.tensor(shape).prod()), *hidden]
    layers: list[nn.Module] = [nn.Flatten()]
    for width_in, width_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(width_in, width_out), nn.ReLU()]
    return ImageClassifier(nn.Sequential(*layers), nn.Linear(widths[-1], num_classes))
