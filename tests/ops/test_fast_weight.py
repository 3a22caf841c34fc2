"""Every rule and backend against a float64 loop written here from the equations (Table 1
of Irie & Gershman 2025, in its orientation W = S^T [V, K]): outputs, final states and every gradient."""
import pytest
import torch
import torch.nn.functional as F

from metafwp.ops import RULES, delta_product, delta_rule, fast_weight
from metafwp.ops import explain_backend
from metafwp.ops.backends import CHUNK_MIN_STEPS
from tests.helpers import assert_close, gradients, make_inputs

# (B, T, H, K, V): T = 1, 7, 63, 100 (not multiples of the chunk of 16), K != V, head dims 8, 16, 64
SHAPES = [(2, 1, 2, 8, 8), (2, 7, 3, 16, 8), (1, 63, 2, 8, 16), (1, 100, 2, 64, 16), (2, 100, 1, 15, 64)]
SHAPE_IDS = [f"B{b}-T{t}-H{h}-K{k}-V{v}" for b, t, h, k, v in SHAPES]
CHUNK = 16


def loop_from_equations(q, k, v, beta, g, rule, scale, h0):
    """W [B, H, V, K] updated by Table 1's row for ``rule``; y_t = W_t (scale q_t)."""
    W = h0.transpose(-1, -2)
    ys = []
    for t in range(q.shape[1]):
        q_t, k_t, v_t, b_t = q[:, t], k[:, t], v[:, t], beta[:, t, :, None, None]
        if rule in ("decay", "gated_delta"):
            W = g[:, t].exp()[..., None, None] * W
        if rule == "gla":
            W = W * g[:, t].exp()[..., None, :]  # decays the key dim: columns of W
        if rule in ("delta", "gated_delta"):
            error = v_t - torch.einsum("bhvk,bhk->bhv", W, k_t)
            W = W + b_t * torch.einsum("bhv,bhk->bhvk", error, k_t)
        elif rule == "oja":
            residual = k_t - torch.einsum("bhvk,bhv->bhk", W, v_t)
            W = W + b_t * torch.einsum("bhv,bhk->bhvk", v_t, residual)
        else:
            W = W + b_t * torch.einsum("bhv,bhk->bhvk", v_t, k_t)
        ys.append(torch.einsum("bhvk,bhk->bhv", W, scale * q_t))
    return torch.stack(ys, 1), W.transpose(-1, -2)


def detached(inputs):
    return [x if x is None else x.detach() for x in inputs]


@pytest.mark.parametrize("backend", ["reference", "chunk"])
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_rule_matches_equations(rule, backend, shape):
    B, T, H, K, V = shape
    q, k, v, beta, g, h0 = make_inputs(rule, *shape)
    o, S = fast_weight(q, k, v, rule=rule, beta=beta, g=g, initial_state=h0, output_final_state=True,
                       backend=backend, chunk_size=CHUNK)
    o_ref, S_ref = loop_from_equations(q, k, v, beta, g, rule, K ** -0.5, h0)
    assert_close("o", o, o_ref, 1e-10)
    assert_close("final state", S, S_ref, 1e-10)

    gen = torch.Generator().manual_seed(1)
    do, dS = torch.randn(o.shape, generator=gen, dtype=o.dtype), torch.randn(S.shape, generator=gen, dtype=S.dtype)
    inputs = [q, k, v, beta, g, h0]
    ours = gradients([(o, do), (S, dS)], inputs)
    expected = gradients([(o_ref, do), (S_ref, dS)], inputs)
    for name, a, e in zip(["dq", "dk", "dv", "dbeta", "dg", "dh0"], ours, expected):
        if e is not None:
            assert_close(name, a, e, 1e-9)


