"""episodes: datasets -> seeded samplers -> feedback sequences (EpisodeBatch). No import of metafwp."""
from episodes.batch import EpisodeBatch
from episodes.datasets import ImageClasses, ImageFolderClasses, MiniImageNet, Omniglot
from episodes.rng import EpisodeRNG
from episodes.sampling import FewShotSampler

__all__ = ["EpisodeBatch", "EpisodeRNG", "FewShotSampler", "ImageClasses", "ImageFolderClasses",
           "MiniImageNet", "Omniglot"]
