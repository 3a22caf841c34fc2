"""Sequential multi-task adaptation (Irie et al. 2022, delayed feedback): one sequence holds a segment
of each source (e.g. Omniglot then Mini-ImageNet, in random order), the state carried across the
switch, the loss on every step. Tested by accuracy at every position of each source's segment, as
the first and as the second segment, so the recovery after the switch can be read off."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, List, Optional

import torch
import torch.nn as nn

from episodes import FewShotSampler, MultiTaskStream
from episodes.batch import EpisodeBatch
from episodes.streams import FrameShapesDiffer
from metafwp.errors import ConfigError
from metafwp.losses import episode_loss
from metafwp.plots import plot_accuracy_across_switch
from metafwp.tasks.base import Scores, StreamTask
from metafwp.tasks.images import DATASETS, check_splits, converted_shape, frame_inputs, load_image_split

GLYPH_FAMILY_SOURCES = ("glyphs:letters", "glyphs:symbols")
SOURCES = DATASETS + GLYPH_FAMILY_SOURCES


@dataclass
class MultiTaskData:
    """The sources, one segment each per sequence, under delayed feedback. Lists are per source, in
    the order of ``sources``: ``glyphs``, ``glyphs:letters`` / ``glyphs:symbols`` (the alphabetic or
    the symbol Unicode blocks of the glyph split), ``omniglot``, ``mini_imagenet``, ``folder``.
    ``k_shots``: examples per class in each source's segment (``n_way * k`` steps); frames are
    converted to ``channels`` x ``image_size`` x ``image_size`` (needed when the sources differ);
    ``min_segment_steps`` trims each training segment to a random length of at least that many steps
    (Default: no trimming; the test never trims)."""
    sources: List[str] = field(default_factory=lambda: list(GLYPH_FAMILY_SOURCES))
    roots: Optional[List[Optional[str]]] = None
    train_splits: List[str] = field(default_factory=lambda: ["background", "background"])
    val_splits: Optional[List[str]] = None
    test_splits: List[str] = field(default_factory=lambda: ["evaluation", "evaluation"])
    n_way: int = 5
    k_shots: List[int] = field(default_factory=lambda: [5, 5])
    min_segment_steps: Optional[int] = None
    rotations: bool = False
    image_size: Optional[int] = None
    channels: Optional[int] = None
    num_workers: int = 0

    DECIDING_KEYS: ClassVar[tuple[str, ...]] = ("sources",)
    TEST_KEYS: ClassVar[tuple[str, ...]] = ("test_splits",)  # shape only the test: may change on resume and in evaluate

    def unread_keys(self) -> set[str]:
        return set() if "omniglot" in self.sources else {"rotations"}

    def check(self) -> None:
        for source in self.sources:
            if source not in SOURCES:
                raise ConfigError(f"Unknown data.sources entry {source!r}. Valid: {', '.join(SOURCES)}")
        if len(self.sources) < 2:
            raise ConfigError(f"data.sources needs at least two sources, got {self.sources}")
        for key in ("roots", "train_splits", "val_splits", "test_splits", "k_shots"):
            value = getattr(self, key)
            if value is not None and len(value) != len(self.sources):
                raise ConfigError(f"data.{key} gives {len(value)} values for {len(self.sources)} data.sources; "
                                  f"give one per source")
        if min(self.k_shots) < 1:
            raise ConfigError(f"data.k_shots must be >= 1, got {self.k_shots}")

    def root(self, source: int) -> str | None:
        return None if self.roots is None else self.roots[source]


def segment_positions(segment: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(slot, position)`` of every step of ``segment [B, T]`` (source ids, -1 padding): which
    segment of its sequence the step is in (0 first, 1 second, ...) and its index in that segment."""
    steps = torch.arange(segment.shape[1], device=segment.device).expand_as(segment)
    change = torch.ones_like(segment, dtype=torch.bool)
    change[:, 1:] = segment[:, 1:] != segment[:, :-1]
    start = torch.where(change, steps, 0).cummax(1).values
    return change.long().cumsum(1) - 1, steps - start


