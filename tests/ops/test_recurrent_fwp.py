"""The recurrent FWPs against loops written here from the paper's equations, one sequence and head at
a time, in its convention (W [values x keys], ``W += b (v - W k) k^T``, ``y = W q``): outputs, final
states and every gradient in float64, on both backends of the delta-rule parts; gradcheck; carried
states; the recomputing backward; the compiled loop's segments and its fallback; bad input."""
import warnings

import pytest
import torch
import torch.nn.functional as F

from metafwp.ops import (DeltaLSTMState, DeltaRNNState, delta_delta, delta_lstm, delta_mlp, delta_rnn,
                         recurrent_delta)
from metafwp.ops import time_loop
from metafwp.ops.recurrent_fwp import sum_normalised_elu
from tests.helpers import assert_close, gradients

B, T, H, d = 2, 9, 2, 4
BACKENDS = ["reference", "chunk"]


def delta(W, k, v, b):
    """The delta rule on W [values x keys]."""
    return W + b * torch.outer(v - W @ k, k)


def transposed(W):
    """The op's keys x values layout of a [..., values, keys] matrix."""
    return W.transpose(-1, -2)


def delta_rnn_from_equations(q, k, v, beta, rk, rv, rbeta):
    ys, finals = torch.zeros(B, T, H, d, dtype=q.dtype), []
    for b in range(B):
        for h in range(H):
            W, R, y = q.new_zeros(d, d), q.new_zeros(d, d), q.new_zeros(d)
            for t in range(T):
                W = delta(W, k[b, t, h], v[b, t, h], beta[b, t, h])
                R = delta(R, rk[b, t, h], rv[b, t, h], rbeta[b, t, h])
                y = R @ y.softmax(0) + W @ q[b, t, h]
                ys = ys.index_put((torch.tensor(b), torch.tensor(t), torch.tensor(h)), y)
            finals.append((transposed(W), transposed(R), y))
    return ys, [torch.stack(x).view(B, H, *x[0].shape) for x in zip(*finals)]


def delta_lstm_from_equations(q, k, v, beta, rk, rv, rbeta):
    hs, finals = torch.zeros(B, T, H, d, dtype=q.dtype), []
    for b in range(B):
        for hd in range(H):
            W, R = [q.new_zeros(d, d)] * 3, [q.new_zeros(d, d)] * 3
            h, c = q.new_zeros(d), q.new_zeros(d)
            for t in range(T):
                s = h.softmax(0)
                pre = []
                for g in range(3):
                    W[g] = delta(W[g], k[b, t, hd, g], v[b, t, hd, g], beta[b, t, hd, g])
                    R[g] = delta(R[g], rk[b, t, hd, g], rv[b, t, hd, g], rbeta[b, t, hd, g])
                    pre.append(R[g] @ s + W[g] @ q[b, t, hd, g])
                i, u, o = pre[0].sigmoid(), pre[1], pre[2].sigmoid()
                c = i * u + (1 - i) * c
                h = o * c
                hs = hs.index_put((torch.tensor(b), torch.tensor(t), torch.tensor(hd)), h)
            finals.append((transposed(torch.stack(W)), transposed(torch.stack(R)), h, c))
    return hs, [torch.stack(x).view(B, H, *x[0].shape) for x in zip(*finals)]


def recurrent_delta_from_equations(q, k, v, beta, recurrent):
    ys, finals = torch.zeros(B, T, H, d, dtype=q.dtype), []
    for b in range(B):
        for h in range(H):
            R_q, R_k, R_v = (transposed(recurrent[h, :, i * d:(i + 1) * d]) for i in range(3))
            r_b = recurrent[h, :, 3 * d]
            W, y = q.new_zeros(d, d), q.new_zeros(d)
            for t in range(T):
                a = y.tanh()
                q_t = (q[b, t, h] + R_q @ a).softmax(0)
                k_t = (k[b, t, h] + R_k @ a).softmax(0)
                v_t = v[b, t, h] + R_v @ a
                b_t = (beta[b, t, h] + r_b @ a).sigmoid()
                W = delta(W, k_t, v_t, b_t)
                y = W @ q_t
                ys = ys.index_put((torch.tensor(b), torch.tensor(t), torch.tensor(h)), y)
            finals.append((transposed(W), y))
    return ys, [torch.stack(x).view(B, H, *x[0].shape) for x in zip(*finals)]


def phi(x):
    x = F.elu(x) + 1
    return x / x.sum()


