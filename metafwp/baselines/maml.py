"""MAML (Finn, Abbeel & Levine, 2017), batched over tasks with ``torch.func``.

Each task adapts the model's parameters by ``inner_steps`` SGD steps on its support set,
``theta_j <- theta_j - inner_lr * grad L_support(theta_j)`` from ``theta_0 = theta``; the meta-loss is
the query loss of the adapted parameters, averaged over tasks. Its gradient with respect to ``theta``
is second order (it differentiates through the inner gradients) unless ``first_order``, which treats
the inner gradients as constants (FO-MAML). ``strategy`` says how the tasks run: ``vmap`` (one
batched ``functional_call`` over the tasks: one forward and backward per inner step instead of a
Python loop), ``loop`` (one task at a time, the same computation) or ``auto`` (``choose_strategy``,
the one measured fastest).

BatchNorm, MAML's way: every forward normalises with the statistics of the frames it is given (a
task's support in the inner loop, its queries after), never with running averages, which would mix
the tasks of a meta-batch and carry training statistics into the test. ``use_batch_statistics(model)``
swaps each ``nn.BatchNorm*`` for ``BatchStatisticsNorm``, the same normalisation in plain tensor ops
with the same ``weight`` and ``bias``: under ``vmap`` torch's batch-norm kernel gives wrong
second-order meta-gradients (torch 2.14: off by about 1 % against a per-task loop and finite
differences, tested), so ``maml_outputs`` refuses ``nn.BatchNorm*`` modules.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from episodes import EpisodeBatch
from episodes.frames import frames_to_float

LOSSES: dict[str, Callable] = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss}
STRATEGIES = ("auto", "vmap", "loop")


def choose_strategy(model: nn.Module, device: torch.device) -> str:
    """``auto``'s choice: ``vmap``. Measured with benchmarks/maml_cpu.py on the 2-core CPU VM (torch
    2.14.1, second order, 32 tasks, median of 3), vmap is the fastest of the three ways at every
    setting: 3.2x the per-task loop with the demo's 16-filter Conv-4 and 1.07x (1 inner step) / 1.05x
    (5) with Finn et al.'s 64 filters, where ``loop`` reached 0.83x / 0.93x of the per-task autograd
    loop. Not measured on a GPU."""
    return "vmap"


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown MAML strategy {strategy!r}. Valid: {', '.join(STRATEGIES)}")


class BatchStatisticsNorm(nn.Module):
    """BatchNorm with batch statistics only: ``(x - mean) / sqrt(var + eps) * weight + bias``, mean and
    (biased) variance over every axis but the channels (axis 1) of the ``[N, C, ...]`` input."""

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = [0] + list(range(2, x.dim()))
        mean, var = x.mean(axes, keepdim=True), x.var(axes, unbiased=False, keepdim=True)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        if self.weight is None:
            return x
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.weight.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.weight is not None}"


def use_batch_statistics(model: nn.Module) -> nn.Module:
    """``model`` with every ``nn.BatchNorm*`` replaced, in place, by a ``BatchStatisticsNorm`` holding
    its ``weight``, ``bias`` and ``eps`` (its running statistics are dropped)."""
    for name, module in list(model.named_children()):
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            norm = BatchStatisticsNorm(module.num_features, module.eps, module.affine)
            if module.affine:
                norm.weight, norm.bias = module.weight, module.bias
            setattr(model, name, norm)
        else:
            use_batch_statistics(module)
    return model


def check_adaptable(model: nn.Module) -> None:
    """Raise a ValueError if ``model`` holds a torch BatchNorm: its running statistics would be
    overwritten by every inner step, and its kernel's meta-gradients are wrong under ``vmap``."""
    norms = [name for name, module in model.named_modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    if norms:
        raise ValueError(f"MAML cannot adapt the nn.BatchNorm modules {', '.join(norms)}: every inner step would "
                         f"overwrite their running statistics, and under vmap their kernel's second-order "
                         f"meta-gradients are wrong; use batch statistics as Finn et al. do: "
                         f"metafwp.baselines.maml.use_batch_statistics(model)")


def check_task_counts(**tensors: torch.Tensor) -> None:
    """Raise a ValueError unless every tensor holds the same number of tasks on its first axis."""
    if len({t.shape[0] for t in tensors.values()}) != 1:
        raise ValueError(f"support and query hold different numbers of tasks on the first axis "
                         f"({', '.join(f'{k} {t.shape[0]}' for k, t in tensors.items())}); give every tensor "
                         f"[B, ...] with the same B tasks")


def adapt(model: nn.Module, params: dict, buffers: dict, x_support: torch.Tensor, y_support: torch.Tensor, *,
          inner_lr: float, inner_steps: int, first_order: bool, loss_fn: Callable) -> dict:
    """One task's parameters after ``inner_steps`` SGD steps on its support (``x_support [N, ...]``)."""
    def support_loss(p):
        return loss_fn(functional_call(model, (p, buffers), (x_support,)), y_support)

    for _ in range(inner_steps):
        grads = grad(support_loss)(params)
        params = {name: params[name] - inner_lr * (g.detach() if first_order else g) for name, g in grads.items()}
    return params


def maml_outputs(model: nn.Module, x_support: torch.Tensor, y_support: torch.Tensor, x_query: torch.Tensor, *,
                 inner_lr: float, inner_steps: int, first_order: bool = False,
                 loss_fn: Callable = F.cross_entropy, strategy: str = "auto") -> torch.Tensor:
    """The query outputs ``[B, M, ...]`` of each task's adapted parameters.

    Args:
        model: maps a batch of inputs ``[N, ...]`` to outputs ``[N, ...]``; no BatchNorm running
            statistics (see the module docstring).
        x_support, y_support: ``[B, N, ...]`` and ``[B, N]`` (class indices) or ``[B, N, dy]``.
        x_query: ``[B, M, ...]``.
        inner_lr, inner_steps: the inner SGD (``inner_steps = 0``: the unadapted model).
        first_order: inner gradients as constants (no second-derivative terms).
        loss_fn: ``loss_fn(outputs, targets)`` of one task, a mean. Default: cross-entropy.
        strategy: ``auto``, ``vmap`` or ``loop`` (the module docstring). Default: ``auto``.
    """
    check_strategy(strategy)
    check_task_counts(x_support=x_support, y_support=y_support, x_query=x_query)
    if not isinstance(inner_steps, int) or inner_steps < 0:
        raise ValueError(f"inner_steps must be an int >= 0, got {inner_steps!r}")
    check_adaptable(model)
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())

    def task_outputs(x_s, y_s, x_q):
        adapted = adapt(model, params, buffers, x_s, y_s, inner_lr=inner_lr, inner_steps=inner_steps,
                        first_order=first_order, loss_fn=loss_fn)
        return functional_call(model, (adapted, buffers), (x_q,))

    if strategy == "auto":
        strategy = choose_strategy(model, x_query.device)
    if strategy == "loop":
        return torch.stack([task_outputs(*task) for task in zip(x_support, y_support, x_query)])
    return vmap(task_outputs, randomness="different")(x_support, y_support, x_query)