class MultiTaskTask(StreamTask):
    """``task: multitask``: delayed-feedback sequences of one segment per source, in random order."""

    name = "multitask"
    DataConfig = MultiTaskData
    validation_key = "val_splits"

    @classmethod
    def chance(cls, config) -> float:
        return 100 / config.data.n_way

    @classmethod
    def check_config(cls, config) -> None:
        super().check_config(config)
        data = config.data
        for i, source in enumerate(data.sources):
            held_out = {f"data.test_splits[{i}]": data.test_splits[i],
                        f"data.val_splits[{i}]": None if data.val_splits is None else data.val_splits[i]}
            check_splits(source.split(":")[0], data.root(i), data.train_splits[i], held_out)

    def __init__(self, config, progress: bool = True):
        super().__init__(config, progress)
        self.num_sources = len(self.data.sources)
        self.max_segment = self.data.n_way * max(self.data.k_shots)
        self.num_shots = max(self.data.k_shots) + 1

    def load_source(self, source: int, split: str):
        """``(dataset, classes)`` of one source's split: classes None for all, or a glyph family's ids."""
        name = self.data.sources[source]
        if name in GLYPH_FAMILY_SOURCES:
            glyphs = load_image_split("glyphs", None, split, progress=self.progress)
            return glyphs, glyphs.family_classes(name.split(":")[1])
        return load_image_split(name, self.data.root(source), split, self.data.rotations, self.progress,
                                root_key=f"data.roots[{source}]"), None

    def make_stream(self, splits: list[str], seed: int, min_segment_steps: int | None = None,
                    key: str = "data") -> MultiTaskStream:
        """One delayed-feedback FewShotSampler per source on its split, joined into a seeded stream."""
        data, samplers = self.data, []
        for source, split in enumerate(splits):
            dataset, classes = self.load_source(source, split)
            shape = converted_shape(dataset, data.channels, data.image_size)
            try:
                samplers.append(FewShotSampler(dataset, data.n_way, data.k_shots[source], feedback="delayed",
                                               seed=seed, classes=classes, frame_shape=shape))
            except ValueError as error:
                raise ConfigError(f"{key} (source {data.sources[source]}, split {split}): {error}") from None
        try:
            return MultiTaskStream(samplers, min_segment_steps=min_segment_steps, seed=seed)
        except FrameShapesDiffer as error:
            raise ConfigError(f"{key}: {error}; set data.image_size and data.channels (e.g. 84 and 3 for Omniglot "
                              f"beside Mini-ImageNet)") from None
        except ValueError as error:
            raise ConfigError(f"{key}: {error}") from None

    def train_episodes(self) -> MultiTaskStream:
        return self.make_stream(self.data.train_splits, self.config.train.seed, self.data.min_segment_steps)

    def validation_episodes(self) -> MultiTaskStream:
        return self.make_stream(self.data.val_splits, self.config.eval.val_seed, key="data.val_splits")

    def test_episodes(self) -> dict[str, tuple[MultiTaskStream, dict]]:
        """``eval.episodes`` seeded test sequences (both orders, untrimmed)."""
        return {"": (self.make_stream(self.data.test_splits, self.config.eval.seed, key="data.test_splits"), {})}

    def learner_inputs(self):
        return frame_inputs(self.sampler.frame_shape, self.sampler.num_classes)

    @classmethod
    def test_set_name(cls, config) -> str:
        return "+".join(config.data.test_splits)

    def objective(self, model: nn.Module, batch: EpisodeBatch) -> Scores:
        """Cross-entropy on every step; tallies ``loss_sum``, ``correct_at`` / ``scored_at`` by (source,
        slot, position) and ``correct_by_shot`` / ``scored_by_shot`` by (source, slot, shot)."""
        outputs, _ = model(batch)
        result = episode_loss(outputs, batch, self.num_shots)
        mask = batch.loss_mask & (batch.segment >= 0)
        slot, position = segment_positions(batch.segment)
        hits = (outputs.argmax(-1) == batch.targets).float()[mask]
        source, slot, position, shot = batch.segment[mask], slot[mask], position[mask], batch.shot[mask]
        by_position = (source * self.num_sources + slot) * self.max_segment + position
        by_shot = (source * self.num_sources + slot) * self.num_shots + shot
        cells = self.num_sources * self.num_sources

        def tally(index, size):
            return (torch.zeros(cells * size, device=hits.device).index_add_(0, index, hits).view(n, n, size),
                    torch.zeros(cells * size, device=hits.device).index_add_(0, index, torch.ones_like(hits))
                    .view(n, n, size))

        n = self.num_sources
        correct_at, scored_at = tally(by_position, self.max_segment)
        correct_by_shot, scored_by_shot = tally(by_shot, self.num_shots)
        sums = {"loss_sum": result.loss_sum, "correct_at": correct_at, "scored_at": scored_at,
                "correct_by_shot": correct_by_shot, "scored_by_shot": scored_by_shot}
        return Scores(result.loss, sums, result.episode_correct / result.episode_count, result.count.sum())

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict:
        """Loss and accuracy, and per source (by name) and slot (``first``, ``second``, ...) the
        accuracy of the segment, by position (None where never scored) and by shot."""
        n, shots = self.num_sources, self.num_shots
        correct_at, count_at = sums["correct_at"], sums["scored_at"]
        correct_shot, count_shot = sums["correct_by_shot"], sums["scored_by_shot"]
        total = count_at.sum()
        record = {"loss": (sums["loss_sum"] / total).item(), "accuracy": 100 * (correct_at.sum() / total).item(),
                  "second_segment_accuracy": 100 * (correct_at[:, 1:].sum() / count_at[:, 1:].sum()).item(),
                  "segments": {}}
        slots = ["first", "second", "third", "fourth", "fifth"]
        for source, name in enumerate(self.data.sources):
            record["segments"][name] = {
                slots[slot] if slot < len(slots) else f"segment {slot + 1}": {
                    "accuracy": 100 * (correct_at[source, slot].sum() / count_at[source, slot].sum()).item(),
                    "by_position": [100 * (c / k).item() if k > 0 else None
                                    for c, k in zip(correct_at[source, slot], count_at[source, slot])],
                    "by_shot": {s: 100 * (correct_shot[source, slot, s] / count_shot[source, slot, s]).item()
                                for s in range(shots) if count_shot[source, slot, s] > 0}}
                for slot in range(n) if count_at[source, slot].sum() > 0}
        return record

    def write_figures(self, results: dict[str, dict], run_dir: Path, title: str) -> list[Path]:
        return [plot_accuracy_across_switch(results, run_dir / "accuracy_across_switch.png",
                                            chance=self.chance(self.config), title=title)]
