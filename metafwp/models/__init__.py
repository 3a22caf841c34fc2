"""Backbones and the learners that read EpisodeBatches: the in-context SequenceLearner and the
classic references (Prototypical Network, pixel nearest neighbour), a plain image classifier, the
linear self-attention layer of the in-context regression studies, and the learner kinds a
recipe's ``model.kind`` names."""
from metafwp.models.backbones import BACKBONES, NORMS, Conv4, ResNet12, build_backbone, feature_size
from metafwp.models.classifier import ImageClassifier
from metafwp.models.linear_attention import LinearSelfAttention
from metafwp.models.prototypical import PixelNearestNeighbour, PrototypicalNetwork
from metafwp.models.sequence_learner import SequenceLearner
from metafwp.models.kinds import LEARNER_KINDS, LearnerInputs, LearnerKind, register_learner_kind

__all__ = ["BACKBONES", "LEARNER_KINDS", "NORMS", "Conv4", "ImageClassifier", "LearnerInputs", "LearnerKind",
           "LinearSelfAttention", "PixelNearestNeighbour", "PrototypicalNetwork", "ResNet12", "SequenceLearner",
           "build_backbone", "feature_size", "register_learner_kind"]