def delta_mlp_from_equations(q, k1, v1, beta1, k2, v2, beta2):
    n, F_ = k1.shape[3], v1.shape[-1]
    ys, finals = torch.zeros(B, T, H, d, dtype=q.dtype), []
    for b in range(B):
        for h in range(H):
            W1, W2 = [q.new_zeros(F_, d)] * n, [q.new_zeros(d, F_)] * n
            for t in range(T):
                x = q[b, t, h]
                for layer in range(n):
                    W1[layer] = delta(W1[layer], k1[b, t, h, layer], v1[b, t, h, layer], beta1[b, t, h, layer])
                    W2[layer] = delta(W2[layer], k2[b, t, h, layer], v2[b, t, h, layer], beta2[b, t, h, layer])
                    a = phi((x - x.mean()) / (x.var(unbiased=False) + 1e-5).sqrt())
                    x = x + W2[layer] @ phi(W1[layer] @ a)
                ys = ys.index_put((torch.tensor(b), torch.tensor(t), torch.tensor(h)), x)
            finals.append((transposed(torch.stack(W1)), transposed(torch.stack(W2))))
    return ys, [torch.stack(x).view(B, H, *x[0].shape) for x in zip(*finals)]


def delta_delta_from_equations(q, k, v, beta):
    ys, finals = torch.zeros(B, T, H, d, dtype=q.dtype), []
    for b in range(B):
        for h in range(H):
            S, W = q.new_zeros(3 * d + 1, d), q.new_zeros(d, d)
            for t in range(T):
                S = delta(S, k[b, t, h], v[b, t, h], beta[b, t, h])
                p = S @ q[b, t, h]
                q2, k2, v2, b2 = phi(p[:d]), phi(p[d:2 * d]), p[2 * d:3 * d], p[3 * d].sigmoid()
                W = delta(W, k2, v2, b2)
                ys = ys.index_put((torch.tensor(b), torch.tensor(t), torch.tensor(h)), W @ q2)
            finals.append((transposed(S), transposed(W)))
    return ys, [torch.stack(x).view(B, H, *x[0].shape) for x in zip(*finals)]


def inputs(kind: str, dtype=torch.float64, seed: int = 0):
    """The op's inputs for ``kind``, as a layer would map them (sum-normalised or softmax keys)."""
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=gen, dtype=dtype)  # noqa: E731
    rate = lambda *shape: torch.rand(*shape, generator=gen, dtype=dtype)  # noqa: E731
    if kind == "delta_rnn":
        return [sum_normalised_elu(rand(B, T, H, d)), sum_normalised_elu(rand(B, T, H, d)), rand(B, T, H, d),
                rate(B, T, H), rand(B, T, H, d).softmax(-1), rand(B, T, H, d), rate(B, T, H)]
    if kind == "delta_lstm":
        return [sum_normalised_elu(rand(B, T, H, 3, d)), sum_normalised_elu(rand(B, T, H, 3, d)),
                rand(B, T, H, 3, d), rate(B, T, H, 3), rand(B, T, H, 3, d).softmax(-1), rand(B, T, H, 3, d),
                rate(B, T, H, 3)]
    if kind == "recurrent_delta":
        return [rand(B, T, H, d), rand(B, T, H, d), rand(B, T, H, d), rand(B, T, H), rand(H, d, 3 * d + 1) / d ** 0.5]
    if kind == "delta_mlp":
        n, F_ = 2, 6
        return [rand(B, T, H, d), sum_normalised_elu(rand(B, T, H, n, d)), rand(B, T, H, n, F_), rate(B, T, H, n),
                sum_normalised_elu(rand(B, T, H, n, F_)), rand(B, T, H, n, d), rate(B, T, H, n)]
    return [sum_normalised_elu(rand(B, T, H, d)), sum_normalised_elu(rand(B, T, H, d)), rand(B, T, H, 3 * d + 1),
            rate(B, T, H)]


OPS = {"delta_rnn": (delta_rnn, delta_rnn_from_equations), "delta_lstm": (delta_lstm, delta_lstm_from_equations),
       "recurrent_delta": (recurrent_delta, recurrent_delta_from_equations),
       "delta_mlp": (delta_mlp, delta_mlp_from_equations), "delta_delta": (delta_delta, delta_delta_from_equations)}
HAS_BACKEND = ("delta_rnn", "delta_lstm", "delta_mlp", "delta_delta")  # recurrent_delta is all loop


