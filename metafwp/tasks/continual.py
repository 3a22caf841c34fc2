"""Continual meta-learning (ACL; Irie, Csordas & Schmidhuber 2025): streams of few-shot tasks read one
after another with the state carried over; the loss scores each task after it is learned and,
with the ACL terms, again after every later task. Meta-tested on Split-MNIST (the embedded 5,000
MNIST digits or a torchvision copy), domain- or class-incremental: the forgetting matrix, accuracy
of task s after tasks 1 .. t, with 95% CIs over a fixed set of seeded test streams."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, List, Optional

import torch
import torch.nn as nn

from episodes import MNIST, ContinualSampler, FewShotSampler, MNIST5k, split_mnist
from episodes.datasets.base import ImageClasses
from episodes.streams import SPLIT_MNIST_TASKS, FrameShapesDiffer
from metafwp.errors import ConfigError, DataError
from metafwp.losses import continual_loss
from metafwp.plots import plot_forgetting
from metafwp.tasks.base import Scores, StreamTask
from metafwp.tasks.images import DATASETS, check_splits, converted_shape, frame_inputs, load_image_split

TEST_DATASETS = ("mnist5k", "mnist")
# Hsu et al. 2018 (full MNIST, conventional training, no replay), as quoted by Irie et al. 2025:
# (domain-incremental, class-incremental) final average accuracy in %
QUOTED_BASELINES = {"SGD": (63.20, 19.46), "Adam": (55.16, 19.71), "L2": (66.00, 22.52), "EWC": (58.85, 19.80),
                    "Online EWC": (57.33, 19.77), "SI": (64.76, 19.67), "MAS": (68.57, 19.52),
                    "LwF": (71.02, 24.17), "offline (upper bound)": (98.59, 97.53)}


@dataclass
class ContinualData:
    """Meta-training streams of ``num_tasks`` few-shot tasks (``n_way``-way, ``k_shot`` support and
    ``n_query`` queries per class), task t drawn from ``train_sources[t % len(train_sources)]``
    (one of glyphs, omniglot, mini_imagenet, folder; ``roots`` and ``train_splits`` one each; ``shuffle_tasks``
    draws the order per stream); validation streams are drawn the same way from ``val_splits`` (one
    per source, classes the training never sees); ``class_incremental`` shifts task t's labels by ``t n_way``;
    ``acl`` keeps the backward terms in the loss; ``first_task_scale`` weights the first task's own
    term. The meta-test reads Split-MNIST from ``test_dataset`` (``mnist5k``: the embedded digits;
    ``mnist``: torchvision's layout under ``test_root``) with ``test_k_shot`` shots per class,
    ``invert_test`` turning its white-on-black digits into the dark-on-light ink of glyphs and
    Omniglot. Frames are converted to ``channels`` x ``image_size`` x ``image_size`` when given."""
    train_sources: List[str] = field(default_factory=lambda: ["glyphs"])
    roots: Optional[List[Optional[str]]] = None
    train_splits: List[str] = field(default_factory=lambda: ["background"])
    val_splits: Optional[List[str]] = None
    num_tasks: int = 5
    n_way: int = 2
    k_shot: int = 5
    n_query: int = 1
    shuffle_tasks: bool = False
    class_incremental: bool = False
    acl: bool = True
    first_task_scale: float = 1.0
    test_dataset: str = "mnist5k"
    test_root: Optional[str] = None
    test_split: str = "test"
    test_k_shot: int = 15
    test_n_query: int = 1
    invert_test: bool = True
    image_size: Optional[int] = None
    channels: Optional[int] = None
    num_workers: int = 0

    DECIDING_KEYS: ClassVar[tuple[str, ...]] = ("test_dataset",)
    # shape only the test: may change on resume and in evaluate
    TEST_KEYS: ClassVar[tuple[str, ...]] = ("test_dataset", "test_root", "test_split", "test_k_shot", "test_n_query",
                                            "invert_test")

    def unread_keys(self) -> set[str]:
        return {"test_root", "test_split"} if self.test_dataset == "mnist5k" else set()

    def check(self) -> None:
        for source in self.train_sources:
            if source not in DATASETS:
                raise ConfigError(f"Unknown data.train_sources entry {source!r}. Valid: {', '.join(DATASETS)}")
        if self.test_dataset not in TEST_DATASETS:
            raise ConfigError(f"Unknown data.test_dataset {self.test_dataset!r}. Valid: {', '.join(TEST_DATASETS)}")
        for key in ("roots", "train_splits", "val_splits"):
            value = getattr(self, key)
            if value is not None and len(value) != len(self.train_sources):
                raise ConfigError(f"data.{key} gives {len(value)} values for {len(self.train_sources)} "
                                  f"data.train_sources; give one per source")
        for key in ("num_tasks", "n_way", "k_shot", "n_query", "test_k_shot", "test_n_query"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key} must be >= 1, got {getattr(self, key)}")
        if self.first_task_scale < 0:
            raise ConfigError(f"data.first_task_scale must be >= 0, got {self.first_task_scale}")

    @property
    def num_classes(self) -> int:
        """The learner's label space: ``n_way``, or ``num_tasks n_way`` when class-incremental."""
        return self.num_tasks * self.n_way if self.class_incremental else self.n_way


def check_label_space(stream: ContinualSampler, num_outputs: int, what: str) -> None:
    """A stream whose labels the learner's outputs cannot hold raises a ConfigError saying why."""
    ways = sorted({s.n_way for s in stream.samplers})
    if stream.num_classes > num_outputs:
        kind = "class-incremental stream of" if stream.class_incremental else "stream of"
        raise ConfigError(f"the {what} {kind} {len(stream.samplers)} tasks of {'/'.join(map(str, ways))} ways needs "
                          f"{stream.num_classes} labels, but the learner has {num_outputs} outputs; meta-train with "
                          f"data.num_tasks and data.n_way that give at least {stream.num_classes} "
                          f"{'(class-incremental: num_tasks x n_way)' if stream.class_incremental else ''}".rstrip())


class ContinualTask(StreamTask):
    """``task: continual``: meta-train on task streams, meta-test on Split-MNIST."""

    name = "continual"
    DataConfig = ContinualData
    validation_key = "val_splits"

    @classmethod
    def chance(cls, config) -> float:
        return 100 / config.data.num_classes

    @classmethod
    def check_config(cls, config) -> None:
        """Before training: the sources' splits (validation ones held out) and the meta-test's data
        (``mnist`` needs ``data.test_root`` with the split's files, their headers MNIST's)."""
        super().check_config(config)
        data = config.data
        for i, source in enumerate(data.train_sources):
            held_out = {f"data.val_splits[{i}]": None if data.val_splits is None else data.val_splits[i]}
            check_splits(source, None if data.roots is None else data.roots[i], data.train_splits[i], held_out)
        tasks, ways = len(SPLIT_MNIST_TASKS), len(SPLIT_MNIST_TASKS[0])
        needed = tasks * ways if data.class_incremental else ways
        if needed > data.num_classes:  # the learner's outputs are sized by the training streams
            sized_by = (f"data.num_tasks={data.num_tasks} x data.n_way={data.n_way}" if data.class_incremental
                        else f"data.n_way={data.n_way}")
            raise ConfigError(f"the Split-MNIST test {'class-incremental ' if data.class_incremental else ''}stream of "
                              f"{tasks} tasks of {ways} ways needs {needed} labels, but the learner has "
                              f"{data.num_classes} outputs ({sized_by}); meta-train with at least {needed}")
        if config.data.test_dataset == "mnist":
            if config.data.test_root is None:
                raise ConfigError("data.test_dataset=mnist needs data.test_root, the folder that holds MNIST/ "
                                  "(torchvision.datasets.MNIST(root, download=True) writes it)")
            try:  # the files and their headers, before any work; the digits are read at the test
                MNIST.locate(config.data.test_root, config.data.test_split)
            except ValueError as error:
                raise DataError(f"data.test_root: {error}") from None

    def train_episodes(self) -> ContinualSampler:
        return self.make_stream(self.data.train_splits, self.config.train.seed, "meta-training")

    def validation_episodes(self) -> ContinualSampler:
        return self.make_stream(self.data.val_splits, self.config.eval.val_seed, "validation")

    def make_stream(self, splits: list[str], seed: int, what: str) -> ContinualSampler:
        """Streams of ``data.num_tasks`` few-shot tasks, task t from source ``t % len(train_sources)``
        on its split of ``splits``."""
        data, samplers, datasets = self.data, [], {}
        for t in range(data.num_tasks):
            index = t % len(data.train_sources)
            if index not in datasets:
                root = None if data.roots is None else data.roots[index]
                datasets[index] = load_image_split(data.train_sources[index], root, splits[index],
                                                   progress=self.progress, root_key=f"data.roots[{index}]")
            try:
                samplers.append(FewShotSampler(datasets[index], data.n_way, data.k_shot, data.n_query, seed=seed,
                                               frame_shape=converted_shape(datasets[index], data.channels,
                                                                           data.image_size)))
            except ValueError as error:
                raise ConfigError(f"data (task {t + 1}, {data.train_sources[index]}): {error}") from None
        try:
            stream = ContinualSampler(samplers, class_incremental=data.class_incremental, shuffle=data.shuffle_tasks,
                                      seed=seed)
        except FrameShapesDiffer as error:
            raise ConfigError(f"data: {error}; set data.image_size and data.channels") from None
        except ValueError as error:
            raise ConfigError(f"data: {error}") from None
        check_label_space(stream, data.num_classes, what)
        return stream

    def load_test_digits(self) -> ImageClasses:
        data = self.data
        try:
            digits = MNIST5k() if data.test_dataset == "mnist5k" else MNIST(data.test_root, data.test_split)
        except ValueError as error:
            raise DataError(str(error)) from None
        if data.invert_test:
            digits = ImageClasses(255 - digits.images, digits.labels, digits.class_names)
        return digits

    def make_test_stream(self, seed: int) -> ContinualSampler:
        """Split-MNIST, domain- or class-incremental as the meta-training streams, frames as the training ones."""
        data = self.data
        stream = split_mnist(self.load_test_digits(), data.test_k_shot, data.test_n_query,
                             class_incremental=data.class_incremental, seed=seed, frame_shape=self.sampler.frame_shape)
        check_label_space(stream, data.num_classes, "Split-MNIST test")
        return stream

    def test_episodes(self) -> dict[str, tuple[ContinualSampler, dict]]:
        """``eval.episodes`` seeded Split-MNIST streams; ``accuracy`` is the final average accuracy
        over the tasks (with its 95% CI over streams)."""
        return {"": (self.make_test_stream(self.config.eval.seed), {})}

    def learner_inputs(self):
        return frame_inputs(self.sampler.frame_shape, self.data.num_classes)

    @classmethod
    def test_set_name(cls, config) -> str:
        return "mnist5k" if config.data.test_dataset == "mnist5k" else f"mnist_{config.data.test_split}"

    def objective(self, model: nn.Module, batch) -> Scores:
        """``continual_loss`` (the forgetting matrix read too when not training); tallies ``loss``,
        ``correct`` and ``scored`` [T, T], per-episode ``accuracy`` [T, T] and its square
        (``accuracy_square``), and ``episodes``."""
        result = continual_loss(model, batch, backward=self.data.acl, first_task_scale=self.data.first_task_scale,
                                read_earlier=self.data.acl or not model.training)
        accuracy = result.correct / result.count.clamp_min(1)  # [B, T, T]
        last_read = bool((result.count[:, :, -1] > 0).all())  # every task read after the last one
        final = accuracy[:, :, -1].mean(1) if last_read else accuracy.diagonal(0, 1, 2).mean(1)
        sums = {"loss": result.loss * batch.batch_size, "correct": result.correct.sum(0),
                "scored": result.count.sum(0), "accuracy": accuracy.sum(0), "accuracy_square": accuracy.square().sum(0),
                "episodes": torch.tensor(float(batch.batch_size))}
        return Scores(result.loss, sums, final)

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict:
        """Loss; ``accuracy`` (each task right after learning it), ``remembered`` (earlier tasks
        after later ones) where read; the ``forgetting`` matrix (``mean`` and ``ci95``, rows the
        task s, columns after task t; None where not read) and ``final_average`` (after the last task)."""
        n = sums["correct"].shape[0]  # tasks per stream: num_tasks in training, five on Split-MNIST
        correct, count, acc_sum, acc_square = sums["correct"], sums["scored"], sums["accuracy"], sums["accuracy_square"]
        episodes = sums["episodes"]
        read = count > 0
        mean = acc_sum / episodes
        variance = ((acc_square - episodes * mean.square()) / (episodes - 1).clamp_min(1)).clamp_min(0)
        ci95 = 1.96 * variance.sqrt() / math.sqrt(float(episodes))

        def matrix(values):
            return [[100 * values[s, t].item() if read[s, t] else None for t in range(n)] for s in range(n)]

        diagonal = torch.eye(n, dtype=torch.bool)
        record = {"loss": (sums["loss"] / episodes).item(),
                  "accuracy": 100 * (correct[diagonal].sum() / count[diagonal].sum()).item(),
                  "forgetting": {"mean": matrix(mean), "ci95": matrix(ci95)}}
        earlier = read & ~diagonal
        if earlier.any():
            record["remembered"] = 100 * (correct[earlier].sum() / count[earlier].sum()).item()
        if read[:, -1].all():
            record["final_average"] = 100 * mean[:, -1].mean().item()
        return record

    def write_figures(self, results: dict[str, dict], run_dir: Path, title: str) -> list[Path]:
        kind = "class" if self.data.class_incremental else "domain"
        return [plot_forgetting(results, run_dir / "forgetting.png", quoted=QUOTED_BASELINES, kind=kind,
                                chance=self.chance(self.config), title=title)]
