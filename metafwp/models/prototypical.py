"""The classic references beside the in-context learners, on the same EpisodeBatch and the same
``forward(batch) -> (logits, None)`` interface: a Prototypical Network (Snell et al., 2017) and
raw-pixel nearest neighbour. Both read synchronous episodes: the labelled steps are the support."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from episodes import EpisodeBatch
from episodes.frames import frames_to_float


def support_one_hot(batch: EpisodeBatch) -> torch.Tensor:
    """``[B, T, N]`` one-hot label of each support step (feedback shows its own label), zero elsewhere."""
    if batch.num_classes is None:
        raise ValueError("prototypes and nearest neighbours need class labels, not regression targets")
    is_support = batch.feedback != batch.unknown_label
    if not torch.equal(batch.feedback[is_support], batch.targets[is_support]):
        raise ValueError("the Prototypical Network and nearest neighbour read synchronous episodes "
                         "(labelled support, then unknown queries); set data.feedback=synchronous")
    return F.one_hot(batch.feedback.clamp_max(batch.num_classes - 1), batch.num_classes) * is_support[..., None]


class PrototypicalNetwork(nn.Module):
    """Logits ``-||f(x_t) - c_n||^2`` to the class means ``c_n`` of the support embeddings.

    ``forward(batch, state=None) -> (logits [B, T, N], None)``; the support steps' own logits are
    computed too but carry no loss (the loss mask holds the queries).
    """

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, batch: EpisodeBatch, state=None):
        B, T = batch.feedback.shape
        embeddings = self.backbone(frames_to_float(batch.inputs).flatten(0, 1)).view(B, T, -1)
        support = support_one_hot(batch).to(embeddings.dtype)                                  # [B, T, N]
        prototypes = support.transpose(1, 2) @ embeddings / support.sum(1)[..., None].clamp_min(1)  # [B, N, F]
        return -torch.cdist(embeddings, prototypes).square(), None


class PixelNearestNeighbour(nn.Module):
    """Logit of class n: minus the smallest Euclidean distance in pixel space from the step's frame
    to a support frame of class n. Nothing to train.

    ``forward(batch, state=None) -> (logits [B, T, N], None)``.
    """

    def forward(self, batch: EpisodeBatch, state=None):
        B, T = batch.feedback.shape
        pixels = frames_to_float(batch.inputs).reshape(B, T, -1)
        support = support_one_hot(batch).bool()                                                # [B, T, N]
        distances = torch.cdist(pixels, pixels)                                                # [B, T, T]
        per_class = distances[..., None].masked_fill(~support[:, None], float("inf"))        # [B, T, T, N]
        return -per_class.amin(2), None
