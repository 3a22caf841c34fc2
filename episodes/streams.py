"""Episodes built from several parts or sources: bootstrapping, multi-task and continual streams.

Every part is drawn from a FewShotSampler, so the same ``(seed, episode id)`` rule holds. When a
stream combines S samplers, source ``s`` draws its episode ``i * S + s``: sources that share a
seed still make independent choices.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from episodes.batch import PADDING_SEGMENT, EpisodeBatch, concatenate_steps
from episodes.feedback import synchronous
from episodes.sampling import (STREAM_FUTURE_ORDER, STREAM_QUERY_ORDER, STREAM_SUPPORT_ORDER, FewShotSampler,
                               TooFewExamples, as_episode_ids, make_rng)

STREAM_SOURCE_ORDER = 30
STREAM_TRIM = 31


def _source_ids(ids: torch.Tensor, source: int, num_sources: int) -> torch.Tensor:
    return ids * num_sources + source


class FrameShapesDiffer(ValueError):
    """Samplers joined into one stream give frames of different shapes."""


def _check_same_frames(samplers: list[FewShotSampler]) -> None:
    shapes = {s.frame_shape for s in samplers}
    if len(shapes) > 1:
        raise FrameShapesDiffer(f"the samplers give frames of different shapes {sorted(shapes)}; give each the same "
                         "frame_shape, e.g. frame_shape=(3, 84, 84)")


@dataclass
class BootstrapBatch:
    """Parts of a bootstrapping episode (docs/protocols.md section 7), each an EpisodeBatch over the same classes.

    support: ``n_way * k_shot`` labelled steps (state S_K after them).
    future: ``n_way * n_future`` further labelled steps (S_{K+F} after support then future).
    query: ``n_way * n_query`` unknown-feedback steps, scored from S_K (shot ``k_shot + 1``)
        and again from S_{K+F}.
    """

    support: EpisodeBatch
    future: EpisodeBatch
    query: EpisodeBatch

    @property
    def batch_size(self) -> int:
        return self.support.batch_size

    def sequence(self) -> EpisodeBatch:
        """Support, future and query as one EpisodeBatch of ``n_way (K + F + Q)`` steps: one pass
        over it reads the query from S_{K+F}."""
        return concatenate_steps([self.support, self.future, self.query])

    def _map(self, fn) -> "BootstrapBatch":
        return BootstrapBatch(fn(self.support), fn(self.future), fn(self.query))

    def to(self, device, non_blocking: bool = False) -> "BootstrapBatch":
        return self._map(lambda part: part.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "BootstrapBatch":
        return self._map(lambda part: part.pin_memory())

    def __getitem__(self, index) -> "BootstrapBatch":
        """Episodes ``index`` of every part."""
        return self._map(lambda part: part[index])


class BootstrapSampler:
    """K support + F future + Q query examples per class (Irie & Schmidhuber 2023).

    Args as FewShotSampler (synchronous feedback), with ``n_future`` the extra labelled examples
    per class; every class needs ``k_shot + n_future + n_query`` examples.
    """

    def __init__(self, dataset, n_way: int, k_shot: int, n_future: int, n_query: int = 1, **sampler_kwargs):
        for name, value in (("k_shot", k_shot), ("n_future", n_future), ("n_query", n_query)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if sampler_kwargs.get("feedback", "synchronous") != "synchronous":
            raise ValueError("bootstrapping episodes are synchronous (labelled support and future, then "
                             "unlabelled queries); drop feedback= or set it to 'synchronous'")
        needed = k_shot + n_future + n_query
        try:
            self.sampler = FewShotSampler(dataset, n_way, k_shot + n_future, n_query, **sampler_kwargs)
        except TooFewExamples as error:
            raise ValueError(f"k_shot + n_future + n_query = {k_shot} + {n_future} + {n_query} = {needed} is larger "
                             f"than a class's examples ({error.available} examples of class {error.class_name!r}); "
                             "lower k_shot, n_future or n_query") from None
        self.n_way, self.k_shot, self.n_future, self.n_query = n_way, k_shot, n_future, n_query

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return self.sampler.frame_shape

    @property
    def num_classes(self) -> int:
        return self.n_way

    def state_dict(self) -> dict:
        """The inner FewShotSampler's state, with the split of its shots into support and future."""
        return dict(self.sampler.state_dict(), sampler=type(self).__name__, k_shot=self.k_shot,
                    n_future=self.n_future)

    def sample(self, episode_ids) -> BootstrapBatch:
        sampler = self.sampler
        ids = as_episode_ids(episode_ids, sampler.class_ids.device)
        _, examples = sampler.indices(ids)
        n, k, f = self.n_way, self.k_shot, self.n_future
        support_steps, support_targets = sampler.ordered(ids, examples[..., :k], STREAM_SUPPORT_ORDER)
        future_steps, future_targets = sampler.ordered(ids, examples[..., k:k + f], STREAM_FUTURE_ORDER)
        query_steps, query_targets = sampler.ordered(ids, examples[..., k + f:], STREAM_QUERY_ORDER)
        labelled = torch.cat([support_targets, future_targets], 1)
        _, _, labelled_shot = synchronous(labelled, labelled.shape[1], n)
        query_feedback, query_mask, _ = synchronous(query_targets, 0, n)

        def part(steps, targets, feedback, loss_mask, shot):
            return EpisodeBatch(inputs=sampler.frames(steps), feedback=feedback, targets=targets, loss_mask=loss_mask,
                                shot=shot, segment=torch.zeros_like(targets), episode_ids=ids, num_classes=n)

        no_loss = torch.zeros_like(labelled, dtype=torch.bool)
        return BootstrapBatch(
            support=part(support_steps, support_targets, support_targets, no_loss[:, :n * k], labelled_shot[:, :n * k]),
            future=part(future_steps, future_targets, future_targets, no_loss[:, n * k:], labelled_shot[:, n * k:]),
            query=part(query_steps, query_targets, query_feedback, query_mask, torch.full_like(query_targets, k + 1)))


