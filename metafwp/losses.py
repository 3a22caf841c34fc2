"""Masked episode losses and their metrics: synchronous feedback scores the queries, delayed feedback
every step, regression the masked steps by MSE; all read the batch's ``loss_mask``."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from episodes import EpisodeBatch


@dataclass
class EpisodeLoss:
    """The loss to minimise and what it scored, summed so that ranks and batches add up.

    Fields:
        loss: scalar mean over the scored steps (carries the graph).
        loss_sum: detached sum of the per-step losses over the scored steps.
        correct, count: ``[num_shots]`` float, correct predictions and scored steps by shot index
            (classification; for regression ``correct`` stays 0).
        episode_correct, episode_count: ``[B]`` float, per episode (for confidence intervals).
    """

    loss: torch.Tensor
    loss_sum: torch.Tensor
    correct: torch.Tensor
    count: torch.Tensor
    episode_correct: torch.Tensor
    episode_count: torch.Tensor


def episode_loss(outputs: torch.Tensor, batch: EpisodeBatch, num_shots: int) -> EpisodeLoss:
    """Cross-entropy (classification, ``outputs [B, T, N]`` logits) or MSE averaged over the target
    dims (regression, ``outputs [B, T, Dy]``) on the steps of ``batch.loss_mask``.

    ``num_shots`` sizes the by-shot tallies (shot indices ``0 .. num_shots - 1``; larger ones raise).
    """
    mask = batch.loss_mask
    if batch.num_classes is None:
        per_step = (outputs.float() - batch.targets).square().mean(-1)
        hits = torch.zeros_like(per_step)
    else:
        per_step = F.cross_entropy(outputs.float().flatten(0, 1), batch.targets.flatten(),
                                   reduction="none").view_as(mask)
        hits = (outputs.argmax(-1) == batch.targets).float()
    weights = mask.float()
    scored = weights.sum()
    loss = (per_step * weights).sum() / scored.clamp_min(1)
    shots = batch.shot[mask]
    if shots.numel() and int(shots.max()) >= num_shots:
        raise ValueError(f"a scored step has shot index {int(shots.max())}, beyond num_shots={num_shots}")
    hits, per_step = hits.detach(), per_step.detach()
    return EpisodeLoss(
        loss=loss,
        loss_sum=(per_step * weights).sum(),
        correct=torch.zeros(num_shots, device=mask.device).index_add_(0, shots, hits[mask]),
        count=torch.zeros(num_shots, device=mask.device).index_add_(0, shots, weights[mask]),
        episode_correct=(hits * weights).sum(1),
        episode_count=weights.sum(1),
    )
