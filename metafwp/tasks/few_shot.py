"""Few-shot image classification: N-way K-shot episodes of an image dataset, under synchronous or
delayed feedback, cross-entropy on the loss mask; tested on held-out classes beside raw-pixel
nearest neighbour and nearest prototypes on the learner's own backbone."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional

import torch
import torch.nn as nn

from episodes import FewShotSampler, Glyphs, ImageClasses, ImageFolderClasses, MiniImageNet, Omniglot
from episodes.feedback import FEEDBACK_MODES
from metafwp.baselines.maml import MAMLLearner
from metafwp.errors import ConfigError, DataError
from metafwp.losses import episode_loss
from metafwp.models import PixelNearestNeighbour, PrototypicalNetwork, SequenceLearner, build_backbone, feature_size
from metafwp.plots import plot_accuracy_by_shot
from metafwp.tasks.base import Scores, Task

DATASETS = ("glyphs", "omniglot", "mini_imagenet", "folder")
BASELINES = ("pixel_nn", "prototypes_on_backbone")
WHERE_TO_GET = {
    "omniglot": "torchvision.datasets.Omniglot(root, background=True/False, download=True) writes "
                "<root>/omniglot-py/images_background and images_evaluation",
    "mini_imagenet": "put mini-imagenet-cache-{train,validation,test}.pkl (or the Ravi & Larochelle "
                     "{train,val,test}.csv with images/) in <root>",
    "folder": "lay images out as <root>/<split>/<class>/<image>",
}


@dataclass
class FewShotData:
    """Where episodes come from. ``root`` is the user's data folder (not read for glyphs);
    ``val_split`` the classes validation episodes come from (Default: no validation)."""
    dataset: str = "glyphs"
    root: Optional[str] = None
    train_split: str = "background"
    val_split: Optional[str] = None
    test_split: str = "evaluation"
    n_way: int = 5
    k_shot: int = 1
    n_query: int = 1
    feedback: str = "synchronous"
    rotations: bool = False          # Omniglot: rotated characters as new classes
    image_size: Optional[int] = None  # frames resized to this (Default: as stored)
    channels: Optional[int] = None    # frames converted to this many channels (Default: as stored)
    num_workers: int = 0

    DECIDING_KEYS: ClassVar[tuple[str, ...]] = ("dataset",)

    def unread_keys(self) -> set[str]:
        unread = set()
        if self.dataset == "glyphs":
            unread.add("root")
        if self.dataset != "omniglot":
            unread.add("rotations")
        return unread

    def check(self) -> None:
        for key, value, valid in (("dataset", self.dataset, DATASETS), ("feedback", self.feedback, FEEDBACK_MODES)):
            if value not in valid:
                raise ConfigError(f"Unknown data.{key} {value!r}. Valid: {', '.join(valid)}")


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


class FewShotScoring:
    """The few-shot objective and its summary for episodes whose shot indices stay below ``num_shots``
    (a sampler's ``num_shots``): what ``evaluate_episodes`` needs of a task."""

    metric = "accuracy"

    def __init__(self, num_shots: int):
        self.num_shots = num_shots

    def objective(self, model: nn.Module, batch) -> Scores:
        """Cross-entropy on the loss mask; tallies ``[loss_sum, correct by shot, scored by shot]``."""
        outputs, _ = model(batch)
        result = episode_loss(outputs, batch, self.num_shots)
        sums = torch.cat([result.loss_sum.reshape(1), result.correct, result.count]).double()
        return Scores(result.loss, sums, result.episode_correct / result.episode_count)

    def summarise(self, sums: torch.Tensor) -> dict:
        correct, count = sums[1:].chunk(2)
        by_shot = {shot: 100 * (correct[shot] / count[shot]).item() for shot in range(len(count)) if count[shot] > 0}
        return {"loss": (sums[0] / count.sum()).item(), "accuracy": 100 * (correct.sum() / count.sum()).item(),
                "by_shot": by_shot}


def build_image_learner(model_config, frame_shape: tuple[int, int, int], n_way: int) -> nn.Module:
    """A SequenceLearner, PrototypicalNetwork, PixelNearestNeighbour or MAMLLearner (backbone and a
    linear head) for episodes of ``frame_shape`` frames and ``n_way`` classes."""
    m, shape = model_config, frame_shape
    if m.kind == "pixel_nn":
        return PixelNearestNeighbour()
    try:  # MAML's vmap over tasks batches frames in 5-d tensors, which have no channels-last layout
        backbone = build_backbone(m.backbone, shape[0], m.filters, m.norm, m.backbone_dropout, shape[-1],
                                  channels_last=m.kind != "maml")
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if m.kind == "maml":
        network = nn.Sequential(backbone, nn.Linear(feature_size(backbone, shape), n_way))
        return MAMLLearner(network, inner_lr=m.inner_lr, inner_steps=m.inner_steps,
                           test_inner_steps=m.test_inner_steps, first_order=m.first_order)
    if m.kind == "prototypical":
        return PrototypicalNetwork(backbone)
    return SequenceLearner.from_config(m, backbone, feature_size(backbone, shape), n_way, n_way + 1)


def learner_name(model_config) -> str:
    """``srwm``, ``delta``, ``lstm``, ... for sequence learners, else the model kind."""
    return model_config.mixer if model_config.kind == "sequence" else model_config.kind


class FewShotTask(Task):
    """``task: few_shot`` (the default): N-way K-shot classification episodes of ``data.dataset``."""

    name = "few_shot"
    DataConfig = FewShotData
    learner_kinds = ("sequence", "prototypical", "pixel_nn", "maml")
    metric = "accuracy"
    higher_is_better = True

    def __init__(self, config, progress: bool = True):
        self.config, self.data, self.progress = config, config.data, progress
        self.learner = learner_name(config.model)
        self.sampler = self.make_train_sampler()
        self.val_sampler = None
        if config.eval.val_every:
            self.val_sampler = self.make_sampler(self.data.val_split, config.eval.val_seed, key="data.val_split")

    @classmethod
    def default_baselines(cls, config) -> list[str]:
        return ["pixel_nn"]

    @classmethod
    def unread_model_keys(cls, model_config) -> set[str]:
        return {"mlp_hidden"}

    @classmethod
    def check_config(cls, config) -> None:
        """Settings that do not fit together, found before any data is read."""
        if config.model.kind != "sequence" and config.data.feedback != "synchronous":
            raise ConfigError(f"model.kind={config.model.kind} reads synchronous episodes; set "
                              f"data.feedback=synchronous")
        for baseline in cls.baselines(config):
            if baseline not in BASELINES:
                raise ConfigError(f"Unknown eval.baselines entry {baseline!r}. Valid: {', '.join(BASELINES)}")
            if baseline == "prototypes_on_backbone" and config.model.kind not in ("sequence", "prototypical"):
                raise ConfigError(f"eval.baselines=prototypes_on_backbone reads the backbone of an in-context "
                                  f"learner or Prototypical Network; model.kind={config.model.kind} has none to lend")
        if config.eval.val_every and config.data.val_split is None:
            raise ConfigError(f"eval.val_every={config.eval.val_every} needs data.val_split, the classes "
                              f"validation episodes come from (e.g. val)")

    def load_split(self, split: str) -> ImageClasses:
        """The ImageClasses of one split of ``data.dataset``."""
        return load_image_split(self.data.dataset, self.data.root, split, self.data.rotations, self.progress)

    def frame_shape(self, dataset: ImageClasses) -> tuple[int, int, int]:
        """``(C, H, W)`` of the episodes' frames: the dataset's, converted as ``data`` asks."""
        return converted_shape(dataset, self.data.channels, self.data.image_size)

    def make_sampler(self, split: str, seed: int, key: str = "data", k_shot: int | None = None) -> FewShotSampler:
        """The seeded episodes of ``split`` (with ``k_shot`` support shots; Default: ``data.k_shot``);
        a sampler value that does not fit raises a ConfigError."""
        data = self.data
        dataset = self.load_split(split)
        try:
            return FewShotSampler(dataset, data.n_way, k_shot or data.k_shot, data.n_query, feedback=data.feedback,
                                  seed=seed, frame_shape=self.frame_shape(dataset))
        except ValueError as error:
            raise ConfigError(f"{key} ({split}): {error}") from None

    def make_train_sampler(self) -> FewShotSampler:
        return self.make_sampler(self.data.train_split, self.config.train.seed)

    def train_sampler(self) -> FewShotSampler:
        return self.sampler

    def build_learner(self, model_config) -> nn.Module:
        return build_image_learner(model_config, self.sampler.frame_shape, self.sampler.num_classes)

    @property
    def scoring(self) -> FewShotScoring:
        return FewShotScoring(self.sampler.num_shots)

    def objective(self, model: nn.Module, batch) -> Scores:
        return self.scoring.objective(model, batch)

    def summarise(self, sums: torch.Tensor) -> dict:
        return self.scoring.summarise(sums)

    def test(self, model: nn.Module, device: torch.device, split: str | None = None,
             k_shot: int | None = None) -> dict[str, dict]:
        """The learner, then each of ``eval.baselines``, on the same ``eval.episodes`` seeded episodes
        (with ``k_shot`` support shots; Default: ``data.k_shot``)."""
        sampler = self.make_sampler(split or self.data.test_split, self.config.eval.seed, key="data.test_split",
                                    k_shot=k_shot)
        episodes = self.config.eval.episodes
        results = {self.learner: self.evaluate(model, sampler, episodes, device, f"testing {self.learner}")}
        for baseline in self.baselines(self.config):
            if baseline == "pixel_nn" and self.config.model.kind != "pixel_nn":
                other = PixelNearestNeighbour()
            elif baseline == "prototypes_on_backbone":
                other = PrototypicalNetwork(model.backbone)
            else:
                continue
            results[baseline] = self.evaluate(other, sampler, episodes, device, f"testing {baseline}")
        return results

    def write_figures(self, results: dict[str, dict], run_dir: Path, title: str) -> list[Path]:
        n_way = self.data.n_way
        first = None
        if self.data.feedback == "delayed":  # a guesser that never repeats a label already shown
            first = 100 * sum(1 / (n_way - seen) for seen in range(n_way)) / n_way
        return [plot_accuracy_by_shot(results, run_dir / "accuracy_by_shot.png", chance=100 / n_way,
                                      first_sighting_chance=first, title=title)]