class MultiTaskStream:
    """One sequence holding one segment from each sampler (e.g. Omniglot and Mini-ImageNet).

    Args:
        samplers: FewShotSamplers with the same ``n_way`` and frame shape (``frame_shape=(3, 84, 84)``
            puts Omniglot beside Mini-ImageNet); delayed feedback is the usual choice.
        shuffle: random segment order per episode. Default: True.
        min_segment_steps: trim each segment to a uniform random length in
            ``[min_segment_steps, its length]`` (keeping its first steps). Default: None, no trimming.
        seed, generator: randomness of the order and trimming. Default: seed 0.

    ``sample(ids)`` returns one EpisodeBatch; ``segment`` is the index of the sampler each step came
    from. Trimmed episodes are right-padded to the longest one: padding has ``segment = -1``,
    no loss, zero frames, unknown feedback and shot 0.
    """

    def __init__(self, samplers: list[FewShotSampler], *, shuffle: bool = True, min_segment_steps: int | None = None,
                 seed: int | None = None, generator: torch.Generator | None = None):
        if len(samplers) < 2:
            raise ValueError("a multi-task stream needs at least two samplers")
        if len({s.n_way for s in samplers}) > 1:
            raise ValueError(f"all samplers must share n_way (one label space), got {[s.n_way for s in samplers]}")
        _check_same_frames(samplers)
        shortest = min(s.num_steps for s in samplers)
        if min_segment_steps is not None and not 1 <= min_segment_steps <= shortest:
            raise ValueError(f"min_segment_steps must be in [1, {shortest}] (the shortest segment), got {min_segment_steps}")
        self.samplers, self.shuffle, self.min_segment_steps = samplers, shuffle, min_segment_steps
        self.rng = make_rng(seed, generator)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return self.samplers[0].frame_shape

    @property
    def num_classes(self) -> int:
        return self.samplers[0].n_way

    @property
    def num_shots(self) -> int:
        """Slots of a by-shot tally over every segment's shots (0 being padding)."""
        return max(s.num_shots for s in self.samplers)

    def state_dict(self) -> dict:
        """Each source's sampler state, the order and trimming settings and the seed."""
        return {"sampler": type(self).__name__, "sources": [s.state_dict() for s in self.samplers],
                "shuffle": self.shuffle, "min_segment_steps": self.min_segment_steps, "seed": self.rng.seed}

    def sample(self, episode_ids) -> EpisodeBatch:
        ids = as_episode_ids(episode_ids, self.samplers[0].class_ids.device)
        num_sources, batch = len(self.samplers), ids.shape[0]
        parts = [s.sample(_source_ids(ids, i, num_sources)) for i, s in enumerate(self.samplers)]
        full = torch.tensor([p.num_steps for p in parts], device=ids.device).expand(batch, -1)
        if self.min_segment_steps is None:
            lengths = full
        else:
            lengths = self.min_segment_steps + self.rng.randint(ids, STREAM_TRIM, full - self.min_segment_steps + 1)
        if self.shuffle:
            order = self.rng.permutation(ids, STREAM_SOURCE_ORDER, (num_sources,))
        else:
            order = torch.arange(num_sources, device=ids.device).expand(batch, -1)
        ordered_lengths = lengths.gather(1, order)
        starts = torch.zeros_like(lengths).scatter(1, order, ordered_lengths.cumsum(1) - ordered_lengths)
        total = int(lengths.sum(1).max())
        first = parts[0]
        out = EpisodeBatch(
            inputs=first.inputs.new_zeros(batch, total, *first.inputs.shape[2:]),
            feedback=first.feedback.new_full((batch, total), first.num_classes),
            targets=first.targets.new_zeros(batch, total),
            loss_mask=first.loss_mask.new_zeros(batch, total),
            shot=first.shot.new_zeros(batch, total),
            segment=first.segment.new_full((batch, total), PADDING_SEGMENT),
            episode_ids=ids, num_classes=first.num_classes)
        for source, part in enumerate(parts):
            steps = torch.arange(part.num_steps, device=ids.device).expand(batch, -1)
            keep = steps < lengths[:, source, None]  # [B, T_s]
            episode = torch.arange(batch, device=ids.device)[:, None].expand_as(steps)[keep]
            position = (starts[:, source, None] + steps)[keep]
            out.inputs[episode, position] = part.inputs[keep]
            out.feedback[episode, position] = part.feedback[keep]
            out.targets[episode, position] = part.targets[keep]
            out.loss_mask[episode, position] = part.loss_mask[keep]
            out.shot[episode, position] = part.shot[keep]
            out.segment[episode, position] = source
        return out


