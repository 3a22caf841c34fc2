"""N-way K-shot episode sampling on index tensors, many episodes per call.

Episode ``i`` depends only on ``(seed, i)`` (see ``episodes.rng``): batch size, DataLoader workers,
ranks and device never change it. Classes and examples are chosen as uniform subsets in uniform
random order (Floyd's algorithm, or one sort of random keys when a quarter or more of a population
is drawn); the position of a class in that order is its label in the episode, so labels are a
uniform random permutation per episode. Pixels are gathered last, once per step.
"""
from __future__ import annotations

import hashlib

import torch

from episodes.batch import EpisodeBatch
from episodes.datasets.base import ImageClasses
from episodes.feedback import check_feedback_mode, delayed, synchronous
from episodes.frames import convert_frames, gather_frames
from episodes.rng import EpisodeRNG

# One stream of random numbers per sampling step (see EpisodeRNG.bits); choose_distinct uses
# streams 2s and 2s + 1 for its subset and its order.
STREAM_CLASSES = 1
STREAM_EXAMPLES = 2
STREAM_SUPPORT_ORDER = 10
STREAM_QUERY_ORDER = 11
STREAM_FUTURE_ORDER = 12


def as_episode_ids(episode_ids, device=None) -> torch.Tensor:
    """A ``range``, list or 1-D integer tensor of episode ids -> int64 ``[B]``."""
    if isinstance(episode_ids, range):
        ids = torch.arange(episode_ids.start, episode_ids.stop, episode_ids.step, dtype=torch.int64)
    else:
        ids = torch.as_tensor(episode_ids)
    if ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"episode_ids must be a range or a 1-D integer tensor, got {ids.dtype} {tuple(ids.shape)}")
    if ids.numel() and int(ids.min()) < 0:
        raise ValueError("episode_ids must be >= 0")
    return ids.to(device=device, dtype=torch.int64)


def make_rng(seed: int | None, generator: torch.Generator | None) -> EpisodeRNG:
    """An EpisodeRNG from a seed, or from one draw of a ``torch.Generator``."""
    if generator is not None:
        if seed is not None:
            raise ValueError("give seed or generator, not both")
        return EpisodeRNG.from_generator(generator)
    return EpisodeRNG(0 if seed is None else seed)


SORT_FACTOR = 4  # choosing over a quarter of a population: one sort beats Floyd's `count` sequential steps


def choose_distinct(rng: EpisodeRNG, ids: torch.Tensor, stream: int, population, count: int, *,
                    shape: tuple = (), max_population: int | None = None) -> torch.Tensor:
    """``count`` distinct integers from ``[0, population)`` per element, in uniform random order.

    Args:
        ids: ``[B]`` episode ids.
        population: an int, the same size for every element of ``[B, *shape]``; or int64
            ``[B, *shape]`` sizes, each ``>= count``, with ``max_population`` an upper bound of them.
        shape: the element shape when ``population`` is an int. Default: ``()``.
        max_population: picks the algorithm: up to ``SORT_FACTOR * count`` the first ``count`` of a
            random permutation, above it Floyd's. Default: ``population`` when it is an int.
    Returns:
        int64 ``[B, *shape, count]``.
    """
    same_size = isinstance(population, int)
    if same_size:
        max_population = population
    else:
        shape = tuple(population.shape[1:])
    if max_population <= SORT_FACTOR * count:
        # random sort keys (32 random bits above the value, as in EpisodeRNG.permutation); values
        # beyond an element's population get a top bit so they sort last
        values = torch.arange(max_population, device=ids.device)
        keys = (rng.bits(ids, 2 * stream, (*shape, max_population)) << 20) | values
        if not same_size:
            keys = torch.where(values < population[..., None], keys, keys | (1 << 52))
        return keys.argsort(dim=-1)[..., :count]
    # Floyd: step s draws t uniform in [0, j] with j = population - count + s, and takes j if t is taken
    u = rng.uniform(ids, 2 * stream, (*shape, count))
    first = population - count if same_size else population[..., None] - count
    j = torch.arange(count, device=ids.device) + first  # [count] or [B, *shape, count]
    chosen = torch.minimum((u * (j + 1)).to(torch.int64), j)  # every step's draw, [B, *shape, count]
    for step in range(1, count):  # collisions resolve in order
        taken = (chosen[..., :step] == chosen[..., step, None]).any(-1)
        chosen[..., step] = torch.where(taken, j[..., step], chosen[..., step])
    order = rng.permutation(ids, 2 * stream + 1, (*shape, count))  # Floyd's order is not uniform
    return chosen.gather(-1, order)


