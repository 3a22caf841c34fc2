"""Each rule's update is one gradient-descent step on its local loss (Table 1 and Appendix A of Irie & Gershman 2025),
with the gradient taken by autograd in float64. State S = W^T, so v^T W k = k^T S v."""
import pytest
import torch
import torch.nn.functional as F

from metafwp.ops import delta_product, fast_weight


def one_step(rule, S, k, v, beta, g):
    """The op's update of S after one token (T = 1) from initial state S."""
    B, H, K, V = S.shape
    q = torch.zeros(B, 1, H, K, dtype=S.dtype)
    _, S_new = fast_weight(q, k[:, None], v[:, None], rule=rule, beta=beta[:, None], g=None if g is None else g[:, None],
                           initial_state=S, output_final_state=True, backend="reference")
    return S_new


def gd_step(loss_fn, S, lr):
    """S - lr * dL/dS, the gradient by autograd."""
    S = S.detach().requires_grad_()
    (grad,) = torch.autograd.grad(loss_fn(S), S)
    return S.detach() - lr * grad


def similarity(S, k, v):  # sum over batch and heads of v^T W k
    return torch.einsum("bhk,bhkv,bhv->", k, S, v)


@pytest.fixture
def tensors():
    gen = torch.Generator().manual_seed(0)
    B, H, K, V = 2, 3, 6, 5
    S = torch.randn(B, H, K, V, generator=gen, dtype=torch.float64)
    k = F.normalize(torch.randn(B, H, K, generator=gen, dtype=torch.float64), dim=-1)
    v = torch.randn(B, H, V, generator=gen, dtype=torch.float64)
    eta = torch.rand(B, H, generator=gen, dtype=torch.float64)
    log_lam = F.logsigmoid(torch.randn(B, H, generator=gen, dtype=torch.float64))
    log_a = F.logsigmoid(torch.randn(B, H, K, generator=gen, dtype=torch.float64))
    return S, k, v, eta, log_lam, log_a


def per_head(x):  # [B, H] -> broadcastable over [B, H, K, V]
    return x[..., None, None]


def test_hebbian_is_gd_on_negative_similarity(tensors):
    S, k, v, *_ = tensors
    ones = torch.ones(S.shape[:2], dtype=S.dtype)
    expected = gd_step(lambda W: -similarity(W, k, v), S, lr=1.0)
    torch.testing.assert_close(one_step("hebbian", S, k, v, ones, None), expected, rtol=1e-12, atol=1e-12)


def test_delta_is_gd_on_squared_error(tensors):
    S, k, v, eta, *_ = tensors
    # 1/2 ||v - W k||^2 per head, learning rate eta per head (folded into the loss as a weight)
    loss = lambda W: 0.5 * (per_head(eta)[..., 0] * (v - torch.einsum("bhkv,bhk->bhv", W, k)) ** 2).sum()
    torch.testing.assert_close(one_step("delta", S, k, v, eta, None), gd_step(loss, S, 1.0), rtol=1e-12, atol=1e-12)


def test_oja_is_gd_on_similarity_plus_norm(tensors):
    S, k, v, eta, *_ = tensors
    # -v^T W k + 1/2 ||W^T v||^2, where W^T v = S v
    loss = lambda W: (eta * (-torch.einsum("bhk,bhkv,bhv->bh", k, W, v)
                             + 0.5 * torch.einsum("bhkv,bhv->bhk", W, v).pow(2).sum(-1))).sum()
    torch.testing.assert_close(one_step("oja", S, k, v, eta, None), gd_step(loss, S, 1.0), rtol=1e-12, atol=1e-12)


