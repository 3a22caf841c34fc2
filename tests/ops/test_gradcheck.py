"""torch.autograd.gradcheck in float64 on small shapes: the chunk forms and the SRWM loop."""
import pytest
import torch
import torch.nn.functional as F

from metafwp.ops import RULES, delta_product, fast_weight, srwm, srwm_columns


@pytest.mark.parametrize("rule", RULES)
def test_chunk_gradcheck(rule):
    B, T, H, K, V = 1, 5, 2, 3, 2
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(B, T, H, K, generator=gen, dtype=torch.float64)
    k = F.normalize(torch.randn(B, T, H, K, generator=gen, dtype=torch.float64), dim=-1)
    v = torch.randn(B, T, H, V, generator=gen, dtype=torch.float64)
    beta = torch.rand(B, T, H, generator=gen, dtype=torch.float64)
    g_shape = {"decay": (B, T, H), "gated_delta": (B, T, H), "gla": (B, T, H, K)}.get(rule)
    g = None if g_shape is None else -torch.rand(g_shape, generator=gen, dtype=torch.float64)
    h0 = torch.randn(B, H, K, V, generator=gen, dtype=torch.float64)
    tensors = [x.requires_grad_() for x in (q, k, v, beta, h0) + (() if g is None else (g,))]

    def f(q, k, v, beta, h0, g=None):
        return fast_weight(q, k, v, rule=rule, beta=beta, g=g, initial_state=h0, output_final_state=True,
                           backend="chunk", chunk_size=2)

    assert torch.autograd.gradcheck(f, tensors)


def test_delta_product_chunk_gradcheck():
    B, T, H, n, K, V = 1, 3, 1, 2, 3, 2
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(B, T, H, K, generator=gen, dtype=torch.float64, requires_grad=True)
    k = F.normalize(torch.randn(B, T, H, n, K, generator=gen, dtype=torch.float64), dim=-1).requires_grad_()
    v = torch.randn(B, T, H, n, V, generator=gen, dtype=torch.float64, requires_grad=True)
    beta = torch.rand(B, T, H, n, generator=gen, dtype=torch.float64, requires_grad=True)
    g = (-torch.rand(B, T, H, generator=gen, dtype=torch.float64)).requires_grad_()
    f = lambda q, k, v, beta, g: delta_product(q, k, v, beta, g=g, backend="chunk", chunk_size=4)[0]
    assert torch.autograd.gradcheck(f, (q, k, v, beta, g))


@pytest.mark.parametrize("per_sequence", [False, True], ids=["shared-W0", "per-sequence-W0"])
def test_srwm_gradcheck(per_sequence):
    B, T, H, D = 2, 4, 1, 3
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, H, D, generator=gen, dtype=torch.float64, requires_grad=True)
    shape = (B, H, D, srwm_columns(D)) if per_sequence else (H, D, srwm_columns(D))
    W0 = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, W0: srwm(x, W0, output_final_state=True), (x, W0))
