"""Sliding-window attention against a loop written from its definition (float64): outputs and
gradients at several windows, the full causal attention when the window covers the sequence, the
value itself with a window of one, and bad input."""
import pytest
import torch
import torch.nn.functional as F

from metafwp.ops.window_attention import sliding_window_attention
from tests.helpers import assert_close


def window_attention_by_hand(q, k, v, window):
    B, T, H, D = q.shape
    out = torch.zeros(B, T, H, v.shape[-1], dtype=q.dtype)
    for b in range(B):
        for h in range(H):
            for t in range(T):
                s = range(max(0, t - window + 1), t + 1)
                weights = torch.stack([q[b, t, h] @ k[b, i, h] for i in s]).mul(D ** -0.5).softmax(0)
                out[b, t, h] = sum(w * v[b, i, h] for w, i in zip(weights, s))
    return out


def inputs(T=9, Dv=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(2, T, 3, d, generator=gen, dtype=torch.float64, requires_grad=True) for d in (4, 4, Dv)]


@pytest.mark.parametrize("window", [1, 2, 4, 9, 20])
def test_matches_the_definition_values_and_gradients(window):
    q, k, v = inputs()
    ours, expected = sliding_window_attention(q, k, v, window), window_attention_by_hand(q, k, v, window)
    assert_close("out", ours, expected, 1e-13)
    cotangent = torch.randn_like(ours)
    for a, e in zip(torch.autograd.grad((ours * cotangent).sum(), (q, k, v)),
                    torch.autograd.grad((expected * cotangent).sum(), (q, k, v))):
        assert_close("gradient", a, e, 1e-12)


def test_a_window_over_the_whole_sequence_is_causal_attention_and_a_window_of_one_is_the_value():
    q, k, v = inputs(Dv=4)
    full = F.scaled_dot_product_attention(*(x.transpose(1, 2) for x in (q, k, v)), is_causal=True).transpose(1, 2)
    assert_close("window >= T", sliding_window_attention(q, k, v, 9), full, 1e-13)
    assert_close("window 1", sliding_window_attention(q, k, v, 1), v, 1e-15)


@pytest.mark.parametrize("window,message", [(0, "window must be an int >= 1"), (2.5, "window must be an int >= 1")])
def test_bad_window(window, message):
    q, k, v = inputs()
    with pytest.raises(ValueError, match=message):
        sliding_window_attention(q, k, v, window)
