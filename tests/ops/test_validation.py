"""Bad input raises one ValueError naming the argument and what was expected."""
import pytest
import torch

from metafwp.ops import delta_product, delta_rule, fast_weight, srwm


def ok(B=2, T=5, H=3, K=4, V=6):
    return torch.randn(B, T, H, K), torch.randn(B, T, H, K), torch.randn(B, T, H, V)


def test_valid_call_passes():
    q, k, v = ok()
    fast_weight(q, k, v, rule="delta", beta=torch.rand(2, 5, 3))


@pytest.mark.parametrize("call, message", [
    (lambda q, k, v: fast_weight(q, k, v, rule="deltanet"), r"Unknown rule 'deltanet'. Valid: hebbian, delta"),
    (lambda q, k, v: fast_weight(q, k, v, rule="delta", backend="cuda"), r"Unknown backend 'cuda'. Valid: auto"),
    (lambda q, k, v: fast_weight(q[0], k, v, rule="delta"), r"q must have shape \[B, T, H, K\] \(4 dims\), got \(5, 3, 4\)"),
    (lambda q, k, v: fast_weight(q, k[:, :4], v, rule="delta"), r"k must have shape \[B, T, H, K\] = \(2, 5, 3, 4\), got \(2, 4, 3, 4\)"),
    (lambda q, k, v: fast_weight(q, k, v[:1], rule="delta"), r"v must have shape \[B, T, H, V\] \(B, T, H as q\)"),
    (lambda q, k, v: fast_weight(q, k, v[:, :, :2], rule="delta"), r"v must have shape"),
    (lambda q, k, v: fast_weight(q, k, v, rule="delta", beta=torch.rand(2, 5)), r"beta must have shape \[B, T, H\] \(3 dims\)"),
    (lambda q, k, v: fast_weight(q, k, v, rule="delta", beta=torch.rand(2, 5, 1)), r"beta must have shape \[B, T, H\] = \(2, 5, 3\)"),
    (lambda q, k, v: fast_weight(q, k, v, rule="delta", g=torch.zeros(2, 5, 3)), r"rule 'delta' has no decay but g was given"),
    (lambda q, k, v: fast_weight(q, k, v, rule="hebbian", g=torch.zeros(2, 5, 3)), r"rule 'hebbian' has no decay"),
    (lambda q, k, v: fast_weight(q, k, v, rule="decay"), r"rule 'decay' needs the log-decay g of shape \[B, T, H\]"),
    (lambda q, k, v: fast_weight(q, k, v, rule="gla", g=torch.zeros(2, 5, 3)), r"g must have shape \[B, T, H, K\] \(4 dims\)"),
    (lambda q, k, v: fast_weight(q, k, v, rule="gated_delta", g=torch.zeros(2, 5, 3, 4)), r"g must have shape \[B, T, H\] \(3 dims\)"),
    (lambda q, k, v: fast_weight(q, k.double(), v, rule="delta"), r"k has dtype torch.float64 but q has torch.float32"),
    (lambda q, k, v: fast_weight(q, k, v.to("meta"), rule="delta"), r"v is on meta but q is on cpu"),
    (lambda q, k, v: fast_weight(q.long(), k, v, rule="delta"), r"q must be a floating tensor"),
    (lambda q, k, v: fast_weight(q.numpy(), k, v, rule="delta"), r"q must be a torch.Tensor of shape \[B, T, H, K\], got ndarray"),
    (lambda q, k, v: fast_weight(q, k, v, rule="delta", initial_state=torch.zeros(2, 3, 6, 4)), r"initial_state must have shape \[B, H, K, V\] = \(2, 3, 4, 6\)"),
    (lambda q, k, v: fast_weight(q, k, v, rule="delta", chunk_size=0), r"chunk_size must be a positive int, got 0"),
    (lambda q, k, v: fast_weight(q, k, v, rule="delta", scale="big"), r"scale must be a float or None"),
    (lambda q, k, v: delta_rule(q, k, v, None), r"delta_rule needs beta \[B, T, H\]"),
    (lambda q, k, v: delta_product(q, k, v, torch.rand(2, 5, 3)), r"k must have shape \[B, T, H, n, K\] \(5 dims\)"),
    (lambda q, k, v: delta_product(q, k[:, :, :, None], v[:, :, :, None], torch.rand(2, 5, 3, 2)), r"beta must have shape \[B, T, H, n\] = \(2, 5, 3, 1\)"),
    (lambda q, k, v: delta_product(q, k[:, :, :, None], v[:, :, :, None], torch.rand(2, 5, 3, 1), g=torch.zeros(2, 5)), r"g must have shape \[B, T, H\]"),
])
def test_bad_input_names_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call(*ok())


@pytest.mark.parametrize("call, message", [
    (lambda x: srwm(x, torch.zeros(3, 4, 12)), r"W0 must have shape \[H, D, 3D\+4\] = \(3, 4, 16\)"),
    (lambda x: srwm(x, torch.zeros(1, 3, 4, 16)), r"W0 must have shape \[B, H, D, 3D\+4\] = \(2, 3, 4, 16\)"),
    (lambda x: srwm(x, torch.zeros(16)), r"W0 must have shape \[H, D, 3D\+4\] or \[B, H, D, 3D\+4\]"),
    (lambda x: srwm(x[0], torch.zeros(3, 4, 16)), r"x must have shape \[B, T, H, D\]"),
    (lambda x: srwm(x, torch.zeros(3, 4, 16, dtype=torch.long)), r"W0 must be a floating tensor"),
    (lambda x: srwm(x, torch.zeros(3, 4, 16), backend="chunk"), r"Unknown backend 'chunk'. Valid: auto, reference, triton"),
])
def test_srwm_bad_input_names_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call(torch.randn(2, 5, 3, 4))
