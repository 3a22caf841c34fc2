"""Single labelled images, one per episode, nothing learned in context (plain classification, and
the real images of image generation). Two embedded sets, each split once:

- ``mnist5k``: the 5,000 embedded digits (``MNIST5k``), 4,000 / 500 / 500
  (``datasets/splits/mnist5k.json``, the split of the row-sequence task);
- ``glyphs``: the 383 ``train`` classes of the glyph set (``Glyphs("train")``), split by drawer:
  drawers 0-15 of every class train, 16-17 validate, 18-19 test (6,128 / 766 / 766).

``held_out`` is ``val`` and ``test`` together (1,000 digits, or glyph drawers 16-19). Episode i of
``train`` is an image drawn uniformly with the episode's randomness (every batch a fresh draw, with
replacement); episode i of any other split is that split's i-th image, so a test of as many episodes
as images reads each once.
"""
from __future__ import annotations

import torch

from episodes.batch import EpisodeBatch
from episodes.datasets import Glyphs, ImageClasses, MNIST5k
from episodes.datasets.glyphs import DRAWERS, class_list, in_split
from episodes.irregular import pick_examples, split_indices, split_size
from episodes.sampling import as_episode_ids, make_rng

STREAM_IMAGE = 80
IMAGE_DATASETS = ("mnist5k", "glyphs")
IMAGE_SPLITS = ("train", "val", "test", "held_out")
GLYPH_DRAWERS = {"train": range(0, 16), "val": range(16, 18), "test": range(18, 20), "held_out": range(16, 20)}


def labelled_images(dataset: str) -> ImageClasses:
    """The images of ``dataset`` (``mnist5k`` or ``glyphs``); a FileNotFoundError or ValueError says
    what is missing."""
    if dataset not in IMAGE_DATASETS:
        raise ValueError(f"Unknown image dataset {dataset!r}. Valid: {', '.join(IMAGE_DATASETS)}")
    return MNIST5k() if dataset == "mnist5k" else Glyphs("train", progress=False)


def glyph_classes() -> int:
    """How many classes ``Glyphs("train")`` holds, read from the shipped class list (nothing rendered)."""
    listing = class_list()
    return sum(in_split(entry, "train", listing["validation_blocks"]) for entry in listing["classes"])


def dataset_classes(dataset: str) -> int:
    """The classes of ``dataset``, without loading its images."""
    return 10 if dataset == "mnist5k" else glyph_classes()


def split_images(dataset: str, split: str) -> int:
    """How many images ``split`` of ``dataset`` holds, without loading them."""
    if dataset == "glyphs":
        return glyph_classes() * len(GLYPH_DRAWERS[split])
    return sum(split_size(name) for name in (("val", "test") if split == "held_out" else (split,)))


def image_split(images: ImageClasses, split: str) -> torch.Tensor:
    """The indices into ``images`` (``MNIST5k()`` or ``Glyphs("train")``) of ``split``."""
    if split not in IMAGE_SPLITS:
        raise ValueError(f"Unknown split {split!r}. Valid: {', '.join(IMAGE_SPLITS)}")
    if isinstance(images, Glyphs):
        if images.split != "train":
            raise ValueError(f"the drawer split is of Glyphs('train'), got Glyphs({images.split!r})")
        drawers = torch.tensor(GLYPH_DRAWERS[split])
        return (torch.arange(images.num_classes)[:, None] * DRAWERS + drawers).flatten()
    if len(images.labels) != sum(split_size(name) for name in ("train", "val", "test")):
        raise ValueError(f"the shipped split covers the 5,000 digits of MNIST5k(), got {len(images.labels)} images")
    if split == "held_out":
        return torch.cat([split_indices("val"), split_indices("test")])
    return split_indices(split)


class LabelledImagesSampler:
    """Single labelled images as one-step episodes.

    Args:
        images: ``MNIST5k()`` or ``Glyphs("train")`` (``labelled_images``).
        split: ``train``, ``val``, ``test`` or ``held_out`` (``image_split``).
        seed, generator: the randomness of the training draws. Default: seed 0.

    ``sample(ids)``: inputs ``[B, 1, C, H, W]`` uint8, feedback ``[B, 1]`` the unknown label (no
    label is shown), targets ``[B, 1]`` the class, scored at the one step; ``num_classes`` 10
    digits or 383 glyph classes.
    """

    def __init__(self, images, split: str = "train", *, seed: int | None = None,
                 generator: torch.Generator | None = None):
        self.indices = image_split(images, split)
        self.images, self.split = images, split
        self.num_classes = images.num_classes
        self.rng = make_rng(seed, generator)

    def __len__(self) -> int:
        return len(self.indices)

    def state_dict(self) -> dict:
        return {"sampler": type(self).__name__, "split": self.split, "seed": self.rng.seed}

    def sample(self, episode_ids) -> EpisodeBatch:
        ids = as_episode_ids(episode_ids)
        B = len(ids)
        examples = pick_examples(self.rng, STREAM_IMAGE, self.split, self.indices, ids)
        one_step = torch.ones(B, 1, dtype=torch.int64)
        return EpisodeBatch(inputs=self.images.images[examples][:, None], feedback=self.num_classes * one_step,
                            targets=self.images.labels[examples][:, None].clone(), loss_mask=one_step.bool(),
                            shot=one_step, segment=0 * one_step, episode_ids=ids, num_classes=self.num_classes)
