"""Plain image classification: one labelled image per episode, nothing learned in context. The 5,000
embedded digits (``MNIST5k``) are split once, 4,000 / 500 / 500 (``datasets/splits/mnist5k.json``,
the split of the row-sequence task). Episode i of ``train`` is an image drawn uniformly with the
episode's randomness (every batch a fresh draw, with replacement); episode i of ``val`` and ``test``
is that split's i-th image, so a test of 500 episodes reads each once.
"""
from __future__ import annotations

import torch

from episodes.batch import EpisodeBatch
from episodes.irregular import pick_examples, split_indices, split_size
from episodes.sampling import as_episode_ids, make_rng

STREAM_IMAGE = 80


class LabelledImagesSampler:
    """Single labelled images as one-step episodes.

    Args:
        images: an ImageClasses of 5,000 28x28 digits (``MNIST5k()``).
        split: ``train``, ``val`` or ``test`` of the shipped split.
        seed, generator: the randomness of the training draws. Default: seed 0.

    ``sample(ids)``: inputs ``[B, 1, C, H, W]`` uint8, feedback ``[B, 1]`` the unknown label (no
    label is shown), targets ``[B, 1]`` the class, scored at the one step; ``num_classes`` 10.
    """

    def __init__(self, images, split: str = "train", *, seed: int | None = None,
                 generator: torch.Generator | None = None):
        self.indices = split_indices(split)
        if len(images.labels) != sum(split_size(name) for name in ("train", "val", "test")):
            raise ValueError(f"the shipped split covers the 5,000 digits of MNIST5k(), got {len(images.labels)} "
                             "images")
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
