"""episodes: datasets -> seeded samplers -> feedback sequences (EpisodeBatch). No import of metafwp."""
from episodes.batch import EpisodeBatch
from episodes.datasets import MNIST, Glyphs, ImageClasses, ImageFolderClasses, MiniImageNet, MNIST5k, Omniglot
from episodes.loader import EpisodeStream
from episodes.regression import RegressionSampler
from episodes.rng import EpisodeRNG
from episodes.sampling import FewShotSampler
from episodes.streams import (BootstrapBatch, BootstrapSampler, ContinualBatch, ContinualSampler, MultiTaskStream,
                              split_mnist)

__all__ = ["BootstrapBatch", "BootstrapSampler", "ContinualBatch", "ContinualSampler", "EpisodeBatch", "EpisodeRNG",
           "EpisodeStream", "FewShotSampler", "Glyphs", "ImageClasses", "ImageFolderClasses", "MNIST", "MNIST5k",
           "MiniImageNet", "MultiTaskStream", "Omniglot", "RegressionSampler", "split_mnist"]