def run(kind, tensors, **options):
    op = OPS[kind][0]
    if kind not in HAS_BACKEND:
        options.pop("backend", None)
    return op(*tensors, output_final_state=True, **options)


OPS_AND_BACKENDS = [(kind, backend) for kind in OPS for backend in (BACKENDS if kind in HAS_BACKEND else ["reference"])]


@pytest.mark.parametrize("kind,backend", OPS_AND_BACKENDS)
def test_matches_equations(kind, backend):
    tensors = [x.requires_grad_() for x in inputs(kind)]
    y, state = run(kind, tensors, backend=backend)
    y_ref, state_ref = OPS[kind][1](*tensors)
    assert_close("y", y, y_ref, 1e-12)
    for name, a, e in zip(state._fields, state, state_ref):
        assert_close(f"final {name}", a, e, 1e-12)
    gen = torch.Generator().manual_seed(1)
    cotangents = [torch.randn(x.shape, generator=gen, dtype=x.dtype) for x in (y, *state)]
    actual = gradients(zip((y, *state), cotangents), tensors)
    expected = gradients(zip((y_ref, *state_ref), cotangents), tensors)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert_close(f"gradient of input {i}", a, e, 1e-11)


@pytest.mark.parametrize("kind", ["delta_rnn", "delta_lstm"])
def test_chunk_size_of_w_matches_equations(kind):
    """W's chunk form in chunks of 4 over T = 9 (three chunks, the last one short)."""
    tensors = inputs(kind)
    y, state = run(kind, tensors, backend="chunk", chunk_size=4)
    y_ref, state_ref = OPS[kind][1](*tensors)
    assert_close("y", y, y_ref, 1e-12)
    assert_close("final W", state.W, state_ref[0], 1e-12)


def in_time(x):
    return x.shape[:2] == (B, T)


@pytest.mark.parametrize("kind", list(OPS))
def test_gradcheck(kind):
    tensors = [(x[:1, :4].clone() if in_time(x) else x).requires_grad_() for x in inputs(kind)]

    def f(*xs):
        y, state = run(kind, xs, backend="reference")
        return (y, *state)

    assert torch.autograd.gradcheck(f, tensors)


@pytest.mark.parametrize("kind", list(OPS))
def test_state_carry_is_exact(kind):
    tensors = inputs(kind)
    y, state = run(kind, tensors)
    cut = 4
    first = [x[:, :cut] if in_time(x) else x for x in tensors]
    rest = [x[:, cut:] if in_time(x) else x for x in tensors]
    y1, middle = run(kind, first)
    y2, final = run(kind, rest, initial_state=middle)
    assert_close("y", torch.cat([y1, y2], 1), y, 1e-12)
    for name, a, e in zip(state._fields, final, state):
        assert_close(f"final {name}", a, e, 1e-12)


@pytest.mark.parametrize("kind", ["delta_rnn", "delta_lstm", "recurrent_delta"])
def test_recomputing_backward_gives_the_same_gradients(kind):
    tensors = [x.requires_grad_() for x in inputs(kind)]
    y, state = run(kind, tensors)
    y_r, state_r = run(kind, tensors, recompute=4)
    assert_close("y", y_r, y, 1e-14)
    gen = torch.Generator().manual_seed(2)
    cotangents = [torch.randn(x.shape, generator=gen, dtype=x.dtype) for x in (y, *state)]
    for i, (a, e) in enumerate(zip(gradients(zip((y_r, *state_r), cotangents), tensors),
                                   gradients(zip((y, *state), cotangents), tensors))):
        assert_close(f"gradient of input {i}", a, e, 1e-13)


def test_recomputing_backward_stores_fewer_states():
    """Autograd keeps the RDN's per-step W without recompute (T B H d^2 numbers at least), and the
    inputs plus one state per C steps with it."""
    tensors = [torch.cat([x] * 8, 1) if in_time(x) else x for x in inputs("recurrent_delta", dtype=torch.float32)]
    tensors = [x.requires_grad_() for x in tensors]
    saved = {}
    for recompute in (None, 24):
        numbers = []
        with torch.autograd.graph.saved_tensors_hooks(lambda x: numbers.append(x.numel()) or x, lambda x: x):
            recurrent_delta(*tensors, recompute=recompute)
        saved[recompute] = sum(numbers)
    steps = 8 * T
    assert saved[None] >= steps * B * H * d * d
    assert saved[24] < saved[None] / 3


