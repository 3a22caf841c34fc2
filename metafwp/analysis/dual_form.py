"""The dual form of a linear layer trained by gradient descent (Irie, Csordás & Schmidhuber 2022):
after T steps of SGD, a layer's output on any input x is its initial output plus unnormalised
linear attention over every training input it saw,

    W_T x + b_T = a_0 (W_0 x + b_0) + sum_t k_t sum_n g_t^(n) (x_t^(n) . x + 1)

with keys the layer's training inputs x_t^(n), values its output gradients g_t^(n) = dL_t/dy_t^(n),
and one scalar k_t per step: -lr_t c_t for plain SGD (c_t the step's gradient-clipping factor), the
accumulated coefficients of momentum and weight decay otherwise (``step_coefficients``). Adam's
elementwise normalisation has no such form: it is refused, or with ``inexact=True`` the plain-SGD
form is written and ``residual`` says how far it is from the layer.

``DualFormRecorder(model, optimizer)`` records, through hooks, what the form needs while the
model trains; call ``end_step()`` after each ``optimizer.step()``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

EXACT_OPTIMIZERS = (torch.optim.SGD,)


@dataclass
class LayerRecord:
    """One layer's initial weights and, per recorded step, its inputs ``[N, in]`` and output
    gradients ``[N, out]`` (the leading dims of the layer's input flattened into N)."""
    weight: torch.Tensor
    bias: torch.Tensor | None
    inputs: list[torch.Tensor] = field(default_factory=list)
    grads: list[torch.Tensor] = field(default_factory=list)
    labels: list[torch.Tensor] = field(default_factory=list)


@dataclass
class Spotlight:
    """What a layer attends to for test inputs: ``class_scores [..., C]`` the summed ``|x_t . x|`` of
    the training examples of each class, ``vote`` its argmax (an int for one input, ``[M]`` for M), and
    the ``k`` training examples with the largest scores: ``top_scores``, ``top_steps`` (when they were
    seen), ``top_examples`` (their index in that step's batch) and ``top_labels``, each ``[..., k]``."""
    class_scores: torch.Tensor
    vote: int | torch.Tensor
    top_scores: torch.Tensor
    top_steps: torch.Tensor
    top_examples: torch.Tensor
    top_labels: torch.Tensor


@dataclass
class StepSettings:
    lr: float
    momentum: float
    weight_decay: float
    clip: float


def step_coefficients(steps: list[StepSettings]) -> tuple[float, list[float]]:
    """``(a_0, [k_0, .., k_{T-1}])`` with ``W_T = a_0 W_0 + sum_t k_t G_t`` for torch's SGD, where
    ``G_t`` is step t's gradient before clipping and weight decay (``sum_n g x^T``).

    With momentum mu and weight decay lambda, torch's step is ``d_t = c_t G_t + lambda W_t``,
    ``m_t = mu m_{t-1} + d_t`` (``m_{-1} = 0``), ``W_{t+1} = W_t - lr_t m_t``: the pair
    ``(W_t, m_{t-1})`` follows ``(W_{t+1}, m_t) = M_t (W_t, m_{t-1}) + (-lr_t, 1) c_t G_t`` with
    ``M_t = [[1 - lr_t lambda, -lr_t mu], [lambda, mu]]``; the coefficients are the first row of
    the products ``M_{T-1} .. M_{t+1}`` applied to ``(-lr_t c_t, c_t)``, and to ``(1, 0)`` for W_0."""
    row = torch.tensor([1.0, 0.0], dtype=torch.float64)   # e1^T M_{T-1} .. M_{t+1}, built from the last step
    coefficients = []
    for s in reversed(steps):
        coefficients.append(float(row @ torch.tensor([-s.lr * s.clip, s.clip], dtype=torch.float64)))
        matrix = torch.tensor([[1 - s.lr * s.weight_decay, -s.lr * s.momentum], [s.weight_decay, s.momentum]],
                              dtype=torch.float64)
        row = row @ matrix
    return float(row[0]), coefficients[::-1]


class DualFormRecorder:
    """Records the inputs and output gradients of ``model``'s ``nn.Linear`` layers at every step.

    Args:
        model: the network; ``layers`` names the linear layers to record (Default: all).
        optimizer: the optimiser that trains it (its learning rate, momentum and weight decay are
            read at every ``end_step``): ``torch.optim.SGD`` without Nesterov for an exact form.
        max_bytes: the most the records may hold; a step that would pass it raises a ValueError
            saying how much is needed. Default: 1 GiB.
        inexact: accept an optimiser without an exact form (then ``dual_output`` is the plain-SGD
            form and ``residual`` its distance to the layer). Default: False (refused).
        every, examples: keep every ``every``-th step only, and of each kept step its first
            ``examples`` examples (Default: 1 and None, everything). A subset bounds the memory of a
            ``spotlight`` analysis; the dual form itself needs every example of every step, so
            ``dual_output`` and ``residual`` refuse a recorder that keeps a subset.

    Train as usual (forward, backward, optional ``clip_grad_norm_``, ``optimizer.step()``), then
    call ``end_step()``. ``dual_output(name, x)`` is the layer's output from its records.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, layers: list[str] | None = None,
                 max_bytes: int = 2**30, inexact: bool = False, every: int = 1, examples: int | None = None):
        if every < 1 or (examples is not None and examples < 1):
            raise ValueError(f"every and examples must be >= 1 (examples None: all), got every={every}, "
                             f"examples={examples}")
        linear = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
        unknown = sorted(set(layers or ()) - set(linear))
        if unknown:
            raise ValueError(f"no nn.Linear layer named {', '.join(unknown)} in the model; its linear layers: "
                             f"{', '.join(linear) or 'none'}")
        exact = self.exact_form(optimizer)
        if exact is not None and not inexact:
            raise ValueError(f"{exact}: the dual form is not exact; pass inexact=True to record anyway and read "
                             "residual() for how far it is from the trained layer")
        self.exact, self.optimizer, self.max_bytes = exact is None, optimizer, max_bytes
        self.every, self.examples, self.step = every, examples, 0
        self.recorded_steps: list[int] = []   # the training step of each kept record
        self.layers = {name: linear[name] for name in (layers or linear)}
        self.records = {name: LayerRecord(m.weight.detach().clone(),
                                          None if m.bias is None else m.bias.detach().clone())
                        for name, m in self.layers.items()}
        self.steps: dict[str, list[StepSettings]] = {name: [] for name in self.layers}
        for name, module in self.layers.items():
            if module.bias is not None and self.group(module.bias) is not self.group(module.weight):
                raise ValueError(f"layer {name}'s weight and bias are in different optimiser groups; the dual form "
                                 "takes one learning rate, momentum and weight decay per layer")
        self.pending: dict[str, list] = {}
        self.bytes = 0
        self.handles = [m.register_forward_hook(self.hook(name)) for name, m in self.layers.items()]

    @staticmethod
    def exact_form(optimizer) -> str | None:
        """None when ``optimizer`` has an exact dual form, else why not."""
        if not isinstance(optimizer, EXACT_OPTIMIZERS):
            return f"{type(optimizer).__name__} normalises its steps elementwise"
        for group in optimizer.param_groups:
            if group.get("nesterov") or group.get("dampening", 0) or group.get("maximize"):
                return "SGD with Nesterov momentum, dampening or maximize is not implemented"
        return None

    def hook(self, name: str):
        def record(module, inputs, output):
            if not torch.is_grad_enabled() or not output.requires_grad:
                return  # evaluation, not a training step
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1])
            slot = self.pending.setdefault(name, [x, None])
            output.register_hook(lambda g: slot.__setitem__(1, g.detach().reshape(-1, g.shape[-1])))
        return record

    def group(self, parameter: torch.Tensor) -> dict:
        return next(g for g in self.optimizer.param_groups if any(p is parameter for p in g["params"]))

    def end_step(self, labels: torch.Tensor | None = None) -> None:
        """Store this step's records and settings (and the batch's ``labels [N]`` for ``spotlight``);
        call it after ``optimizer.step()``. The clipping
        factor is read from the gradients: the recorded ``sum_n g x^T`` against the weight's
        ``.grad``; a gradient that is not a multiple of it (another loss term, accumulation over
        several backwards) is refused."""
        if set(self.pending) != set(self.layers):
            missing = sorted(set(self.layers) - set(self.pending))
            raise ValueError(f"end_step: no forward and backward of {', '.join(missing)} since the last step")
        keep = self.step % self.every == 0
        kept = slice(None, self.examples)
        need = keep * sum(x[kept].numel() * x.element_size() + g[kept].numel() * g.element_size()
                          for x, g in self.pending.values() if g is not None)
        if self.bytes + need > self.max_bytes:
            raise ValueError(f"recording step {self.step} needs {self.bytes + need:,} bytes, more than "
                             f"max_bytes={self.max_bytes:,}; record fewer layers (layers=), a subset (every=, "
                             f"examples=) or raise max_bytes")
        dots, norms = 0.0, 0.0
        for name, (x, g) in self.pending.items():
            if g is None:
                raise ValueError(f"end_step: layer {name} had no backward since the last step")
            gradient = g.T.to(torch.float64) @ x.to(torch.float64)
            actual = self.layers[name].weight.grad.to(torch.float64)
            dots, norms = dots + float((actual * gradient).sum()), norms + float((gradient * gradient).sum())
        clip = dots / norms if norms > 0 else 1.0
        for name, (x, g) in self.pending.items():
            actual, expected = self.layers[name].weight.grad.to(torch.float64), clip * (g.T.double() @ x.double())
            if not torch.allclose(actual, expected, rtol=1e-5, atol=1e-12 + 1e-6 * float(expected.abs().max())):
                raise ValueError(f"end_step: layer {name}'s gradient is not the recorded errors' sum: one backward "
                                 "per step through the recorded forward, and zero_grad before it")
            if labels is not None and labels.numel() != x.shape[0]:
                raise ValueError(f"end_step: {labels.numel()} labels for the {x.shape[0]} inputs of layer {name}")
            if keep:
                self.records[name].inputs.append(x[kept])
                self.records[name].grads.append(g[kept])
                if labels is not None:
                    self.records[name].labels.append(labels.detach().flatten().cpu()[kept])
            group = self.group(self.layers[name].weight)
            self.steps[name].append(StepSettings(group["lr"], group.get("momentum", 0.0),
                                                 group.get("weight_decay", 0.0), clip))
        if keep:
            self.recorded_steps.append(self.step)
        self.bytes += need
        self.pending = {}
        self.step += 1

    def check_whole(self, what: str) -> None:
        if self.every != 1 or self.examples is not None:
            raise ValueError(f"{what} needs every example of every step; this recorder keeps a subset (every="
                             f"{self.every}, examples={self.examples}): use it for spotlight")

    def dual_output(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Layer ``name``'s output on ``x [..., in]`` from its initial weights and records alone."""
        self.check_whole("dual_output")
        record, steps = self.records[name], self.steps[name]
        initial, coefficients = step_coefficients(steps)
        if not self.exact:   # the plain-SGD form
            initial, coefficients = 1.0, [-s.lr * s.clip for s in steps]
        x = x.to(record.weight.dtype)
        out = initial * (x @ record.weight.T + (0 if record.bias is None else record.bias))
        for k, keys, values in zip(coefficients, record.inputs, record.grads):
            scores = x @ keys.T.to(x.dtype) + (0 if record.bias is None else 1)    # [..., N]: x_t . x (+ 1)
            out = out + k * scores @ values.to(x.dtype)
        return out

    def spotlight(self, name: str, x: torch.Tensor, num_classes: int, k: int = 3, chunk: int = 256) -> Spotlight:
        """The spotlight of layer ``name`` on test inputs ``x [in]`` or ``[M, in]`` (their inputs at that
        layer): scores ``|x_t^(n) . x|`` over every recorded training example (no softmax, no error
        signal, as the authors' analysis), their totals per class and the top ``k``; ``chunk`` test
        inputs are scored at once (memory ``chunk x`` the number of recorded examples)."""
        record = self.records[name]
        if len(record.labels) != len(record.inputs):
            raise ValueError("spotlight needs the training labels: pass labels= to every end_step")
        single = x.dim() == 1
        x = x.reshape(-1, x.shape[-1])
        keys = torch.cat(record.inputs).to(x.dtype)                                       # [all examples, in]
        labels = torch.cat(record.labels)
        steps = torch.cat([torch.full((len(step),), t) for t, step in zip(self.recorded_steps, record.inputs)])
        examples = torch.cat([torch.arange(len(step)) for step in record.inputs])
        class_scores, top_scores, top = [], [], []
        for start in range(0, len(x), chunk):
            scores = (x[start:start + chunk] @ keys.T).abs()                              # [chunk, all examples]
            class_scores.append(torch.zeros(len(scores), num_classes, dtype=scores.dtype).index_add_(1, labels, scores))
            best = scores.topk(min(k, scores.shape[1]), dim=1)
            top_scores.append(best.values)
            top.append(best.indices)
        class_scores, top_scores, top = torch.cat(class_scores), torch.cat(top_scores), torch.cat(top)
        fields = (class_scores, top_scores, steps[top], examples[top], labels[top])
        if single:
            fields = tuple(field[0] for field in fields)
        votes = fields[0].argmax(-1)
        return Spotlight(fields[0], int(votes) if single else votes, *fields[1:])

    def residual(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """The trained layer's output on ``x`` minus ``dual_output`` (zero up to rounding when exact)."""
        with torch.no_grad():
            return self.layers[name](x) - self.dual_output(name, x)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
