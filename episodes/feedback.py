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


def _shots(targets: torch.Tensor, num_labelled: int, num_classes: int | None) -> torch.Tensor:
    """The shot of every step when the first ``num_labelled`` steps are the labelled ones:
    1 + the labelled steps of its class strictly before it, int64 ``[B, T]``."""
    batch, steps = targets.shape[:2]
    if num_classes is None:  # one regression function per episode: every step is its 'class'
        time = torch.arange(steps, device=targets.device)
        return (time.clamp_max(num_labelled) + 1).expand(batch, steps).clone()
    if num_labelled == 0:
        return torch.ones_like(targets)
    labelled = targets[:, :num_labelled, None].transpose(1, 2)  # [B, 1, L]
    # running count of each class over the labelled steps, time last: [B, classes, L]
    counts = targets.new_zeros(batch, num_classes, num_labelled).scatter_(1, labelled, 1).cumsum(2)
    shot = counts.gather(1, labelled).squeeze(1)  # a labelled step counts itself: prior + 1
    if num_labelled == steps:
        return shot
    after = counts[:, :, -1].gather(1, targets[:, num_labelled:]) + 1
    return torch.cat([shot, after], dim=1)


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
    return feedback, loss_mask, _shots(targets, num_support, num_classes)


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
    return feedback, loss_mask, _shots(targets, steps, num_classes)
