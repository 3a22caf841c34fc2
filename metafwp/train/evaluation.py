"""Evaluation on a fixed, seeded set of held-out episodes: mean accuracy with a 95% confidence interval."""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import replace

import torch
import torch.nn as nn
from tqdm import tqdm

from episodes import EpisodeStream
from metafwp.losses import episode_loss
from metafwp.train.build import build_model
from metafwp.train.config import RunConfig
from metafwp.train.data import build_sampler, frame_shape, num_shots


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA when asked; float32 elsewhere."""
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def confidence_interval(values: torch.Tensor) -> tuple[float, float]:
    """``(mean, 1.96 * std / sqrt(n))`` of ``values [n]`` (std with Bessel's correction)."""
    n = values.numel()
    std = values.double().std().item() if n > 1 else 0.0
    return values.double().mean().item(), 1.96 * std / math.sqrt(n)


@torch.no_grad()
def evaluate(model: nn.Module, sampler, num_episodes: int, batch_size: int, num_shots: int,
             device: torch.device, bf16: bool = False, progress: bool = False, desc: str = "evaluating") -> dict:
    """Accuracy of ``model`` on episodes ``0 .. num_episodes - 1`` of ``sampler``, in percent.

    Returns ``{"accuracy", "ci95", "loss", "episodes", "by_shot": {shot: accuracy}}``; the same
    sampler seed gives the same episodes to every model, so results sit side by side.
    """
    was_training = model.training
    model.eval()
    accuracies, loss_sum, seen = [], 0.0, 0
    correct = torch.zeros(num_shots, dtype=torch.float64)
    count = torch.zeros(num_shots, dtype=torch.float64)
    num_batches = math.ceil(num_episodes / batch_size)
    stream = EpisodeStream(sampler, batch_size, num_batches=num_batches, rank=0, world_size=1)
    for batch in tqdm(stream, desc=desc, unit="batch", disable=not progress, leave=False):
        batch = batch[:num_episodes - seen].to(device)  # the last batch may hold fewer
        seen += batch.batch_size
        with autocast(device, bf16):
            outputs, _ = model(batch)
        result = episode_loss(outputs, batch, num_shots)
        accuracies.append((result.episode_correct / result.episode_count).cpu())
        loss_sum += result.loss_sum.item()
        correct += result.correct.cpu().double()
        count += result.count.cpu().double()
    model.train(was_training)
    mean, ci95 = confidence_interval(torch.cat(accuracies))
    by_shot = {shot: 100 * (correct[shot] / count[shot]).item() for shot in range(num_shots) if count[shot] > 0}
    return {"accuracy": 100 * mean, "ci95": 100 * ci95, "loss": loss_sum / count.sum().item(),
            "episodes": num_episodes, "by_shot": by_shot}


def learner_name(config: RunConfig) -> str:
    """``srwm``, ``delta``, ``lstm``, ... for sequence learners, else the model kind."""
    return config.model.mixer if config.model.kind == "sequence" else config.model.kind


def evaluate_on_test_split(config: RunConfig, model: nn.Module, test_set, device: torch.device,
                           progress: bool = False, others: dict[str, nn.Module] | None = None) -> dict[str, dict]:
    """``{name: evaluate(...)}`` for the learner, each of ``config.eval.baselines`` and each of
    ``others`` (``{name: model}``), all on the same ``config.eval.episodes`` seeded episodes of
    ``test_set`` (an ImageClasses of held-out classes)."""
    sampler = build_sampler(config.data, test_set, seed=config.eval.seed)
    options = dict(num_episodes=config.eval.episodes, batch_size=config.eval.batch_size,
                   num_shots=num_shots(config.data), device=device, bf16=config.train.bf16, progress=progress)
    name = learner_name(config)
    results = {name: evaluate(model, sampler, desc=f"testing {name}", **options)}
    for baseline in config.eval.baselines:
        if baseline != config.model.kind:
            other = build_model(replace(config, model=replace(config.model, kind=baseline)),
                                frame_shape(config.data, test_set))
            results[baseline] = evaluate(other.to(device), sampler, desc=f"testing {baseline}", **options)
    for other_name, other in (others or {}).items():
        results[other_name] = evaluate(other.to(device), sampler, desc=f"testing {other_name}", **options)
    return results