def test_delta_rnn_reads_uniform_softmax_first():
    """y_0 = R_1 softmax(0) + W_1 q_1: the first step reads R's column mean."""
    q, k, v, beta, rk, rv, rbeta = inputs("delta_rnn")
    y, _ = delta_rnn(q, k, v, beta, rk, rv, rbeta, backend="reference")
    W1 = (beta[:, 0, :, None, None] * k[:, 0, :, :, None] * v[:, 0, :, None, :])
    R1 = (rbeta[:, 0, :, None, None] * rk[:, 0, :, :, None] * rv[:, 0, :, None, :])
    expected = torch.einsum("bhkv,bhk->bhv", R1, torch.full_like(rk[:, 0], 1 / d)) + torch.einsum(
        "bhkv,bhk->bhv", W1, q[:, 0])
    torch.testing.assert_close(y[:, 0], expected)


def test_bad_carried_state_is_refused():
    tensors = inputs("delta_rnn", dtype=torch.float32)
    _, state = delta_rnn(*tensors, output_final_state=True)
    with pytest.raises(ValueError, match=r"initial_state.R must have shape \[2, 2, 4, 4\]"):
        delta_rnn(*tensors, initial_state=state._replace(R=state.R[:, :1]))
    with pytest.raises(ValueError, match=r"initial_state.y has dtype torch.float64.*cast it"):
        delta_rnn(*tensors, initial_state=state._replace(y=state.y.double()))
    with pytest.raises(ValueError, match="initial_state must be a DeltaRNNState"):
        delta_rnn(*tensors, initial_state=state.W)
    lstm = inputs("delta_lstm", dtype=torch.float32)
    with pytest.raises(ValueError, match="initial_state must be a DeltaLSTMState"):
        delta_lstm(*lstm, initial_state=DeltaRNNState(*state))
    with pytest.raises(ValueError, match=r"q must have shape \[B, T, H, 3, d\]"):
        delta_lstm(*[x[:, :, :, :2] if x.ndim == 5 else x for x in lstm[:1]], *lstm[1:])
    with pytest.raises(ValueError, match=r"recurrent must have shape \[H, d, 3d\+1\]"):
        rdn = inputs("recurrent_delta", dtype=torch.float32)
        recurrent_delta(*rdn[:4], rdn[4][:, :, :-1])
    assert DeltaLSTMState._fields == ("W", "R", "h", "c")


LOOP_KINDS = ["delta_rnn", "delta_lstm", "recurrent_delta"]


@pytest.fixture
def fresh_compile_cache(monkeypatch):
    monkeypatch.setattr(time_loop, "_COMPILED", {})
    monkeypatch.setattr(time_loop, "_FAILED", set())


@pytest.mark.parametrize("recompute", [None, 8])
@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_compiled_loop_segments_match_equations(kind, recompute, fresh_compile_cache, monkeypatch):
    """The compiled loop's segmenting (8 steps a call, the 1 left over eager; inside checkpoints of 8
    too) with torch.compile replaced by the identity, so the test pays no compile time."""
    monkeypatch.setattr(time_loop.torch, "compile", lambda fn, **options: fn)
    tensors = [x.requires_grad_() for x in inputs(kind)]
    y, state = run(kind, tensors, compile_loop=True, recompute=recompute)
    y_ref, state_ref = OPS[kind][1](*tensors)
    assert_close("y", y, y_ref, 1e-12)
    for name, a, e in zip(state._fields, state, state_ref):
        assert_close(f"final {name}", a, e, 1e-12)
    for i, (a, e) in enumerate(zip(gradients([(y, y_ref.detach().sin())], tensors),
                                   gradients([(y_ref, y_ref.detach().sin())], tensors))):
        assert_close(f"gradient of input {i}", a, e, 1e-11)


def test_a_compile_that_fails_warns_once_and_runs_the_eager_loop(fresh_compile_cache, monkeypatch):
    def failing_compile(fn, **options):
        def compiled(*args):
            raise RuntimeError("no C++ compiler found\nmore detail")
        return compiled
    monkeypatch.setattr(time_loop.torch, "compile", failing_compile)
    tensors = inputs("delta_rnn")
    with pytest.warns(RuntimeWarning, match=r"compile_loop: torch.compile failed for _delta_rnn_step "
                                            r"\(RuntimeError: no C\+\+ compiler found\); running the eager loop"):
        y, _ = run("delta_rnn", tensors, compile_loop=True)
    assert_close("y", y, OPS["delta_rnn"][1](*tensors)[0], 1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run("delta_rnn", tensors, compile_loop=True)  # known to fail: eager, no second warning