def maml_loss(model: nn.Module, x_support: torch.Tensor, y_support: torch.Tensor, x_query: torch.Tensor,
              y_query: torch.Tensor, *, inner_lr: float, inner_steps: int, first_order: bool = False,
              loss_fn: Callable = F.cross_entropy, strategy: str = "auto") -> torch.Tensor:
    """The MAML meta-loss: each task's query ``loss_fn`` after adaptation, averaged over the ``B``
    tasks. ``.backward()`` leaves the meta-gradient in the model's ``.grad``. Shapes and arguments as
    ``maml_outputs``, with ``y_query [B, M]`` or ``[B, M, dy]``."""
    check_task_counts(x_query=x_query, y_query=y_query)
    outputs = maml_outputs(model, x_support, y_support, x_query, inner_lr=inner_lr, inner_steps=inner_steps,
                           first_order=first_order, loss_fn=loss_fn, strategy=strategy)
    return vmap(loss_fn)(outputs, y_query).mean()


def relu_mlp(widths: list[int]) -> nn.Sequential:
    """Linear layers of ``widths`` (input first, output last) with ReLU between: Finn et al.'s sinusoid
    network is ``relu_mlp([1, 40, 40, 1])``."""
    layers = []
    for i, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Linear(width_in, width_out)] + ([nn.ReLU()] if i < len(widths) - 2 else [])
    return nn.Sequential(*layers)


