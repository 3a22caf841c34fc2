"""Helpers shared by the tests: comparisons, fast-weight inputs, a layer run in pieces, a tiny
trainer config, a run's learner and its accuracy by a plain loop."""
import math
import signal
from pathlib import Path

import torch
import torch.nn.functional as F

from metafwp.evaluate import load_run
from metafwp.train import load_config, loop

ROOT = Path(__file__).parents[1]
RECIPE = ROOT / "recipes/glyphs_5way1shot_srwm.yaml"
TINY = ["model.filters=8", "train.batch_size=4", "train.log_every=1", "train.checkpoint_every=2",
        "train.progress=none", "eval.episodes=12", "eval.batch_size=5", "train.threads=1"]
TINY_SEQUENCE = ["model.d_model=16", "model.num_heads=2", "model.num_layers=1"]  # for sequence learners


def assert_close(name: str, actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    """Relative RMS error ``rms(actual - expected) / rms(expected)`` below ``rtol``; NaN fails loudly."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    actual, expected = actual.detach().double(), expected.detach().double()
    assert not torch.isnan(actual).any(), f"{name}: NaN in the result"
    assert not torch.isnan(expected).any(), f"{name}: NaN in the reference"
    error = (actual - expected).pow(2).mean().sqrt()
    scale = expected.pow(2).mean().sqrt().clamp_min(1e-30)
    assert error / scale <= rtol, f"{name}: relative RMS error {error / scale:.3e} > {rtol:.0e}"


def assert_identical(name: str, actual, expected) -> None:
    """Nested dicts, lists and tuples of tensors and numbers equal bit for bit (tensors by ``torch.equal``)."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor) and torch.equal(actual, expected), f"{name} differs"
    elif isinstance(expected, dict):
        assert set(actual) == set(expected), f"{name}: keys {sorted(actual)} != {sorted(expected)}"
        for key in expected:
            assert_identical(f"{name}.{key}", actual[key], expected[key])
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), f"{name}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_identical(f"{name}[{i}]", a, e)
    else:
        assert actual == expected, f"{name}: {actual!r} != {expected!r}"


def gradients(outputs_and_cotangents, inputs):
    """Gradients of sum(<output, cotangent>) w.r.t. ``inputs`` (None entries skipped)."""
    loss = sum((o * c).sum() for o, c in outputs_and_cotangents)
    present = [x for x in inputs if x is not None]
    grads = iter(torch.autograd.grad(loss, present))
    return [None if x is None else next(grads) for x in inputs]


def tiny(tmp_path, *overrides, name="run", recipe=RECIPE):
    """A tiny run of ``recipe`` (Default: the glyph SRWM recipe) under ``tmp_path/name``."""
    learner = [] if Path(recipe).stem.rsplit("_", 1)[-1] in ("protonet", "maml") else TINY_SEQUENCE
    return load_config(recipe, TINY + learner + [f"train.out_dir={tmp_path}", f"train.name={name}", *overrides])


def learner_of(run_dir: Path, weights: str = "checkpoint.pt"):
    """``(config, model)`` of a trained run, with the weights of ``weights``."""
    config, _, model, _ = load_run(run_dir, weights=weights)
    return config, model


def accuracy_by_hand(model, batch) -> tuple[float, float]:
    """Mean and 95% CI over episodes of the percent of loss-mask steps whose argmax logit is the
    target: a plain loop over episodes, independent of the task's tallies."""
    per_episode = []
    with torch.no_grad():
        for episode in range(batch.batch_size):
            logits, _ = model(batch[episode])
            scored = batch.loss_mask[episode]
            hits = logits[0].argmax(-1)[scored] == batch.targets[episode][scored]
            per_episode.append(hits.double().mean().item())
    n, mean = len(per_episode), sum(per_episode) / len(per_episode)
    std = math.sqrt(sum((a - mean) ** 2 for a in per_episode) / (n - 1))
    return 100 * mean, 100 * 1.96 * std / math.sqrt(n)


def make_inputs(rule, B, T, H, K, V, dtype=torch.float64, seed=0):
    """Seeded ``q, k, v, beta, g, h0`` of fast-weight ``rule`` in the ops' layout, each requiring grad
    (``g`` None for rules without decay); keys (and Oja's values) unit-norm."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=gen, dtype=dtype)
    k = F.normalize(torch.randn(B, T, H, K, generator=gen, dtype=dtype), dim=-1)
    v = torch.randn(B, T, H, V, generator=gen, dtype=dtype)
    if rule == "oja":  # Oja's rule probes the state with v: keep it unit-norm like the delta rule's keys
        v = F.normalize(v, dim=-1)
    beta = torch.rand(B, T, H, generator=gen, dtype=dtype)
    g = None
    if rule in ("decay", "gated_delta"):
        g = F.logsigmoid(torch.randn(B, T, H, generator=gen, dtype=dtype) + 2)
    elif rule == "gla":
        g = F.logsigmoid(torch.randn(B, T, H, K, generator=gen, dtype=dtype) + 2)
    h0 = torch.randn(B, H, K, V, generator=gen, dtype=dtype)
    return [x if x is None else x.requires_grad_() for x in (q, k, v, beta, g, h0)]


def run_in_pieces(layer, x, cuts):
    """Run ``x`` [B, T, d] through ``layer`` in pieces split at ``cuts``, handing the state over."""
    outputs, state = [], None
    for piece in torch.tensor_split(x, cuts, dim=1):
        y, state = layer(piece, state)
        outputs.append(y)
    return torch.cat(outputs, 1), state


def error_by_hand(model, task) -> float:
    """Squared error / dim on the loss mask of the task's test episodes, a plain loop over episodes."""
    sampler, _ = task.test_episodes()[""]
    total, count = 0.0, 0
    with torch.no_grad():
        for episode in range(task.config.eval.episodes):
            batch = sampler.sample([episode])
            mask = batch.loss_mask[0]
            outputs = model(batch)[0][0]
            total += (outputs[mask].double() - batch.targets[0][mask].double()).square().sum().item()
            count += int(mask.sum())
    return total / count / sampler.dim


def stop_after(monkeypatch, step: int, stop=lambda: signal.raise_signal(signal.SIGTERM)) -> None:
    """Call ``stop`` right after training step ``step`` (its optimiser step done, before its log line
    and checkpoint). Default: SIGTERM, as a cluster's pre-emption sends it."""
    original = loop.Progress.step

    def step_then_stop(progress):
        original(progress)
        if progress.run.step == step:
            stop()

    monkeypatch.setattr(loop.Progress, "step", step_then_stop)
