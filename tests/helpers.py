"""Comparison helpers shared by the tests."""
import torch


def assert_close(name: str, actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    """Relative RMS error ``rms(actual - expected) / rms(expected)`` below ``rtol``; NaN fails loudly."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    actual, expected = actual.detach().double(), expected.detach().double()
    assert not torch.isnan(actual).any(), f"{name}: NaN in the result"
    assert not torch.isnan(expected).any(), f"{name}: NaN in the reference"
    error = (actual - expected).pow(2).mean().sqrt()
    scale = expected.pow(2).mean().sqrt().clamp_min(1e-30)
    assert error / scale <= rtol, f"{name}: relative RMS error {error / scale:.3e} > {rtol:.0e}"


def gradients(outputs_and_cotangents, inputs):
    """Gradients of sum(<output, cotangent>) w.r.t. ``inputs`` (None entries skipped)."""
    loss = sum((o * c).sum() for o, c in outputs_and_cotangents)
    present = [x for x in inputs if x is not None]
    grads = iter(torch.autograd.grad(loss, present))
    return [None if x is None else next(grads) for x in inputs]
