"""Masked episode losses and their metrics: synchronous feedback scores the queries, delayed feedback
every step, regression the masked steps by MSE; all read the batch's ``loss_mask``. The
bootstrapping objective (Irie & Schmidhuber 2023) scores one query from two states, the continual
(ACL) objective every task's queries after each later task."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from episodes import BootstrapBatch, ContinualBatch, EpisodeBatch
from episodes.batch import concatenate_steps


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


def check_outputs(outputs: torch.Tensor, batch: EpisodeBatch) -> None:
    """A learner's outputs must be ``[B, T, Dy]`` like the regression targets, or ``[B, T, N]`` logits
    for ``[B, T]`` class targets: a ValueError naming the expected shape, never a broadcast."""
    B, T = batch.targets.shape[:2]
    expected = tuple(batch.targets.shape) if batch.num_classes is None else (B, T, "N")
    if outputs.dim() != 3 or tuple(outputs.shape[:2]) != (B, T) or \
            (batch.num_classes is None and tuple(outputs.shape) != tuple(batch.targets.shape)):
        what = "regression targets" if batch.num_classes is None else "logits"
        raise ValueError(f"the learner's outputs have shape {tuple(outputs.shape)}; expected {tuple(expected)} for "
                         f"this batch ({what})")


def episode_loss(outputs: torch.Tensor, batch: EpisodeBatch, num_shots: int) -> EpisodeLoss:
    """Cross-entropy (classification, ``outputs [B, T, N]`` logits) or MSE averaged over the target
    dims (regression, ``outputs [B, T, Dy]``) on the steps of ``batch.loss_mask``.

    ``num_shots`` sizes the by-shot tallies (shot indices ``0 .. num_shots - 1``; larger ones raise).
    """
    check_outputs(outputs, batch)
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


BOOTSTRAP_TARGETS = ("logits", "state")


@dataclass
class BootstrapLoss:
    """The bootstrapping objective of a batch and its parts.

    Fields:
        loss: ``main_weight main + future_weight future + bootstrap_weight bootstrap`` (carries the graph).
        main: cross-entropy of the queries read from S_K (the K-shot prediction p_K).
        future: cross-entropy of the same queries read from S_{K+F} (p_{K+F}; 0 when not computed).
        bootstrap: the pull of S_K's prediction towards S_{K+F}'s: ``KL(stopgrad(p_{K+F}) || p_K)``
            per query, or the summed MSE between the layer states S_K and stopgrad(S_{K+F}).
        student_correct, teacher_correct: ``[B]`` float, correct queries from S_K and from S_{K+F}
            (teacher: 0 when not computed).
        count: ``[B]`` float, the queries of each episode.
    """

    loss: torch.Tensor
    main: torch.Tensor
    future: torch.Tensor
    bootstrap: torch.Tensor
    student_correct: torch.Tensor
    teacher_correct: torch.Tensor
    count: torch.Tensor


def check_bootstrap_weights(weights) -> tuple[float, float, float]:
    """``(main, future, bootstrap)`` as floats; negative or not three values raise a ValueError."""
    weights = tuple(float(w) for w in weights)
    if len(weights) != 3 or min(weights) < 0 or weights[0] + weights[1] + weights[2] == 0:
        raise ValueError(f"bootstrap weights are three values >= 0, not all 0 (main, future, bootstrap; the "
                         f"authors use 1, 1, 10), got {list(weights)}")
    return weights


def teacher_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(teacher) || softmax(student))`` per row of ``[N, C]`` logits, the teacher detached: ``[N]``."""
    student, teacher = F.log_softmax(student_logits.float(), -1), F.log_softmax(teacher_logits.detach().float(), -1)
    return (teacher.exp() * (teacher - student)).sum(-1)


def state_tensors(state) -> list[torch.Tensor]:
    """The tensors of a learner's nested state (a list of layer states, each a tensor or a tuple), in order."""
    if isinstance(state, torch.Tensor):
        return [state]
    return [tensor for part in state for tensor in state_tensors(part)]


def state_distance(student_state, teacher_state) -> torch.Tensor:
    """Sum over the state's tensors of ``mean((S_K - stopgrad(S_{K+F}))^2)`` (the authors' weight-matching
    variant). States whose tensors differ in shape (attention's growing cache) raise a ValueError."""
    student, teacher = state_tensors(student_state), state_tensors(teacher_state)
    if [s.shape for s in student] != [t.shape for t in teacher]:
        raise ValueError("bootstrap_target='state' matches fixed-size states (fast weights, LSTM cells); this "
                         "learner's state changes size with the context (attention's key/value cache): use "
                         "bootstrap_target='logits'")
    return sum(F.mse_loss(s.float(), t.detach().float()) for s, t in zip(student, teacher))