class TooFewExamples(ValueError):
    """A class holds fewer examples than an episode takes of it: ``available`` of class ``class_name``."""

    def __init__(self, message: str, available: int, class_name: str):
        super().__init__(message)
        self.available, self.class_name = available, class_name


class FewShotSampler:
    """Episodes of ``n_way`` classes with ``k_shot`` support (+ ``n_query`` query) examples each.

    Args:
        dataset: the ImageClasses of one split; the sampler draws from its classes only.
        n_way: classes per episode (labels ``0 .. n_way-1``, permuted per episode).
        k_shot: support examples per class.
        n_query: query examples per class (synchronous feedback only). Default: 0.
        feedback: ``"synchronous"`` (support in random order, then queries in random order,
            loss on queries) or ``"delayed"`` (the ``n_way * k_shot`` examples in random order,
            each step shows the previous label, loss on every step). Default: synchronous.
        seed, generator: the randomness (a seed, or one draw from a ``torch.Generator``). Default: seed 0.
        classes: restrict to these class ids of ``dataset`` (e.g. the two digits of one
            Split-MNIST task). Default: all.
        frame_shape: convert frames to ``(C, H, W)`` (1 <-> 3 channels, resize). Default: as stored.

    ``sample(range(0, 64))`` returns the EpisodeBatch of episodes 0..63 on the dataset's device
    (``dataset.to("cuda")`` samples on the GPU).
    """

    def __init__(self, dataset: ImageClasses, n_way: int, k_shot: int, n_query: int = 0, *,
                 feedback: str = "synchronous", seed: int | None = None, generator: torch.Generator | None = None,
                 classes=None, frame_shape: tuple[int, int, int] | None = None):
        self.feedback = check_feedback_mode(feedback)
        for name, value, low in (("n_way", n_way, 1), ("k_shot", k_shot, 1), ("n_query", n_query, 0)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if feedback == "delayed" and n_query:
            raise ValueError("delayed feedback scores every step, so it has no queries: set n_query=0 "
                             "and choose the sequence length with k_shot")
        device = dataset.images.device
        if classes is None:
            class_ids = torch.arange(dataset.num_classes, device=device)
        else:
            class_ids = torch.as_tensor(classes, dtype=torch.int64, device=device).flatten()
            if class_ids.unique().numel() != class_ids.numel() or int(class_ids.min()) < 0 \
                    or int(class_ids.max()) >= dataset.num_classes:
                raise ValueError(f"classes must be distinct ids in [0, {dataset.num_classes}), got {classes!r}")
        if n_way > class_ids.numel():
            raise ValueError(f"n_way={n_way} is larger than the {class_ids.numel()} classes available "
                             f"in {dataset!r}; lower n_way or use a larger split")
        per_class = k_shot + n_query
        counts = dataset.class_counts[class_ids]
        smallest = int(counts.argmin())
        if per_class > int(counts[smallest]):
            name = dataset.class_names[int(class_ids[smallest])]
            raise TooFewExamples(f"k_shot + n_query = {per_class} is larger than the {int(counts[smallest])} examples "
                                 f"of class {name!r}; lower k_shot or n_query", int(counts[smallest]), name)
        self.dataset, self.n_way, self.k_shot, self.n_query = dataset, n_way, k_shot, n_query
        self.convert_to = None if frame_shape is None or tuple(frame_shape) == dataset.frame_shape \
            else tuple(frame_shape)
        self.rng = make_rng(seed, generator)
        self.class_ids = class_ids
        self.largest_class = int(counts.max())
        self.equal_classes = self.largest_class == int(counts[smallest])
        # label -> indices table: example j of class c is dataset index by_class[offsets[c] + j]
        self.by_class = dataset.labels.argsort(stable=True)
        self.offsets = dataset.class_counts.cumsum(0) - dataset.class_counts

    @property
    def num_steps(self) -> int:
        """T, the length of one episode."""
        return self.n_way * (self.k_shot + self.n_query)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the frames in the batches (after any conversion)."""
        return self.convert_to or self.dataset.frame_shape

    @property
    def num_classes(self) -> int:
        """Size of the episodes' label space: ``n_way`` (the feedback adds the unknown label)."""
        return self.n_way

    @property
    def num_shots(self) -> int:
        """Slots of a by-shot tally: shot indices run to ``k_shot + 1`` (a synchronous query;
        ``k_shot`` under delayed feedback), 0 being padding."""
        return self.k_shot + (2 if self.feedback == "synchronous" else 1)

    def state_dict(self) -> dict:
        """What fixes episode ``i``: the dataset (its split, classes and size), the episode shape,
        the feedback and the seed. Two samplers with equal state dicts give equal episodes."""
        names = hashlib.sha256("\n".join(self.dataset.class_names).encode()).hexdigest()[:16]
        return {"sampler": type(self).__name__, "dataset": type(self.dataset).__name__,
                "dataset_split": getattr(self.dataset, "split", None), "dataset_classes": names,
                "dataset_images": len(self.dataset), "classes": self.class_ids.tolist(), "n_way": self.n_way,
                "k_shot": self.k_shot, "n_query": self.n_query, "feedback": self.feedback,
                "frame_shape": list(self.frame_shape), "seed": self.rng.seed}

    def indices(self, episode_ids) -> tuple[torch.Tensor, torch.Tensor]:
        """The draw behind the episodes, before any ordering into a sequence.

        Returns:
            classes: int64 ``[B, n_way]`` dataset class ids; position = label in the episode.
            examples: int64 ``[B, n_way, k_shot + n_query]`` dataset indices; the first
                ``k_shot`` of each class are its support.
        """
        ids = as_episode_ids(episode_ids, self.class_ids.device)
        classes = self.class_ids[choose_distinct(self.rng, ids, STREAM_CLASSES, self.class_ids.numel(), self.n_way)]
        per_class = self.k_shot + self.n_query
        if self.equal_classes:
            within = choose_distinct(self.rng, ids, STREAM_EXAMPLES, self.largest_class, per_class,
                                     shape=(self.n_way,))
        else:
            within = choose_distinct(self.rng, ids, STREAM_EXAMPLES, self.dataset.class_counts[classes], per_class,
                                     max_population=self.largest_class)
        examples = self.by_class[self.offsets[classes][..., None] + within]
        return classes, examples

    def ordered(self, ids: torch.Tensor, examples: torch.Tensor, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Examples ``[B, n_way, s]`` laid out in a uniform random order of their ``n_way * s`` steps.

        Returns ``(steps, targets)``: dataset indices and episode labels, both int64 ``[B, n_way * s]``.
        """
        batch, n, s = examples.shape
        labels = torch.arange(n, device=ids.device)[:, None].expand(batch, n, s).reshape(batch, -1)
        order = self.rng.permutation(ids, stream, (n * s,))
        return examples.reshape(batch, -1).gather(1, order), labels.gather(1, order)

    def frames(self, steps: torch.Tensor) -> torch.Tensor:
        """uint8 frames ``[B, T, C, H, W]`` of the dataset indices ``steps [B, T]``."""
        frames = gather_frames(self.dataset.images, steps)
        return frames if self.convert_to is None else convert_frames(frames, self.convert_to)

    def sample(self, episode_ids) -> EpisodeBatch:
        """The EpisodeBatch of ``episode_ids`` (a range or 1-D int tensor)."""
        ids = as_episode_ids(episode_ids, self.class_ids.device)
        _, examples = self.indices(ids)
        n, k = self.n_way, self.k_shot
        steps, targets = self.ordered(ids, examples[..., :k], STREAM_SUPPORT_ORDER)
        if self.n_query:
            query_steps, query_targets = self.ordered(ids, examples[..., k:], STREAM_QUERY_ORDER)
            steps, targets = torch.cat([steps, query_steps], 1), torch.cat([targets, query_targets], 1)
        if self.feedback == "synchronous":
            feedback, loss_mask, shot = synchronous(targets, n * k, n)
        else:
            feedback, loss_mask, shot = delayed(targets, n)
        return EpisodeBatch(inputs=self.frames(steps), feedback=feedback, targets=targets, loss_mask=loss_mask,
                            shot=shot, segment=torch.zeros_like(targets), episode_ids=ids, num_classes=n)
