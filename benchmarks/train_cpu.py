"""Trainer throughput against a bare PyTorch loop, measured in the same run.

The peer is the loop a researcher would write by hand: the same model (built from the same recipe),
the same sampler and batches, Adam, forward, masked loss (cross-entropy or MSE), backward, step, zero_grad, and nothing
else. The trainer adds what makes a run usable: gradient-norm check (NaN stop), metric tallies,
the progress bar, tensorboard, checkpoints. Both run the same number of steps; the first
``--warmup`` steps of each are not timed. Repeats alternate the two and the medians are reported.

    python benchmarks/train_cpu.py                          # the demo's SRWM recipe, 2 repeats
    python benchmarks/train_cpu.py --recipe recipes/glyphs_5way1shot_delta.yaml --steps 100
    python benchmarks/train_cpu.py --recipe recipes/regression_von_oswald_linear_attention.yaml --steps 400 --warmup 20
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from episodes import EpisodeStream
from metafwp.tasks import TASKS
from metafwp.train import load_config, train
from metafwp.train.loop import make_optimizer


def bare_loss(outputs: torch.Tensor, batch) -> torch.Tensor:
    """Cross-entropy (classification) or mean squared error (regression) on the loss mask."""
    mask = batch.loss_mask
    if batch.num_classes is None:
        return (outputs[mask] - batch.targets[mask]).square().mean()
    return F.cross_entropy(outputs[mask], batch.targets[mask])


def bare_loop(config, steps: int, warmup: int) -> float:
    """Episodes per second of a hand-written loop over the trainer's model and batches."""
    task = TASKS[config.task](config, progress=False)
    sampler = task.train_sampler()
    torch.manual_seed(config.train.seed)
    model = task.build_learner(config.model)
    optimizer, _ = make_optimizer(config, model.parameters())
    for step, batch in enumerate(EpisodeStream(sampler, config.train.batch_size, num_batches=steps)):
        if step == warmup:
            start = time.perf_counter()
        outputs, _ = model(batch)
        bare_loss(outputs, batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (steps - warmup) * config.train.batch_size / (time.perf_counter() - start)


def trainer(config, warmup: int) -> float:
    """Episodes per second of metafwp.train over the same steps, from its own logged intervals
    (log_every = warmup, so the first interval is the warm-up; checkpoints at every
    train.checkpoint_every steps fall inside the intervals)."""
    run_dir = train(config)
    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    timed = [record for record in history if record["step"] > warmup]
    seconds = sum(record["episodes"] / record["episodes_per_second"] for record in timed)
    return sum(record["episodes"] for record in timed) / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="recipes/glyphs_5way1shot_srwm.yaml")
    parser.add_argument("--steps", type=int, default=200)  # >= 20 log points of --warmup steps
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"Trainer vs a bare loop: {args.recipe}, {args.steps} steps ({args.warmup} untimed), "
          f"{torch.get_num_threads()} threads")
    results = {"bare loop": [], "metafwp.train": []}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            config = load_config(args.recipe, [
                f"train.steps={args.steps}", f"train.log_every={args.warmup}", "train.progress=none",
                f"train.out_dir={folder}", f"train.name=repeat{repeat}", "eval.episodes=10", "eval.baselines=[]"])
            results["bare loop"].append(bare_loop(config, args.steps, args.warmup))
            results["metafwp.train"].append(trainer(config, args.warmup))
    bare, ours = (statistics.median(results[name]) for name in results)
    for name, values in results.items():
        print(f"  {name:<14} {statistics.median(values):7.1f} episodes/s  (runs: "
              f"{', '.join(f'{v:.1f}' for v in values)})")
    print(f"  trainer / bare loop: {ours / bare:.3f} (target: >= 0.90)")


if __name__ == "__main__":
    main()