def split_episodes(batch: EpisodeBatch):
    """``(x_support [B, S, ...], y_support [B, S, ...], x_query [B, Q, ...], query_steps [B, Q])`` of
    synchronous episodes: the steps whose feedback shows a label are the support, the rest the
    queries. Every episode must hold as many of each (N-way K-shot and regression episodes do)."""
    if batch.num_classes is None:
        labelled = batch.feedback[..., -1] == 0
        shown, targets = batch.feedback[..., :-1], batch.targets
    else:
        labelled = batch.feedback != batch.unknown_label
        shown, targets = batch.feedback, batch.targets
    if not torch.equal(shown[labelled], targets[labelled].to(shown.dtype)):
        raise ValueError("MAML reads synchronous episodes (labelled support, then queries); set "
                         "data.feedback=synchronous")
    counts = labelled.sum(1)
    if not bool((counts == counts[0]).all()):
        raise ValueError(f"MAML batches tasks with equal support sizes; these episodes hold {counts.tolist()}")
    B, num_support = labelled.shape[0], int(counts[0])
    support_steps = labelled.nonzero()[:, 1].view(B, num_support)
    query_steps = (~labelled).nonzero()[:, 1].view(B, -1)
    rows = torch.arange(B, device=labelled.device)[:, None]
    inputs = frames_to_float(batch.inputs)
    return inputs[rows, support_steps], targets[rows, support_steps], inputs[rows, query_steps], query_steps


class MAMLLearner(nn.Module):
    """MAML on the trainer's episodes: each episode adapts ``network`` on its support, then scores
    its queries.

    Args:
        network: one input ``[N, ...]`` to outputs ``[N, num_outputs]`` (a Conv-4 and a linear head,
            or an MLP); its BatchNorm layers become ``BatchStatisticsNorm`` (``use_batch_statistics``).
        inner_lr, inner_steps: the inner SGD during meta-training.
        test_inner_steps: inner steps when evaluating (Finn et al. use more at test on
            Mini-ImageNet). Default: ``inner_steps``.
        first_order: FO-MAML. Default: False (second order).
        loss: ``cross_entropy`` (classification) or ``mse`` (regression).
        strategy: how the tasks run, ``auto``, ``vmap`` or ``loop`` (``maml_outputs``). Default: ``auto``.

    ``forward(batch, state=None) -> (outputs [B, T, num_outputs], None)`` for synchronous episodes:
    the query steps hold the adapted network's outputs, the support steps zeros (they carry no
    loss). In eval mode (and under ``torch.no_grad``) the inner loop still takes its gradients, and
    keeps no graph of them.
    """

    def __init__(self, network: nn.Module, *, inner_lr: float, inner_steps: int, test_inner_steps: int | None = None,
                 first_order: bool = False, loss: str = "cross_entropy", strategy: str = "auto"):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"Unknown loss {loss!r}. Valid: {', '.join(LOSSES)}")
        check_strategy(strategy)
        test_inner_steps = inner_steps if test_inner_steps is None else test_inner_steps
        for name, steps in (("inner_steps", inner_steps), ("test_inner_steps", test_inner_steps)):
            if not isinstance(steps, int) or steps < 0:
                raise ValueError(f"{name} must be an int >= 0, got {steps!r}")
        self.network = use_batch_statistics(network)
        self.inner_lr, self.inner_steps, self.test_inner_steps = inner_lr, inner_steps, test_inner_steps
        self.first_order, self.loss, self.strategy = first_order, loss, strategy

    def forward(self, batch: EpisodeBatch, state=None):
        x_support, y_support, x_query, query_steps = split_episodes(batch)
        steps = self.inner_steps if self.training else self.test_inner_steps
        outputs = maml_outputs(self.network, x_support, y_support, x_query, inner_lr=self.inner_lr,
                               inner_steps=steps, first_order=self.first_order or not torch.is_grad_enabled(),
                               loss_fn=LOSSES[self.loss], strategy=self.strategy)
        B, T = query_steps.shape[0], batch.feedback.shape[1]
        full = outputs.new_zeros(B, T, *outputs.shape[2:])
        full[torch.arange(B, device=full.device)[:, None], query_steps] = outputs
        return full, None

    def extra_repr(self) -> str:
        return (f"inner_lr={self.inner_lr}, inner_steps={self.inner_steps}, test_inner_steps={self.test_inner_steps}, "
                f"first_order={self.first_order}, loss={self.loss}, strategy={self.strategy}")
