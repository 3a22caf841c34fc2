"""Feedback encoders: ordered targets -> what the learner sees, what it is scored on, and the shot.

Pure functions of the targets in sequence order (the samplers choose the order), so each
encoding can be checked step by step by hand. Classification targets are int64 ``[B, T]`` labels
in ``[0, num_classes)``; the unknown label is ``num_classes``. Regression targets are float
``[B, T, Dy]``; their feedback carries an extra last channel flagging unknown steps.

- ``synchronous``: step t shows ``(x_t, y_t)`` for the first ``num_support`` steps and
  ``(x_t, unknown)`` after; the loss is on the unknown (query) steps.
- ``delayed``: step t shows ``(x_t, y_{t-1})`` and ``y_{-1}`` is unknown; the loss is on every step.
"""
from __future__ import annotations

import torch

FEEDBACK_MODES = ("synchronous", "delayed")


def check_feedback_mode(feedback: str) -> str:
    if feedback not in FEEDBACK_MODES:
        raise ValueError(f"Unknown feedback {feedback!r}. Valid: {', '.join(FEEDBACK_MODES)}")
    return feedback


def _unknown(targets: torch.Tensor, steps: int, num_classes: int | None) -> torch.Tensor:
    """Feedback for ``steps`` steps with no label: ``[B, steps]`` or ``[B, steps, Dy + 1]``."""
    batch = targets.shape[0]
    if num_classes is not None:
        return targets.new_full((batch, steps), num_classes)
    unknown = targets.new_zeros(batch, steps, targets.shape[-1] + 1)
    unknown[..., -1] = 1.0
    return unknown


def _known(targets: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    """Feedback that shows the targets: unchanged labels, or vectors with a zero flag."""
    if num_classes is not None:
        return targets
    return torch.cat([targets, targets.new_zeros(*targets.shape[:-1], 1)], dim=-1)


def _prior_labelled(targets: torch.Tensor, labelled: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    """For each step, how many labelled steps of its class came strictly before it: ``[B, T]``."""
    weights = labelled.to(torch.int64)
    if num_classes is None:  # one regression function per episode: every step is its 'class'
        return weights.cumsum(1) - weights
    one_hot = torch.nn.functional.one_hot(targets, num_classes) * weights[..., None]
    before = one_hot.cumsum(1) - one_hot
    return before.gather(2, targets[..., None]).squeeze(2)


def synchronous(targets: torch.Tensor, num_support: int, num_classes: int | None = None):
    """Support steps labelled, query steps unknown; loss on queries.

    Args:
        targets: ``[B, T]`` int64 labels or ``[B, T, Dy]`` float, support steps first.
        num_support: the number of leading support steps.
        num_classes: label-space size; ``None`` for regression.
    Returns:
        ``(feedback, loss_mask [B, T] bool, shot [B, T] int64)``.
    """
    steps = targets.shape[1]
    is_support = torch.arange(steps, device=targets.device) < num_support
    unknown = _unknown(targets, steps - num_support, num_classes)
    feedback = torch.cat([_known(targets[:, :num_support], num_classes), unknown], dim=1)
    loss_mask = (~is_support).expand(targets.shape[0], steps).clone()
    shot = _prior_labelled(targets, is_support.expand(targets.shape[0], steps), num_classes) + 1
    return feedback, loss_mask, shot


def delayed(targets: torch.Tensor, num_classes: int | None = None):
    """Each step shows the previous step's target; loss on every step.

    Args:
        targets: ``[B, T]`` int64 labels or ``[B, T, Dy]`` float.
        num_classes: label-space size; ``None`` for regression.
    Returns:
        ``(feedback, loss_mask [B, T] bool, shot [B, T] int64)``.
    """
    batch, steps = targets.shape[:2]
    feedback = torch.cat([_unknown(targets, 1, num_classes), _known(targets[:, :-1], num_classes)], dim=1)
    loss_mask = torch.ones(batch, steps, dtype=torch.bool, device=targets.device)
    shot = _prior_labelled(targets, loss_mask, num_classes) + 1
    return feedback, loss_mask, shot
