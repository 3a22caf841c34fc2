"""What the image tasks share: their datasets by split, frame conversion, what learners are told
about frames, and the baselines that read image episodes."""
from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from episodes import Glyphs, ImageClasses, ImageFolderClasses, MiniImageNet, Omniglot
from metafwp.errors import ConfigError, DataError
from metafwp.models import LearnerInputs, PixelNearestNeighbour, PrototypicalNetwork

DATASETS = ("glyphs", "omniglot", "mini_imagenet", "folder")
IMAGE_BASELINES = ("pixel_nn", "prototypes_on_backbone")
WHERE_TO_GET = {
    "omniglot": "torchvision.datasets.Omniglot(root, background=True/False, download=True) writes "
                "<root>/omniglot-py/images_background and images_evaluation",
    "mini_imagenet": "put mini-imagenet-cache-{train,validation,test}.pkl (or the Ravi & Larochelle "
                     "{train,val,test}.csv with images/) in <root>",
    "folder": "lay images out as <root>/<split>/<class>/<image>",
}


def converted_shape(dataset: ImageClasses, channels: int | None, image_size: int | None) -> tuple[int, int, int]:
    """``(C, H, W)`` of ``dataset``'s frames with ``channels`` and ``image_size`` where given."""
    stored_channels, height, width = dataset.frame_shape
    return channels or stored_channels, image_size or height, image_size or width


def load_image_split(dataset: str, root: str | None, split: str, rotations: bool = False, progress: bool = True,
                     root_key: str = "data.root") -> ImageClasses:
    """The ImageClasses of one split of ``dataset`` (one of DATASETS) under the user's ``root`` (the
    recipe key ``root_key``); a missing or garbage copy raises an error saying how to get it."""
    if dataset == "glyphs":
        try:
            return Glyphs(split, progress=progress)
        except ValueError as error:
            raise ConfigError(f"{error} (glyph splits)") from None
    if root is None:
        how = f"{root_key}=<that folder>" if "[" not in root_key else \
            f"data.roots=[...] with that folder at position {root_key.split('[')[1].rstrip(']')}"
        raise ConfigError(f"{dataset} needs {root_key}, the folder holding your copy: {WHERE_TO_GET[dataset]}; "
                          f"then pass {how}")
    try:
        if dataset == "omniglot":
            return Omniglot(root, split, rotations=rotations, progress=progress)
        if dataset == "mini_imagenet":
            return MiniImageNet(root, split, progress=progress)
        return ImageFolderClasses(Path(root).expanduser() / split, progress=progress)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error}. How to get it: {WHERE_TO_GET[dataset]}.") from None
    except ValueError as error:  # a garbage or truncated file, named by the dataset
        raise DataError(str(error)) from None


def frame_inputs(frame_shape: tuple[int, int, int], num_classes: int) -> LearnerInputs:
    """What a learner is told about classification episodes of ``frame_shape`` frames and
    ``num_classes`` labels (feedback: one-hot labels and the unknown label)."""
    return LearnerInputs("frames", tuple(frame_shape), num_classes, num_classes + 1, "classes")


def check_image_baselines(baselines: list[str], kind: str) -> None:
    """``prototypes_on_backbone`` needs a learner with a backbone to lend."""
    if "prototypes_on_backbone" in baselines and kind not in ("sequence", "prototypical"):
        raise ConfigError(f"eval.baselines=prototypes_on_backbone reads the backbone of an in-context learner or "
                          f"Prototypical Network; model.kind={kind} has none to lend")


def image_baselines(baselines: list[str], model: nn.Module, kind: str) -> dict[str, tuple[nn.Module, dict]]:
    """The learners of ``baselines``: raw-pixel nearest neighbour (unless the learner is one) and
    nearest prototypes on ``model``'s own backbone."""
    learners = {}
    for name in baselines:
        if name == "pixel_nn" and kind != "pixel_nn":
            learners[name] = (PixelNearestNeighbour(), {})
        elif name == "prototypes_on_backbone":
            learners[name] = (PrototypicalNetwork(model.backbone), {})
    return learners
