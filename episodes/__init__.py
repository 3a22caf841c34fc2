"""episodes: datasets -> seeded samplers -> feedback sequences (EpisodeBatch). No import of metafwp."""
from episodes.batch import EpisodeBatch
from episodes.code_execution import CodeExecutionSampler
from episodes.copy_task import CopySampler
from episodes.datasets import MNIST, Glyphs, ImageClasses, ImageFolderClasses, MiniImageNet, MNIST5k, Omniglot
from episodes.irregular import IrregularRowsSampler
from episodes.labelled_images import LabelledImagesSampler
from episodes.listops import ListOpsSampler
from episodes.loader import EpisodeStream
from episodes.mqar import MQARSampler
from episodes.regression import RegressionSampler
from episodes.rng import EpisodeRNG
from episodes.sampling import FewShotSampler
from episodes.streams import (BootstrapBatch, BootstrapSampler, ContinualBatch, ContinualSampler, MultiTaskStream,
                              split_mnist)

__all__ = ["BootstrapBatch", "BootstrapSampler", "CodeExecutionSampler", "ContinualBatch", "ContinualSampler",
           "CopySampler", "EpisodeBatch", "EpisodeRNG", "EpisodeStream", "FewShotSampler", "Glyphs", "ImageClasses",
           "ImageFolderClasses", "IrregularRowsSampler", "LabelledImagesSampler", "ListOpsSampler", "MNIST", "MNIST5k",
           "MQARSampler", "MiniImageNet", "MultiTaskStream", "Omniglot", "RegressionSampler", "split_mnist"]
