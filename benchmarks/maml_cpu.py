"""MAML meta-step throughput: ``maml_loss`` (one ``vmap`` over tasks) against the two loops people
write, measured in the same run on the same model and tasks.

Peers: a per-task Python loop (``functional_call`` and ``torch.autograd.grad(create_graph=True)``
for each task's inner steps, then its query loss backpropagated), and ``higher``'s per-task loop
(``higher.innerloop_ctx`` with differentiable SGD), the way its MAML example runs. Each meta-step is
forward, inner steps, query loss and the backward of the meta-gradient; second order.

Setting: Finn et al.'s Omniglot 5-way 1-shot Conv-4 (64 filters, 28x28 frames), 32 tasks of 5
support and 5 query frames. ``--repeats`` rounds alternate the three and the medians are reported.

    python benchmarks/maml_cpu.py [--tasks 32] [--steps 1 5] [--repeats 3] [--filters 64]
"""
from __future__ import annotations

import argparse
import statistics
import time

import higher
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from metafwp.baselines.maml import maml_loss, use_batch_statistics
from metafwp.models.backbones import Conv4

N_WAY, INNER_LR = 5, 0.4


def vmapped(model, tasks, inner_steps):
    maml_loss(model, *tasks, inner_lr=INNER_LR, inner_steps=inner_steps).backward()


def python_loop(model, tasks, inner_steps):
    x_support, y_support, x_query, y_query = tasks
    names = [name for name, _ in model.named_parameters()]
    for t in range(x_support.shape[0]):
        params = list(model.parameters())
        for _ in range(inner_steps):
            loss = F.cross_entropy(functional_call(model, dict(zip(names, params)), (x_support[t],)), y_support[t])
            grads = torch.autograd.grad(loss, params, create_graph=True)
            params = [p - INNER_LR * g for p, g in zip(params, grads)]
        query = functional_call(model, dict(zip(names, params)), (x_query[t],))
        (F.cross_entropy(query, y_query[t]) / x_support.shape[0]).backward()


def higher_loop(model, tasks, inner_steps):
    x_support, y_support, x_query, y_query = tasks
    optimiser = torch.optim.SGD(model.parameters(), lr=INNER_LR)
    for t in range(x_support.shape[0]):
        with higher.innerloop_ctx(model, optimiser, copy_initial_weights=False) as (fast, differentiable):
            for _ in range(inner_steps):
                differentiable.step(F.cross_entropy(fast(x_support[t]), y_support[t]))
            (F.cross_entropy(fast(x_query[t]), y_query[t]) / x_support.shape[0]).backward()


def seconds(step, model, tasks, inner_steps) -> float:
    model.zero_grad()
    started = time.perf_counter()
    step(model, tasks, inner_steps)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 5], help="inner steps to measure")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--filters", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = use_batch_statistics(nn.Sequential(Conv4(1, args.filters, channels_last=False), nn.Linear(args.filters, N_WAY)))
    labels = torch.arange(N_WAY).expand(args.tasks, -1)
    tasks = (torch.rand(args.tasks, N_WAY, 1, 28, 28), labels, torch.rand(args.tasks, N_WAY, 1, 28, 28), labels)
    peers = {"maml_loss (vmap)": vmapped, "per-task loop": python_loop, "higher per-task": higher_loop}
    print(f"MAML meta-steps, Conv-4 ({args.filters} filters, 28x28), 5-way 1-shot, {args.tasks} tasks, second order, "
          f"{torch.get_num_threads()} threads; tasks/s, median of {args.repeats}")
    for inner_steps in args.steps:
        for step in peers.values():  # warm-up
            seconds(step, model, tasks, inner_steps)
        times = {name: [] for name in peers}
        for _ in range(args.repeats):
            for name, step in peers.items():
                times[name].append(seconds(step, model, tasks, inner_steps))
        rates = {name: args.tasks / statistics.median(values) for name, values in times.items()}
        ours = rates["maml_loss (vmap)"]
        print(f"  {inner_steps} inner step{'s' if inner_steps > 1 else ''}: " + "; ".join(
            f"{name} {rate:.1f}" + ("" if rate == ours else f" ({ours / rate:.2f}x)") for name, rate in rates.items()))


if __name__ == "__main__":
    main()