def test_decay_is_gd_on_similarity_plus_l2(tensors):
    """mLSTM row: -eta v^T W k + (1 - lambda)/2 ||W||^2, learning rate 1 (RetNet/Mamba2 at eta = 1)."""
    S, k, v, eta, log_lam, _ = tensors
    lam = log_lam.exp()
    loss = lambda W: (-eta * torch.einsum("bhk,bhkv,bhv->bh", k, W, v)
                      + 0.5 * (1 - lam) * W.pow(2).sum((-1, -2))).sum()
    torch.testing.assert_close(one_step("decay", S, k, v, eta, log_lam), gd_step(loss, S, 1.0), rtol=1e-12, atol=1e-12)


def test_gla_is_gd_on_key_weighted_l2(tensors):
    """-v^T W k + 1/2 sum_k (1 - a_k) ||S_k,:||^2: the decay acts on the key dim (rows of S)."""
    S, k, v, _, _, log_a = tensors
    a = log_a.exp()
    ones = torch.ones(S.shape[:2], dtype=S.dtype)
    loss = lambda W: (-similarity(W, k, v) + 0.5 * ((1 - a)[..., None] * W.pow(2)).sum())
    torch.testing.assert_close(one_step("gla", S, k, v, ones, log_a), gd_step(loss, S, 1.0), rtol=1e-12, atol=1e-12)


def test_gated_delta_is_gd_on_squared_error_from_decayed_state(tensors):
    """Gated DeltaNet (fla's form, docs/protocols.md section 1): one GD step on 1/2 ||v - W k||^2 taken from lambda W."""
    S, k, v, eta, log_lam, _ = tensors
    decayed = per_head(log_lam.exp()) * S
    loss = lambda W: 0.5 * (eta[..., None] * (v - torch.einsum("bhkv,bhk->bhv", W, k)) ** 2).sum()
    torch.testing.assert_close(one_step("gated_delta", S, k, v, eta, log_lam), gd_step(loss, decayed, 1.0),
                               rtol=1e-12, atol=1e-12)


def test_gated_delta_differs_from_the_table_1_row_by_stated_term(tensors):
    """Table 1's row (error against the undecayed W) is GD on 1/2||v - Wk||^2 + (1-lambda)/(2 eta) ||W||^2
    from W; it differs from the published form by eta (1 - lambda) W k k^T (here: S^T form)."""
    S, k, v, eta, log_lam, _ = tensors
    lam = log_lam.exp()
    loss = lambda W: (0.5 * eta[..., None] * (v - torch.einsum("bhkv,bhk->bhv", W, k)) ** 2).sum() + \
        (0.5 * (1 - lam) * W.pow(2).sum((-1, -2))).sum()
    table_row = gd_step(loss, S, 1.0)
    correction = per_head(eta * (1 - lam)) * torch.einsum("bhk,bhj,bhjv->bhkv", k, k, S)
    torch.testing.assert_close(one_step("gated_delta", S, k, v, eta, log_lam), table_row + correction,
                               rtol=1e-12, atol=1e-12)


def test_delta_product_is_n_gd_steps(tensors):
    S, _, _, _, _, _ = tensors
    B, H, K, V = S.shape
    gen = torch.Generator().manual_seed(3)
    ks = F.normalize(torch.randn(B, 1, H, 3, K, generator=gen, dtype=S.dtype), dim=-1)
    vs = torch.randn(B, 1, H, 3, V, generator=gen, dtype=S.dtype)
    betas = torch.rand(B, 1, H, 3, generator=gen, dtype=S.dtype)
    _, S_new = delta_product(torch.zeros(B, 1, H, K, dtype=S.dtype), ks, vs, betas, initial_state=S,
                             output_final_state=True, backend="reference")
    expected = S
    for j in range(3):
        k, v, eta = ks[:, 0, :, j], vs[:, 0, :, j], betas[:, 0, :, j]
        loss = lambda W: 0.5 * (eta[..., None] * (v - torch.einsum("bhkv,bhk->bhv", W, k)) ** 2).sum()
        expected = gd_step(loss, expected, 1.0)
    torch.testing.assert_close(S_new, expected, rtol=1e-12, atol=1e-12)
