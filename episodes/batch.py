"""`EpisodeBatch`: the one format between `episodes` and the learners."""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

PADDING_SEGMENT = -1
PADDING_TOKEN = -1  # the id of a padding step in token inputs


@dataclass
class EpisodeBatch:
    """A batch of B episodes laid out as sequences of T steps.

    Fields:
        inputs: ``[B, T, C, H, W]`` uint8 frames (convert to float on the device), ``[B, T, Dx]``
            float for regression, or ``[B, T]`` int64 token ids (``PADDING_TOKEN`` on padding).
        feedback: what the learner is shown beside each input. Classification: ``[B, T]`` int64
            label ids where ``num_classes`` (the ``unknown_label``) means no label is given.
            Regression: ``[B, T, Dy + 1]`` float, the target followed by an unknown flag
            (1.0 and zero target where no target is given).
        targets: what the learner must predict, ``[B, T]`` int64 or ``[B, T, Dy]`` float.
        loss_mask: ``[B, T]`` bool, the steps the loss is taken on.
        shot: ``[B, T]`` int64, 1 + the number of labelled examples of the step's class shown
            before it: the k-th sighting in delayed feedback and in a synchronous support set;
            ``k_shot + 1`` for synchronous queries. 0 on padding.
        segment: ``[B, T]`` int64 segment (task or source) id, 0 for single-task episodes,
            ``PADDING_SEGMENT`` (-1) on right padding.
        episode_ids: ``[B]`` int64; the same id and seed always give the same episode.
        num_classes: size of the label space (``None`` for regression).
    """

    inputs: torch.Tensor
    feedback: torch.Tensor
    targets: torch.Tensor
    loss_mask: torch.Tensor
    shot: torch.Tensor
    segment: torch.Tensor
    episode_ids: torch.Tensor
    num_classes: int | None = None

    @property
    def unknown_label(self) -> int:
        """The feedback id meaning 'no label given' (classification only)."""
        if self.num_classes is None:
            raise AttributeError("regression batches flag unknown feedback in the last feedback channel")
        return self.num_classes

    @property
    def batch_size(self) -> int:
        return self.inputs.shape[0]

    @property
    def num_steps(self) -> int:
        return self.inputs.shape[1]

    def _map(self, fn) -> "EpisodeBatch":
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return EpisodeBatch(**{k: fn(v) if isinstance(v, torch.Tensor) else v for k, v in values.items()})

    def to(self, device, non_blocking: bool = False) -> "EpisodeBatch":
        """Every tensor moved to ``device``."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "EpisodeBatch":
        """Every tensor in pinned memory (called by ``DataLoader(pin_memory=True)``)."""
        return self._map(lambda t: t.pin_memory())

    def __getitem__(self, index) -> "EpisodeBatch":
        """Episodes ``index`` (an int, slice or index tensor over B)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return self._map(lambda t: t[index])

    def steps(self, start: int, stop: int) -> "EpisodeBatch":
        """Steps ``start .. stop - 1`` of every episode."""
        return self._map(lambda t: t if t is self.episode_ids else t[:, start:stop])


def concatenate_steps(parts: list[EpisodeBatch]) -> EpisodeBatch:
    """One EpisodeBatch whose steps are those of ``parts`` (episodes of the same ids) one after another."""
    first = parts[0]
    return EpisodeBatch(**{f.name: torch.cat([getattr(p, f.name) for p in parts], 1) for f in fields(first)
                           if f.name not in ("episode_ids", "num_classes")},
                        episode_ids=first.episode_ids, num_classes=first.num_classes)


def token_episodes(episode_ids: torch.Tensor, tokens: list[list[int]], targets: list[list[int]],
                   scored: list[list[bool]]) -> EpisodeBatch:
    """Token sequences of different lengths as one EpisodeBatch, right-padded to the longest:
    inputs ``[B, T]`` int64 ids (``PADDING_TOKEN`` on padding), no feedback, targets ``[B, T]``,
    the loss mask ``scored`` (never on padding), ``shot`` the position ``1 .. length``, segment 0
    (``PADDING_SEGMENT`` on padding) and ``num_classes=None`` (no label is fed back)."""
    B, T = len(tokens), max(map(len, tokens))
    inputs = torch.full((B, T), PADDING_TOKEN, dtype=torch.int64)
    target = torch.zeros(B, T, dtype=torch.int64)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, (sequence, labels, scores) in enumerate(zip(tokens, targets, scored)):
        inputs[b, :len(sequence)] = torch.tensor(sequence, dtype=torch.int64)
        target[b, :len(labels)] = torch.tensor(labels, dtype=torch.int64)
        mask[b, :len(scores)] = torch.tensor(scores, dtype=torch.bool)
    real = inputs != PADDING_TOKEN
    position = torch.arange(1, T + 1).expand(B, T)
    return EpisodeBatch(inputs=inputs, feedback=torch.zeros(B, T, 0), targets=target, loss_mask=mask & real,
                        shot=position.masked_fill(~real, 0),
                        segment=torch.zeros(B, T, dtype=torch.int64).masked_fill(~real, PADDING_SEGMENT),
                        episode_ids=episode_ids, num_classes=None)
