"""Backbones and the learners that read EpisodeBatches: the in-context SequenceLearner and the
classic references (Prototypical Network, pixel nearest neighbour), and the linear self-attention
layer of the in-context regression studies."""
from metafwp.models.backbones import BACKBONES, NORMS, Conv4, ResNet12, build_backbone, feature_size
from metafwp.models.linear_attention import LinearSelfAttention
from metafwp.models.prototypical import PixelNearestNeighbour, PrototypicalNetwork
from metafwp.models.sequence_learner import SequenceLearner

__all__ = ["BACKBONES", "NORMS", "Conv4", "LinearSelfAttention", "PixelNearestNeighbour", "PrototypicalNetwork", "ResNet12",
           "SequenceLearner", "build_backbone", "feature_size"]
