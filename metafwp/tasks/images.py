"""What the image tasks share: their datasets by split, frame conversion, what learners are told
about frames, and the baselines that read image episodes."""
from __future__ import annotations

import sys
from pathlib import Path

import torch.nn as nn

from episodes import Glyphs, ImageClasses, ImageFolderClasses, MiniImageNet, Omniglot
from episodes.datasets.glyphs import GLYPH_SPLITS
from episodes.datasets.mini_imagenet import MINI_IMAGENET_SPLITS
from episodes.datasets.omniglot import OMNIGLOT_SPLITS
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


SPLITS = {"glyphs": GLYPH_SPLITS, "omniglot": OMNIGLOT_SPLITS, "mini_imagenet": MINI_IMAGENET_SPLITS}
# split pairs that share classes, besides a split and itself: glyphs' background holds train and val,
# all holds everything; Omniglot's trainval holds train and val, and its two schemes (the background /
# evaluation halves, Vinyals et al.'s train / val / test over both) cut across each other
SHARED_CLASSES = {
    "glyphs": lambda a, b: "all" in (a, b) or {a, b} in ({"background", "train"}, {"background", "val"}),
    "omniglot": lambda a, b: {a, b} in ({"trainval", "train"}, {"trainval", "val"})
    or ((a in ("background", "evaluation")) != (b in ("background", "evaluation"))),
    "mini_imagenet": lambda a, b: False,
}
HELD_OUT = {"glyphs": "background -> evaluation, or train -> val", "omniglot": "background -> evaluation, or "
            "train -> val / test", "mini_imagenet": "train -> val / test"}


def check_splits(dataset: str, root: str | None, train: str, held_out: dict[str, str | None]) -> None:
    """Before any image is read: every split name is one ``dataset`` has, no validation or test
    split (``held_out``: ``{recipe key: split}``) shares classes with ``train``, and, where the
    user's ``root`` is given, each split's files are there. Folder datasets name their splits
    freely: class folders found under both are a one-line warning."""
    splits = {"training": train, **{key: split for key, split in held_out.items() if split is not None}}
    check_names_and_overlaps(dataset, root, train, splits, held_out)
    if root is not None:
        for split in splits.values():
            try:
                locate_split(dataset, root, split)
            except FileNotFoundError as error:
                raise FileNotFoundError(f"{error}. How to get it: {WHERE_TO_GET[dataset]}.") from None
            except ValueError as error:  # a file is there, but its start is not the format's
                raise DataError(f"{error}. How to get it: {WHERE_TO_GET[dataset]}.") from None


def locate_split(dataset: str, root: str, split: str) -> None:
    """A FileNotFoundError when ``split``'s files are not under ``root`` (nothing is read)."""
    if dataset == "omniglot":
        Omniglot.locate(root, split)
    elif dataset == "mini_imagenet":
        MiniImageNet.locate(root, split)
    elif dataset == "folder" and not (folder := Path(root).expanduser() / split).is_dir():
        raise FileNotFoundError(f"image folder not found: {folder} (expected {folder}/<class>/<image>)")


def check_names_and_overlaps(dataset: str, root: str | None, train: str, splits: dict[str, str],
                             held_out: dict[str, str | None]) -> None:
    """``check_splits``' checks of the names (``splits``: ``{recipe key: split}``) and overlaps."""
    if dataset in SPLITS:
        for key, split in splits.items():
            if split not in SPLITS[dataset]:
                what = "the training split" if key == "training" else key
                raise ConfigError(f"Unknown {dataset} split {split!r} for {what}. Valid: {', '.join(SPLITS[dataset])}")
        for key, split in held_out.items():
            if split is not None and (split == train or SHARED_CLASSES[dataset](train, split)):
                raise ConfigError(f"{key}={split} shares classes with the training split {train} of {dataset}: "
                                  f"held-out episodes must come from classes the learner never trained on "
                                  f"({HELD_OUT[dataset]})")
    elif dataset == "folder" and root is not None:
        trained = class_folders(Path(root).expanduser() / train)
        for key, split in held_out.items():
            shared = trained & class_folders(Path(root).expanduser() / split) if split is not None else set()
            if shared:
                print(f"warning: {key}={split} and the training split {train} of {root} both hold class folders "
                      f"named {', '.join(sorted(shared)[:3])}{' ...' if len(shared) > 3 else ''}: if they are the "
                      f"same classes, held-out episodes are not held out", file=sys.stderr)


def class_folders(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir() if path.is_dir()} if folder.is_dir() else set()


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
