"""Datasets: labelled uint8 images in memory (ImageClasses) and synthetic regression tasks."""
from episodes.datasets.base import ImageClasses
from episodes.datasets.folder import ImageFolderClasses
from episodes.datasets.glyphs import Glyphs
from episodes.datasets.mini_imagenet import MiniImageNet
from episodes.datasets.mnist import MNIST, MNIST5k
from episodes.datasets.omniglot import Omniglot

__all__ = ["Glyphs", "ImageClasses", "ImageFolderClasses", "MNIST", "MNIST5k", "MiniImageNet", "Omniglot"]
