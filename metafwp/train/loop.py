"""The training loop: one screen, nanoGPT's order (learning rate from the step, forward, backward,
clip, step, log, checkpoint), single-process or DDP under torchrun."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from episodes import EpisodeStream
from metafwp.losses import episode_loss
from metafwp.train.build import build_model
from metafwp.train.checkpoint import load_checkpoint, save_checkpoint
from metafwp.train.config import ConfigError, RunConfig, config_to_yaml
from metafwp.train.data import build_sampler, frame_shape, load_split, num_shots
from metafwp.train.distributed import Distributed, start_distributed, stop_distributed
from metafwp.train.evaluation import autocast, evaluate_on_test_split, learner_name
from metafwp.train.plots import plot_accuracy_by_shot, plot_learning_curves


class TrainingDiverged(RuntimeError):
    """The loss or the gradients became NaN or infinite."""


def learning_rate_factor(config: RunConfig, step: int) -> float:
    """Multiplier of ``optim.lr`` at ``step`` (0-based): 1, the Noam warm-up or the cosine decay."""
    if config.optim.schedule == "constant":
        return 1.0
    if config.optim.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / config.train.steps))
    step, warmup = step + 1, config.optim.warmup_steps
    return config.model.d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


def run_folder(config: RunConfig) -> Path:
    return Path(config.train.out_dir).expanduser() / (config.train.name or config.recipe)


def make_optimizer(config: RunConfig, model: torch.nn.Module):
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr, betas=tuple(config.optim.betas),
                                 eps=config.optim.eps, weight_decay=config.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate_factor(config, step))
    return optimizer, scheduler


def sampler_state(config: RunConfig, next_batch: int) -> dict:
    """Where the training episode stream stands: batch j is episodes ``j B .. (j + 1) B - 1`` of the
    sampler seeded with ``train.seed``, so the seed, the episode shape and the next batch fix it."""
    data = config.data
    return {"dataset": data.dataset, "split": data.train_split, "n_way": data.n_way, "k_shot": data.k_shot,
            "n_query": data.n_query, "feedback": data.feedback, "seed": config.train.seed,
            "batch_size": config.train.batch_size, "next_batch": next_batch}


class Tally:
    """Sums of the training metrics since the last log line, added over ranks when read."""

    def __init__(self, num_shots: int):
        self.totals = torch.zeros(2 + 2 * num_shots, dtype=torch.float64)  # loss_sum, episodes, correct, count

    def add(self, result, episodes: int) -> None:
        self.totals += torch.cat([result.loss_sum.reshape(1).double().cpu(), torch.tensor([float(episodes)]),
                                  result.correct.double().cpu(), result.count.double().cpu()])

    def read(self, ranks: Distributed) -> dict:
        totals = ranks.sum(self.totals.clone())
        self.totals.zero_()
        correct, count = totals[2:].chunk(2)
        record = {"loss": (totals[0] / count.sum()).item(), "accuracy": 100 * (correct.sum() / count.sum()).item(),
                  "episodes": int(totals[1])}
        record["by_shot"] = {shot: 100 * (correct[shot] / count[shot]).item() for shot in range(len(count))
                             if count[shot] > 0}
        return record


def train(config: RunConfig) -> Path:
    """Meta-train ``config``'s learner, evaluate it on held-out classes, return the run folder.

    The folder gets ``config.yaml``, ``checkpoint.pt`` (atomic, every ``train.checkpoint_every``
    steps: model, optimiser, scheduler, step, history, every rank's RNG state; the step is the
    sampler's state, since batch j is always episodes ``j B .. (j + 1) B - 1`` of the seeded
    sampler), tensorboard event files, ``metrics.json`` and the plots.
    """
    ranks = start_distributed(config.train.device)
    try:
        return _train(config, ranks)
    finally:
        stop_distributed()


def _train(config: RunConfig, ranks: Distributed) -> Path:
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    run_dir, device = run_folder(config), ranks.device
    checkpoint_path = run_dir / "checkpoint.pt"
    if checkpoint_path.exists() and not config.train.resume:
        raise ConfigError(f"{run_dir} already holds a run: pass train.resume=true to continue it, or another "
                          f"train.name (or train.out_dir) to start a new one")
    if config.train.batch_size % ranks.world_size:
        raise ConfigError(f"train.batch_size={config.train.batch_size} must divide among the "
                          f"{ranks.world_size} ranks")
    show = config.train.progress and ranks.is_main
    train_set = load_split(config.data, config.data.train_split, progress=show)
    sampler = build_sampler(config.data, train_set, seed=config.train.seed)
    shape, shots = frame_shape(config.data, train_set), num_shots(config.data)
    torch.manual_seed(config.train.seed)  # the same initial weights on every rank
    model = build_model(config, shape).to(device)
    trainable = config.model.kind != "pixel_nn"
    steps = config.train.steps if trainable else 0
    step, history, seconds = 0, [], 0.0
    optimizer, scheduler = make_optimizer(config, model) if trainable else (None, None)
    if config.train.resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        expected = sampler_state(config, state["step"])
        if state["sampler"] != expected:
            raise ConfigError(f"{checkpoint_path} continues the episode stream {state['sampler']}, but this config "
                              f"asks for {expected}; resume with the run's data, seed and batch size (its "
                              f"config.yaml)")
        if len(state["rng"]) != ranks.world_size:
            raise ConfigError(f"{checkpoint_path} was written by {len(state['rng'])} ranks; resume it with as many "
                              f"(each rank's random state is restored, so the run continues exactly)")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, history, seconds = state["step"], state["history"], state["seconds"]
        torch.set_rng_state(state["rng"][ranks.rank])
    else:
        torch.manual_seed(config.train.seed + ranks.rank)  # dropout differs between ranks
    if ranks.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(config_to_yaml(config))
    writer = SummaryWriter(run_dir / "tensorboard") if ranks.is_main else None

    def checkpoint() -> None:
        rng_states = ranks.gather(torch.get_rng_state())
        if ranks.is_main:
            save_checkpoint(checkpoint_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "step": step, "history": history, "seconds": seconds,
                "rng": rng_states, "sampler": sampler_state(config, step), "config": config_to_yaml(config)})

    stream = EpisodeStream(sampler, config.train.batch_size // ranks.world_size, start=step,
                           num_batches=steps - step, rank=ranks.rank, world_size=ranks.world_size)
    # the loader's own generator: drawing its worker seed must not move the global RNG (dropout),
    # or a resumed run would differ from a straight one; episodes do not depend on it
    loader = DataLoader(stream, batch_size=None, num_workers=config.data.num_workers,
                        pin_memory=device.type == "cuda", generator=torch.Generator())
    learner = DistributedDataParallel(model) if ranks.world_size > 1 and trainable else model
    tally = Tally(shots)
    bar = tqdm(total=steps, initial=step, desc=f"training {run_dir.name}", unit="step", disable=not show,
               dynamic_ncols=True)
    started = time.perf_counter()
    for batch in loader:
        batch = batch.to(device, non_blocking=True)
        with autocast(device, config.train.bf16):
            outputs, _ = learner(batch)
        result = episode_loss(outputs, batch, shots)
        result.loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip or math.inf)
        if not torch.isfinite(grad_norm):  # the same on every rank: gradients are averaged before this
            kept = (f"the last good checkpoint is kept: {checkpoint_path} (step "
                    f"{step - step % config.train.checkpoint_every})" if checkpoint_path.exists()
                    else "no checkpoint had been written yet")
            raise TrainingDiverged(
                f"step {step + 1}: loss {result.loss.item():.4g}, gradient norm {grad_norm.item():.4g}; training "
                f"stopped and {kept}. Lower optim.lr, set optim.grad_clip=1 or use model.beta_activation=sigmoid, "
                f"then resume with train.resume=true")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        step += 1
        tally.add(result, batch.batch_size)
        bar.update()
        if step % config.train.log_every == 0 or step == steps:
            elapsed = time.perf_counter() - started
            seconds, started = seconds + elapsed, time.perf_counter()
            record = tally.read(ranks)
            record.update(step=step, lr=scheduler.get_last_lr()[0], episodes_per_second=record["episodes"] / elapsed)
            history.append(record)
            if writer is not None:
                for key in ("loss", "accuracy", "lr", "episodes_per_second"):
                    writer.add_scalar(f"train/{key}", record[key], step)
                for shot, accuracy in record["by_shot"].items():
                    writer.add_scalar(f"train/accuracy_shot_{shot}", accuracy, step)
            bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['accuracy']:.1f}%",
                            eps=f"{record['episodes_per_second']:.0f}/s")
        if step % config.train.checkpoint_every == 0 or step == steps:
            checkpoint()
    bar.close()
    if ranks.is_main:
        finish(config, model, run_dir, history, seconds, device, writer, show)
    ranks.barrier()
    return run_dir


def finish(config: RunConfig, model, run_dir: Path, history: list, seconds: float, device, writer, show: bool):
    """Test the learner and the baselines on the same held-out episodes; write metrics.json and plots."""
    test_set = load_split(config.data, config.data.test_split, progress=show)
    results = evaluate_on_test_split(config, model, test_set, device, show)
    for name, result in results.items():
        writer.add_scalar(f"test/accuracy_{name}", result["accuracy"], config.train.steps)
    writer.close()
    metrics = {"run": str(run_dir), "recipe": config.recipe, "learner": learner_name(config),
               "steps": config.train.steps, "train_seconds": seconds, "test": results, "history": history}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if history:
        plot_learning_curves(history, run_dir / "learning_curves.png", title=run_dir.name)
    plot_accuracy_by_shot(results, run_dir / "accuracy_by_shot.png",
                          title=f"{run_dir.name}: {config.eval.episodes} test episodes")
