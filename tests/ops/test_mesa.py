"""The mesa rule against its closed form (``torch.linalg.solve`` on each prefix), both backends, with
gradients, gradcheck, carried state and bad input."""
import pytest
import torch
import torch.nn.functional as F

from metafwp.ops import mesa
from tests.helpers import assert_close, gradients

B, T, H, K, V = 2, 11, 3, 4, 5


def mesa_closed_form(q, k, v, lam, scale):
    """``W_t = (sum v k^T)(sum k k^T + lam I)^-1`` from the whole prefix, ``o_t = W_t (scale q_t)``."""
    o = torch.zeros(B, T, H, V, dtype=q.dtype)
    for t in range(T):
        keys, values = k[:, :t + 1].transpose(1, 2), v[:, :t + 1].transpose(1, 2)  # [B, H, t+1, .]
        gram = keys.transpose(-1, -2) @ keys + lam[:, None, None] * torch.eye(K, dtype=q.dtype)
        W_transposed = torch.linalg.solve(gram, keys.transpose(-1, -2) @ values)  # [B, H, K, V]
        o[:, t] = torch.einsum("bhkv,bhk->bhv", W_transposed, scale * q[:, t])
    return o


def inputs(dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=gen, dtype=dtype)
    k = F.normalize(torch.randn(B, T, H, K, generator=gen, dtype=dtype), dim=-1)
    v = torch.randn(B, T, H, V, generator=gen, dtype=dtype)
    return q, k, v


@pytest.mark.parametrize("backend,chunk_size", [("reference", 64), ("chunk", 4), ("chunk", 64)])
def test_mesa_matches_closed_form(backend, chunk_size):
    q, k, v = (x.requires_grad_() for x in inputs())
    lam = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    o, state = mesa(q, k, v, lam=lam, output_final_state=True, backend=backend, chunk_size=chunk_size)
    expected = mesa_closed_form(q, k, v, lam, K ** -0.5)
    assert_close("o", o, expected, 1e-12)
    keys, values = k.transpose(1, 2), v.transpose(1, 2)
    assert_close("state", state, torch.cat([keys.transpose(-1, -2) @ keys, keys.transpose(-1, -2) @ values], -1), 1e-12)
    do = torch.randn(o.shape, generator=torch.Generator().manual_seed(1), dtype=o.dtype)
    for name, a, e in zip("q k v lam".split(), gradients([(o, do)], [q, k, v, lam]),
                          gradients([(expected, do)], [q, k, v, lam])):
        assert_close(f"d{name}", a, e, 1e-11)


def test_mesa_weights_minimise_the_ridge_loss():
    """At W_t the gradient of sum_i ||W k_i - v_i||^2 + lam ||W||^2 vanishes: read W_t column by column."""
    q, k, v = inputs()
    lam, t = 0.7, T - 1
    eye = torch.eye(K, dtype=q.dtype).expand(B, T, H, K, K)
    # o_t = W_t e_j reads column j of W_t: put the basis vectors at step t
    W = torch.stack([mesa(torch.cat([q[:, :t], eye[:, t:t + 1, :, j]], 1), k[:, :t + 1], v[:, :t + 1], lam=lam,
                          scale=1.0)[0][:, t] for j in range(K)], -1)  # [B, H, V, K]
    keys, values = k[:, :t + 1].transpose(1, 2), v[:, :t + 1].transpose(1, 2)
    residual = W @ keys.transpose(-1, -2) - values.transpose(-1, -2)  # [B, H, V, t+1]
    gradient = 2 * residual @ keys + 2 * lam * W
    assert gradient.abs().max() < 1e-12


def test_mesa_gradcheck():
    """The carried sum k k^T is symmetric by construction; gradcheck perturbs it through a factor M M^T."""
    q, k, v = (x[:1, :5, :1].clone().requires_grad_() for x in inputs())
    gen = torch.Generator().manual_seed(2)
    M = torch.randn(1, 1, K, K, generator=gen, dtype=torch.float64, requires_grad=True)
    kv = torch.randn(1, 1, K, V, generator=gen, dtype=torch.float64, requires_grad=True)
    for backend in ("reference", "chunk"):
        def f(q, k, v, M, kv):
            return mesa(q, k, v, lam=0.5, initial_state=torch.cat([M @ M.transpose(-1, -2), kv], -1),
                        output_final_state=True, backend=backend, chunk_size=2)

        assert torch.autograd.gradcheck(f, (q, k, v, M, kv))


@pytest.mark.parametrize("backend", ["reference", "chunk"])
def test_mesa_state_carry_is_exact(backend):
    q, k, v = inputs()
    o, state = mesa(q, k, v, output_final_state=True, backend=backend, chunk_size=4)
    o1, middle = mesa(q[:, :6], k[:, :6], v[:, :6], output_final_state=True, backend=backend, chunk_size=4)
    o2, final = mesa(q[:, 6:], k[:, 6:], v[:, 6:], initial_state=middle, output_final_state=True, backend=backend,
                     chunk_size=4)
    assert_close("o", torch.cat([o1, o2], 1), o, 1e-13)
    assert_close("state", final, state, 1e-13)


def test_mesa_bad_input():
    q, k, v = inputs(torch.float32)
    for lam in (0.0, -1.0, float("inf"), float("nan"), torch.tensor([1.0, 0.0, 1.0]),
                torch.tensor([1.0, 1.0, float("inf")])):
        with pytest.raises(ValueError, match="lam must be finite and > 0"):
            mesa(q, k, v, lam=lam)
    with pytest.raises(ValueError, match=r"lam must be a float or a tensor \[H\] = \[3\]"):
        mesa(q, k, v, lam=torch.ones(2))
    with pytest.raises(ValueError, match=r"initial_state must have shape \[B, H, K, K \+ V\] = \(2, 3, 4, 9\)"):
        mesa(q, k, v, initial_state=torch.zeros(B, H, K, V))
    with pytest.raises(ValueError, match="Unknown backend 'triton'"):
        mesa(q, k, v, backend="triton")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_are_computed_in_float32(dtype):
    """Half-precision q, k, v: the sums and solves run in float32 (the state is float32), the output
    is the float32 reference on the same rounded inputs, rounded once to the input dtype."""
    q, k, v = (x.to(dtype) for x in inputs(torch.float32))
    o, state = mesa(q, k, v, output_final_state=True)
    expected, expected_state = mesa(q.float(), k.float(), v.float(), output_final_state=True, backend="reference")
    assert o.dtype == dtype and state.dtype == torch.float32
    torch.testing.assert_close(o.float(), expected, rtol=1e-2, atol=1e-2)  # one rounding to 8 or 11 mantissa bits
    torch.testing.assert_close(state, expected_state, rtol=1e-5, atol=1e-5)