@pytest.mark.parametrize("rule", RULES)
def test_chunk_float32_matches_float64_reference(rule):
    inputs64 = detached(make_inputs(rule, 2, 100, 2, 32, 16))
    inputs32 = [x if x is None else x.float() for x in inputs64]
    q, k, v, beta, g, h0 = inputs32
    o, S = fast_weight(q, k, v, rule=rule, beta=beta, g=g, initial_state=h0, output_final_state=True,
                       backend="chunk", chunk_size=32)
    o_ref, S_ref = loop_from_equations(*inputs64[:5], rule, 32 ** -0.5, inputs64[5])
    assert o.dtype == torch.float32
    assert_close("o", o, o_ref, 1e-5)
    assert_close("final state", S, S_ref, 1e-5)


@pytest.mark.parametrize("backend", ["reference", "chunk"])
def test_bfloat16_inputs_compute_in_float32(backend):
    q, k, v, beta, g, h0 = detached(make_inputs("gated_delta", 2, 40, 2, 16, 16))
    o, S = fast_weight(q.bfloat16(), k.bfloat16(), v.bfloat16(), rule="gated_delta", beta=beta.bfloat16(),
                       g=g.bfloat16(), output_final_state=True, backend=backend, chunk_size=CHUNK)
    o_ref, S_ref = loop_from_equations(*(x.bfloat16().double() for x in (q, k, v, beta, g)), "gated_delta",
                                       16 ** -0.5, torch.zeros_like(h0))
    assert o.dtype == torch.bfloat16 and S.dtype == torch.float32
    assert_close("o", o, o_ref, 1e-2)
    assert_close("final state", S, S_ref, 1e-5)


@pytest.mark.parametrize("rule", RULES)
def test_defaults_beta_ones_zero_state_and_scale(rule):
    q, k, v, _, g, _ = detached(make_inputs(rule, 1, 9, 2, 8, 8))
    o, S = fast_weight(q, k, v, rule=rule, g=g, output_final_state=True, backend="reference")
    o_ref, S_ref = loop_from_equations(q, k, v, torch.ones(1, 9, 2, dtype=q.dtype), g, rule, 8 ** -0.5,
                                       torch.zeros(1, 2, 8, 8, dtype=q.dtype))
    assert_close("o", o, o_ref, 1e-12)
    assert_close("final state", S, S_ref, 1e-12)
    o_scaled, none = fast_weight(q, k, v, rule=rule, g=g, scale=0.5, backend="reference")
    assert none is None
    assert_close("scale", o_scaled, o * (0.5 / 8 ** -0.5), 1e-12)


@pytest.mark.parametrize("T, K, expected", [(CHUNK_MIN_STEPS - 1, 8, "reference"), (CHUNK_MIN_STEPS, 8, "chunk"),
                                             (3, 32, "reference"), (4, 32, "chunk"), (100, 8, "chunk")])
def test_auto_picks_a_backend_that_agrees(T, K, expected):
    q, k, v, beta, _, h0 = detached(make_inputs("delta", 1, T, 2, K, 8))
    o_auto, S_auto = delta_rule(q, k, v, beta, initial_state=h0, output_final_state=True)
    o_ref, S_ref = delta_rule(q, k, v, beta, initial_state=h0, output_final_state=True, backend="reference")
    assert explain_backend("delta_rule", q).backend == expected
    assert_close("o", o_auto, o_ref, 1e-12)
    assert_close("final state", S_auto, S_ref, 1e-12)


def test_chunk_size_does_not_change_the_result():
    q, k, v, beta, g, h0 = detached(make_inputs("gated_delta", 2, 50, 2, 8, 8))
    results = [fast_weight(q, k, v, rule="gated_delta", beta=beta, g=g, initial_state=h0, output_final_state=True,
                           backend="chunk", chunk_size=C) for C in (1, 3, 16, 50, 64)]
    for o, S in results[1:]:
        assert_close("o", o, results[0][0], 1e-12)
        assert_close("final state", S, results[0][1], 1e-12)