@dataclass
class ContinualBatch:
    """Tasks one after another, with what is needed to score every task after every later one.

    contexts[t]: the labelled support steps of the t-th task of each episode.
    queries[t]: that task's query steps (unknown feedback, loss on every step); run them from
        the state after contexts[t] (learning) and from the state after every later context
        (remembering: the ACL terms).
    task_ids: ``[B, num_tasks]`` which sampler supplied the t-th task of each episode.
    """

    contexts: list[EpisodeBatch]
    queries: list[EpisodeBatch]
    task_ids: torch.Tensor

    @property
    def num_tasks(self) -> int:
        return len(self.contexts)

    @property
    def batch_size(self) -> int:
        return self.task_ids.shape[0]

    def to(self, device, non_blocking: bool = False) -> "ContinualBatch":
        return ContinualBatch([c.to(device, non_blocking) for c in self.contexts],
                              [q.to(device, non_blocking) for q in self.queries], self.task_ids.to(device))

    def pin_memory(self) -> "ContinualBatch":
        return ContinualBatch([c.pin_memory() for c in self.contexts], [q.pin_memory() for q in self.queries],
                              self.task_ids.pin_memory())

    def __getitem__(self, index) -> "ContinualBatch":
        """Episodes ``index`` of every task."""
        rows = slice(index, index + 1) if isinstance(index, int) else index
        return ContinualBatch([c[index] for c in self.contexts], [q[index] for q in self.queries],
                              self.task_ids[rows])


