"""Delta-rule, gated-delta and mesa semantics equal fla-core 0.6.0's pure-torch references on CPU."""
import pytest
import torch
import torch.nn.functional as F

from metafwp.ops import delta_rule, fast_weight, mesa
from tests.helpers import assert_close

fla_delta = pytest.importorskip("fla.ops.delta_rule.naive", reason="fla-core is a test dependency: pip install -e .[test]")
fla_gated = pytest.importorskip("fla.ops.gated_delta_rule.naive")


def inputs(B, T, H, K, V, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=gen)
    k = F.normalize(torch.randn(B, T, H, K, generator=gen), dim=-1)
    v = torch.randn(B, T, H, V, generator=gen)
    beta = torch.rand(B, T, H, generator=gen)
    g = F.logsigmoid(torch.randn(B, T, H, generator=gen) + 2)
    h0 = torch.randn(B, H, K, V, generator=gen)
    return q, k, v, beta, g, h0


def bhtk(x):  # fla's delta_rule naive functions take [B, H, T, ...]
    return x.transpose(1, 2).contiguous()


@pytest.mark.parametrize("backend", ["reference", "chunk"])
@pytest.mark.parametrize("T", [1, 37, 64])
def test_delta_rule_equals_fla_recurrence(T, backend):
    q, k, v, beta, _, h0 = inputs(2, T, 3, 16, 32)
    o, S = delta_rule(q, k, v, beta, initial_state=h0, output_final_state=True, backend=backend, chunk_size=16)
    o_fla, S_fla = fla_delta.delta_rule_recurrence(bhtk(q), bhtk(k), bhtk(v), bhtk(beta), initial_state=h0.clone())
    assert_close("o", o, o_fla.transpose(1, 2), 1e-5)
    assert_close("final state", S, S_fla, 1e-5)


@pytest.mark.parametrize("chunk_size", [16, 32])
def test_delta_chunk_equals_fla_chunkwise(chunk_size):
    q, k, v, beta, _, _ = inputs(2, 64, 2, 32, 16)
    o, S = delta_rule(q, k, v, beta, output_final_state=True, backend="chunk", chunk_size=chunk_size)
    o_fla, S_fla = fla_delta.delta_rule_chunkwise(bhtk(q), bhtk(k), bhtk(v), bhtk(beta), chunk_size=chunk_size)
    assert_close("o", o, o_fla.transpose(1, 2), 1e-5)
    assert_close("final state", S, S_fla, 1e-5)


@pytest.mark.parametrize("backend", ["reference", "chunk"])
@pytest.mark.parametrize("T", [1, 37, 100])
def test_gated_delta_equals_fla_references(T, backend):
    q, k, v, beta, g, h0 = inputs(2, T, 3, 16, 8)
    o, S = fast_weight(q, k, v, rule="gated_delta", beta=beta, g=g, initial_state=h0, output_final_state=True,
                       backend=backend, chunk_size=16)
    o_rec, S_rec = fla_gated.naive_recurrent_gated_delta_rule(q, k, v, beta, g, initial_state=h0.clone(),
                                                               output_final_state=True)
    o_chunk, S_chunk = fla_gated.naive_chunk_gated_delta_rule(q, k, v, g, beta, chunk_size=16,
                                                               initial_state=h0.clone(), output_final_state=True)
    for name, o_fla, S_fla in [("recurrent", o_rec, S_rec), ("chunk", o_chunk, S_chunk)]:
        assert_close(f"o vs fla {name}", o, o_fla, 1e-5)
        assert_close(f"final state vs fla {name}", S, S_fla, 1e-5)


@pytest.mark.parametrize("backend", ["reference", "chunk"])
def test_mesa_equals_fla_exact_mesa_net(backend):
    """fla's mesa_net with no decay (g = 0), beta = 1 and the same lambda on every key dim is ours."""
    fla_mesa = pytest.importorskip("fla.ops.mesa_net.naive")
    q, k, v, _, _, _ = inputs(2, 29, 3, 8, 8)
    lam = torch.tensor([0.5, 1.0, 2.0])
    o_fla, h_kk, h_kv = fla_mesa.naive_mesa_net_exact(q, k, v, torch.zeros(2, 29, 3), lam[:, None].expand(3, 8),
                                                      torch.ones(2, 29, 3))
    o, state = mesa(q, k, v, lam=lam, scale=1.0, output_final_state=True, backend=backend, chunk_size=8)
    assert_close("o", o, o_fla, 1e-4)
    assert_close("sum k k^T", state[..., :8], h_kk, 1e-5)
    assert_close("sum k v^T", state[..., 8:], h_kv, 1e-5)