def test_negative_eigenvalues_beta_up_to_two():
    """b in (0, 2) (2*sigmoid) is the same recurrence; the chunk form stays exact."""
    q, k, v, beta, _, h0 = detached(make_inputs("delta", 2, 70, 2, 16, 16))
    beta = 2 * beta
    o, S = delta_rule(q, k, v, beta, initial_state=h0, output_final_state=True, backend="chunk", chunk_size=CHUNK)
    o_ref, S_ref = loop_from_equations(q, k, v, beta, None, "delta", 16 ** -0.5, h0)
    assert_close("o", o, o_ref, 1e-10)
    assert_close("final state", S, S_ref, 1e-10)


# DeltaProduct (Siems et al. 2025): n delta micro-steps per token

def delta_product_from_equations(q, k, v, beta, g, scale, h0):
    W = h0.transpose(-1, -2)
    ys = []
    for t in range(q.shape[1]):
        if g is not None:
            W = g[:, t].exp()[..., None, None] * W
        for j in range(k.shape[3]):
            k_j, v_j, b_j = k[:, t, :, j], v[:, t, :, j], beta[:, t, :, j, None, None]
            error = v_j - torch.einsum("bhvk,bhk->bhv", W, k_j)
            W = W + b_j * torch.einsum("bhv,bhk->bhvk", error, k_j)
        ys.append(torch.einsum("bhvk,bhk->bhv", W, scale * q[:, t]))
    return torch.stack(ys, 1), W.transpose(-1, -2)


@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated"])
@pytest.mark.parametrize("backend", ["reference", "chunk"])
@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("T", [1, 7, 37])
def test_delta_product_matches_equations(T, n, backend, gated):
    B, H, K, V = 2, 2, 8, 16
    gen = torch.Generator().manual_seed(T * 10 + n)
    q = torch.randn(B, T, H, K, generator=gen, dtype=torch.float64, requires_grad=True)
    k = F.normalize(torch.randn(B, T, H, n, K, generator=gen, dtype=torch.float64), dim=-1).requires_grad_()
    v = torch.randn(B, T, H, n, V, generator=gen, dtype=torch.float64, requires_grad=True)
    beta = (2 * torch.rand(B, T, H, n, generator=gen, dtype=torch.float64)).requires_grad_()
    g = F.logsigmoid(torch.randn(B, T, H, generator=gen, dtype=torch.float64)).requires_grad_() if gated else None
    h0 = torch.randn(B, H, K, V, generator=gen, dtype=torch.float64, requires_grad=True)
    o, S = delta_product(q, k, v, beta, g=g, initial_state=h0, output_final_state=True, backend=backend,
                         chunk_size=5)
    o_ref, S_ref = delta_product_from_equations(q, k, v, beta, g, K ** -0.5, h0)
    assert_close("o", o, o_ref, 1e-10)
    assert_close("final state", S, S_ref, 1e-10)
    do, dS = torch.randn_like(o), torch.randn_like(S)
    inputs = [q, k, v, beta, g, h0]
    for name, a, e in zip(["dq", "dk", "dv", "dbeta", "dg", "dh0"], gradients([(o, do), (S, dS)], inputs),
                          gradients([(o_ref, do), (S_ref, dS)], inputs)):
        if e is not None:
            assert_close(name, a, e, 1e-9)


@pytest.mark.parametrize("backend", ["reference", "chunk"])
def test_delta_product_with_one_step_is_the_delta_rule_of_the_equations(backend):
    q, k, v, beta, _, h0 = detached(make_inputs("delta", 2, 30, 2, 8, 8))
    o, S = delta_product(q, k.unsqueeze(3), v.unsqueeze(3), beta.unsqueeze(3), initial_state=h0,
                         output_final_state=True, backend=backend)
    o_loop, S_loop = loop_from_equations(q, k, v, beta, None, "delta", 8 ** -0.5, h0)
    assert_close("o", o, o_loop, 1e-12)
    assert_close("final state", S, S_loop, 1e-12)