class ContinualSampler:
    """Continual-learning episodes (ACL, docs/protocols.md section 7): one task per sampler, in sequence.

    Args:
        samplers: one synchronous FewShotSampler with ``n_query >= 1`` per task (a dataset each,
            e.g. Omniglot then Mini-ImageNet, or disjoint ``classes`` of one dataset, e.g. the
            five 2-way Split-MNIST tasks).
        class_incremental: task t uses labels ``t * n_way ..`` so the label space grows to
            ``num_tasks * n_way`` (the unknown label is then that number). Default: False.
        shuffle: random task order per episode (all samplers then need the same n_way, k_shot,
            n_query and frame shape). Default: False.
        seed, generator: randomness of the order. Default: seed 0.
    """

    def __init__(self, samplers: list[FewShotSampler], *, class_incremental: bool = False, shuffle: bool = False,
                 seed: int | None = None, generator: torch.Generator | None = None):
        if not samplers:
            raise ValueError("a continual stream needs at least one sampler")
        for i, s in enumerate(samplers):
            if s.feedback != "synchronous" or s.n_query < 1:
                raise ValueError(f"sampler {i} must be synchronous with n_query >= 1: the queries score the task "
                                 "after later tasks")
        if shuffle and len({(s.n_way, s.k_shot, s.n_query) for s in samplers}) > 1:
            raise ValueError("shuffle=True needs samplers with the same n_way, k_shot and n_query")
        _check_same_frames(samplers)  # one learner reads every task
        self.samplers, self.class_incremental, self.shuffle = samplers, class_incremental, shuffle
        self.rng = make_rng(seed, generator)

    @property
    def num_classes(self) -> int:
        n = [s.n_way for s in self.samplers]
        return sum(n) if self.class_incremental else max(n)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return self.samplers[0].frame_shape

    def state_dict(self) -> dict:
        """Each task's sampler state, the label layout, the order setting and the seed."""
        return {"sampler": type(self).__name__, "tasks": [s.state_dict() for s in self.samplers],
                "class_incremental": self.class_incremental, "shuffle": self.shuffle, "seed": self.rng.seed}

    def _relabel(self, part: EpisodeBatch, offset: int) -> EpisodeBatch:
        """Shift labels by ``offset`` and move the unknown label to the stream's label space."""
        unknown = part.feedback == part.num_classes
        feedback = torch.where(unknown, self.num_classes, part.feedback + offset)
        return replace(part, feedback=feedback, targets=part.targets + offset, num_classes=self.num_classes)

    def sample(self, episode_ids) -> ContinualBatch:
        ids = as_episode_ids(episode_ids, self.samplers[0].class_ids.device)
        num_tasks, batch = len(self.samplers), ids.shape[0]
        parts = [s.sample(_source_ids(ids, i, num_tasks)) for i, s in enumerate(self.samplers)]
        if self.shuffle:
            task_ids = self.rng.permutation(ids, STREAM_SOURCE_ORDER, (num_tasks,))
            stacked = {name: torch.stack([getattr(p, name) for p in parts], 1)  # [B, S, T, ...]
                       for name in ("inputs", "feedback", "targets", "loss_mask", "shot")}
            rows = torch.arange(batch, device=ids.device)
            parts = [EpisodeBatch(**{name: value[rows, task_ids[:, t]] for name, value in stacked.items()},
                                  segment=task_ids[:, t, None].expand(-1, parts[0].num_steps).clone(),
                                  episode_ids=ids, num_classes=parts[0].num_classes) for t in range(num_tasks)]
        else:
            task_ids = torch.arange(num_tasks, device=ids.device).expand(batch, -1)
            parts = [replace(p, segment=torch.full_like(p.segment, t)) for t, p in enumerate(parts)]
        contexts, queries, offset = [], [], 0
        for t, part in enumerate(parts):
            part = self._relabel(part, offset if self.class_incremental else 0)
            support = self.samplers[t].n_way * self.samplers[t].k_shot  # shuffled tasks share these sizes
            contexts.append(part.steps(0, support))
            queries.append(part.steps(support, part.num_steps))
            offset += self.samplers[t].n_way
        return ContinualBatch(contexts, queries, task_ids.clone())


SPLIT_MNIST_TASKS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))


def split_mnist(dataset, k_shot: int, n_query: int = 1, *, class_incremental: bool = False, seed: int | None = None,
                frame_shape: tuple[int, int, int] | None = None) -> ContinualSampler:
    """Split-MNIST streams: the five 2-way tasks 0/1, 2/3, 4/5, 6/7, 8/9 of a digit dataset (MNIST,
    MNIST5k: class ids are the digits), in that order, ``k_shot`` support and ``n_query`` query
    examples per class. Domain-incremental (Default): labels 0/1 in every task, which digit gets
    which drawn per episode; ``class_incremental``: task t's labels shifted to ``2t, 2t + 1``
    (10-way)."""
    if [str(d) for d in range(10)] != list(dataset.class_names):
        raise ValueError(f"Split-MNIST needs the ten digit classes '0' .. '9' in order, got {dataset!r}")
    samplers = [FewShotSampler(dataset, 2, k_shot, n_query, seed=seed, classes=list(digits), frame_shape=frame_shape)
                for digits in SPLIT_MNIST_TASKS]
    return ContinualSampler(samplers, class_incremental=class_incremental, seed=seed)