def bootstrap_loss(model, batch: BootstrapBatch, weights=(1.0, 1.0, 10.0), target: str = "logits") -> BootstrapLoss:
    """The bootstrapping objective of a SequenceLearner on a BootstrapBatch.

    Every frame goes through the backbone once (``model.embed`` of ``batch.sequence()``); the layers
    read the support to S_K, the queries from S_K (p_K), the future from S_K to S_{K+F} (the saved
    state, not a second pass over the support) and the queries again from S_{K+F} (p_{K+F}).

    Args:
        model: a learner with ``embed(batch)`` and ``read(h, state)`` (a SequenceLearner).
        batch: a BootstrapBatch (a plain EpisodeBatch raises a TypeError).
        weights: ``(main, future, bootstrap)`` weights, each >= 0. Default: the authors' (1, 1, 10).
            With ``future = bootstrap = 0`` the future is not read: plain K-shot meta-training.
        target: ``logits`` (KL between the two predictions) or ``state`` (MSE between the states).
    """
    if not isinstance(batch, BootstrapBatch):
        raise TypeError(f"the bootstrap loss reads a BootstrapBatch (support, future, query; from a "
                        f"BootstrapSampler), got {type(batch).__name__}")
    if target not in BOOTSTRAP_TARGETS:
        raise ValueError(f"Unknown bootstrap target {target!r}. Valid: {', '.join(BOOTSTRAP_TARGETS)}")
    main_weight, future_weight, bootstrap_weight = check_bootstrap_weights(weights)
    with_teacher = future_weight > 0 or bootstrap_weight > 0
    query = batch.query
    parts = [batch.support, batch.future, query] if with_teacher else [batch.support, query]
    sizes = [part.num_steps for part in parts]
    embedded = model.embed(concatenate_steps(parts))  # [B, sum(sizes), d_model]
    h = embedded.split(sizes, 1)
    _, support_state = model.read(h[0])
    student_logits, _ = model.read(h[-1], support_state)
    mask, targets = query.loss_mask, query.targets[query.loss_mask]
    student = student_logits[mask].float()
    main = F.cross_entropy(student, targets)
    count = mask.float().sum(1)

    def correct(logits):
        hits = torch.zeros_like(mask, dtype=torch.float)
        hits[mask] = (logits.argmax(-1) == targets).float()
        return hits.sum(1)

    zero = main.new_zeros(())
    future, bootstrap, teacher_correct = zero, zero, torch.zeros_like(count)
    if with_teacher:
        _, future_state = model.read(h[1], support_state)
        teacher_logits, _ = model.read(h[2], future_state)
        teacher = teacher_logits[mask].float()
        future = F.cross_entropy(teacher, targets)
        bootstrap = teacher_kl(student, teacher).mean() if target == "logits" else state_distance(support_state,
                                                                                                   future_state)
        teacher_correct = correct(teacher.detach())
    loss = main_weight * main + future_weight * future + bootstrap_weight * bootstrap
    return BootstrapLoss(loss=loss, main=main, future=future, bootstrap=bootstrap,
                         student_correct=correct(student.detach()), teacher_correct=teacher_correct, count=count)


@dataclass
class ContinualLoss:
    """The continual (ACL) objective of a batch of task streams and the forgetting tallies.

    Fields:
        loss: the weighted mean of the scored terms (carries the graph).
        terms: ``[T, T]`` cross-entropy of task s's queries read after tasks ``1 .. t`` (row s,
            column t; NaN where not read: s > t, or s < t when earlier tasks are not read).
        correct, count: ``[B, T, T]`` float, correct and scored queries of each cell, per episode.
    """

    loss: torch.Tensor
    terms: torch.Tensor
    correct: torch.Tensor
    count: torch.Tensor


def continual_loss(model, batch: ContinualBatch, *, backward: bool = True, first_task_scale: float = 1.0,
                   read_earlier: bool | None = None) -> ContinualLoss:
    """The ACL objective (Irie, Csordas & Schmidhuber 2025) of a SequenceLearner on a ContinualBatch.

    The contexts of tasks ``1 .. T`` are read one after another, the state carried; after task t the
    queries of task t (learning) and, with ``backward``, of every earlier task s < t (remembering:
    the ACL terms) are read from that state, each a branch that does not change it. The loss is
    the mean of these cross-entropies, the first task's learning term (task 1 after task 1)
    weighted by ``first_task_scale`` (the authors' ``loss_scale_task_a``). Every frame goes through
    the backbone once.

    Args:
        read_earlier: read the earlier tasks' queries even when they are not in the loss (for the
            forgetting matrix). Default: ``backward``.
    """
    if not isinstance(batch, ContinualBatch):
        raise TypeError(f"the continual loss reads a ContinualBatch (tasks one after another; from a "
                        f"ContinualSampler), got {type(batch).__name__}")
    read_earlier = backward if read_earlier is None else read_earlier
    num_tasks = batch.num_tasks
    parts = batch.contexts + batch.queries
    h = model.embed(concatenate_steps(parts)).split([part.num_steps for part in parts], 1)
    first = batch.queries[0]
    terms = torch.full((num_tasks, num_tasks), float("nan"), device=first.targets.device)
    correct = torch.zeros(first.batch_size, num_tasks, num_tasks, device=first.targets.device)
    count = torch.zeros_like(correct)
    scored, weights, state = [], [], None
    for t in range(num_tasks):
        _, state = model.read(h[t], state)
        for s in range(t + 1) if read_earlier else (t,):
            query = batch.queries[s]
            logits, _ = model.read(h[num_tasks + s], state)
            mask = query.loss_mask
            term = F.cross_entropy(logits[mask].float(), query.targets[mask])
            terms[s, t] = term.detach()
            hits = torch.zeros_like(mask, dtype=torch.float)
            hits[mask] = (logits[mask].argmax(-1) == query.targets[mask]).float()
            correct[:, s, t], count[:, s, t] = hits.sum(1), mask.float().sum(1)
            if s == t or backward:
                scored.append(term)
                weights.append(first_task_scale if s == t == 0 else 1.0)
    loss = sum(w * term for w, term in zip(weights, scored)) / len(scored)
    return ContinualLoss(loss=loss, terms=terms, correct=correct.detach(), count=count)
