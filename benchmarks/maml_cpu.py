"""MAML meta-step throughput: ``maml_loss`` with ``strategy="auto"`` (its choice), ``"vmap"`` (one
``vmap`` over tasks) and ``"loop"``, against the two loops people write, measured in the same run on
the same model and tasks; PASS or SHORT beside the target of >= 1.5x both loops at 64 filters.

Peers: a per-task Python loop (``functional_call`` and ``torch.autograd.grad(create_graph=True)``
for each task's inner steps, then its query loss backpropagated), and ``higher``'s per-task loop
(``higher.innerloop_ctx`` with differentiable SGD), the way its MAML example runs. Each meta-step is
forward, inner steps, query loss and the backward of the meta-gradient; second order.

Settings: Finn et al.'s Omniglot 5-way 1-shot Conv-4 (64 filters, 28x28 frames), 32 tasks of 5
support and 5 query frames; the demo's 16-filter Conv-4, same tasks; their sinusoid MLP (1-40-40-1),
25 tasks of 10 support and 10 query points, MSE. ``--repeats`` rounds alternate the three and the
medians are reported.

    python benchmarks/maml_cpu.py [--steps 1 5] [--repeats 3] [--device cuda]
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

from metafwp.baselines.maml import maml_loss, relu_mlp, use_batch_statistics
from ops_cpu import verdict  # benchmarks/ is on the path when run as a script
from metafwp.models.backbones import Conv4

N_WAY, INNER_LR = 5, 0.4


def ours(strategy: str):
    def step(model, tasks, inner_steps, loss_fn):
        maml_loss(model, *tasks, inner_lr=INNER_LR, inner_steps=inner_steps, loss_fn=loss_fn,
                  strategy=strategy).backward()
    return step


def python_loop(model, tasks, inner_steps, loss_fn):
    x_support, y_support, x_query, y_query = tasks
    names = [name for name, _ in model.named_parameters()]
    for t in range(x_support.shape[0]):
        params = list(model.parameters())
        for _ in range(inner_steps):
            loss = loss_fn(functional_call(model, dict(zip(names, params)), (x_support[t],)), y_support[t])
            grads = torch.autograd.grad(loss, params, create_graph=True)
            params = [p - INNER_LR * g for p, g in zip(params, grads)]
        query = functional_call(model, dict(zip(names, params)), (x_query[t],))
        (loss_fn(query, y_query[t]) / x_support.shape[0]).backward()


def higher_loop(model, tasks, inner_steps, loss_fn):
    x_support, y_support, x_query, y_query = tasks
    optimiser = torch.optim.SGD(model.parameters(), lr=INNER_LR)
    for t in range(x_support.shape[0]):
        with higher.innerloop_ctx(model, optimiser, copy_initial_weights=False) as (fast, differentiable):
            for _ in range(inner_steps):
                differentiable.step(loss_fn(fast(x_support[t]), y_support[t]))
            (loss_fn(fast(x_query[t]), y_query[t]) / x_support.shape[0]).backward()


def seconds(step, model, tasks, inner_steps, loss_fn) -> float:
    model.zero_grad()
    synchronize = torch.cuda.synchronize if tasks[0].is_cuda else (lambda: None)
    synchronize()
    started = time.perf_counter()
    step(model, tasks, inner_steps, loss_fn)
    synchronize()
    return time.perf_counter() - started


def settings():
    """``(description, model, tasks, loss_fn)`` of each measured setting."""
    labels = torch.arange(N_WAY).expand(32, -1)
    frames = (torch.rand(32, N_WAY, 1, 28, 28), labels, torch.rand(32, N_WAY, 1, 28, 28), labels)
    for filters in (64, 16):
        model = use_batch_statistics(nn.Sequential(Conv4(1, filters, channels_last=False), nn.Linear(filters, N_WAY)))
        yield f"Conv-4 ({filters} filters, 28x28), 5-way 1-shot, 32 tasks", model, frames, F.cross_entropy
    x_support, x_query = torch.rand(25, 10, 1) * 10 - 5, torch.rand(25, 10, 1) * 10 - 5
    points = (x_support, torch.sin(x_support), x_query, torch.sin(x_query))
    yield "sinusoid MLP 1-40-40-1, K = 10, 25 tasks", relu_mlp([1, 40, 40, 1]), points, F.mse_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 5], help="inner steps to measure")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.manual_seed(0)
    peers = {"maml_loss (auto)": ours("auto"), "maml_loss (vmap)": ours("vmap"), "maml_loss (loop)": ours("loop"),
             "per-task loop": python_loop, "higher per-task": higher_loop}
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"MAML meta-steps, second order, {where}; tasks/s, median of {args.repeats} (ours / peer in brackets)")
    for description, model, tasks, loss_fn in settings():
        model, tasks = model.to(args.device), tuple(t.to(args.device) for t in tasks)
        print(description)
        for inner_steps in args.steps:
            for step in peers.values():  # warm-up
                seconds(step, model, tasks, inner_steps, loss_fn)
            times = {name: [] for name in peers}
            for _ in range(args.repeats):
                for name, step in peers.items():
                    times[name].append(seconds(step, model, tasks, inner_steps, loss_fn))
            rates = {name: tasks[0].shape[0] / statistics.median(values) for name, values in times.items()}
            auto = rates["maml_loss (auto)"]
            print(f"  {inner_steps} inner step{'s' if inner_steps > 1 else ''}: " + "; ".join(
                f"{name} {rate:.1f}" + ("" if name == "maml_loss (auto)" else f" ({auto / rate:.2f}x)")
                for name, rate in rates.items()))
            if "64 filters" in description:
                worst = min(auto / rates["per-task loop"], auto / rates["higher per-task"])
                print(f"    target >= 1.5x both loops: {worst:.2f}x {verdict(worst >= 1.5)}")


if __name__ == "__main__":
    main()
