"""The Triton kernels against the reference loop: outputs, final states and every gradient.

Without a GPU they run under TRITON_INTERPRET=1 (set by tests/conftest.py) in float32 on small,
ragged shapes; tests/ops/test_triton_gpu.py covers bf16 and large shapes on CUDA.
"""
import pytest
import torch

from metafwp.ops import delta_product, explain_backend, fast_weight, srwm, srwm_columns
from metafwp.ops.backends import TRITON_RULES
from tests.helpers import assert_close, gradients, make_inputs

pytest.importorskip("triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# (B, T, H, K, V): T = 1 and 37 (ragged), K = 15 (not a power of two), V = 40 and 64 (two value
# blocks of 32, the second one partly masked), V != K
SHAPES = [(2, 1, 2, 15, 15), (2, 37, 1, 15, 40), (1, 20, 3, 16, 64)]
SHAPE_IDS = [f"B{b}-T{t}-H{h}-K{k}-V{v}" for b, t, h, k, v in SHAPES]


def on_device(inputs):
    return [x if x is None else x.detach().float().to(DEVICE).requires_grad_() for x in inputs]


def check_against_reference(run, inputs, names, rtol):
    """``run(*inputs, backend)`` -> (output, final state); compare triton with reference."""
    results = {}
    for backend in ("triton", "reference"):
        out, final = run(*inputs, backend=backend)
        gen = torch.Generator().manual_seed(1)
        d_out = torch.randn(out.shape, generator=gen).to(out)
        d_final = torch.randn(final.shape, generator=gen).to(final)
        results[backend] = [out, final, *gradients([(out, d_out), (final, d_final)], inputs)]
    for name, ours, expected in zip(["output", "final state", *names], results["triton"], results["reference"]):
        if expected is not None:
            assert_close(name, ours, expected, rtol)


@pytest.mark.parametrize("rule", TRITON_RULES)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_fused_recurrent_matches_reference(rule, shape):
    inputs = on_device(make_inputs(rule, *shape))

    def run(q, k, v, beta, g, h0, backend):
        return fast_weight(q, k, v, rule=rule, beta=beta, g=g, initial_state=h0, output_final_state=True,
                           backend=backend)

    check_against_reference(run, inputs, ["dq", "dk", "dv", "dbeta", "dg", "dh0"], 1e-5)


@pytest.mark.parametrize("rule", ["delta", "gated_delta", "oja"])
def test_fused_recurrent_without_initial_state_or_final_state_gradient(rule):
    q, k, v, beta, g, _ = on_device(make_inputs(rule, 2, 9, 2, 8, 24))
    results = {}
    for backend in ("triton", "reference"):
        o, S = fast_weight(q, k, v, rule=rule, beta=beta, g=g, backend=backend)
        assert S is None
        do = torch.randn(o.shape, generator=torch.Generator().manual_seed(1)).to(o)
        results[backend] = [o, *gradients([(o, do)], [q, k, v, beta, g])]
    for name, ours, expected in zip(["o", "dq", "dk", "dv", "dbeta", "dg"], results["triton"], results["reference"]):
        if expected is not None:
            assert_close(name, ours, expected, 1e-5)


@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated"])
def test_delta_product_on_the_fused_kernel(gated):
    gen = torch.Generator().manual_seed(0)
    B, T, H, n, K, V = 2, 11, 2, 3, 15, 20
    q = torch.randn(B, T, H, K, generator=gen)
    k = torch.nn.functional.normalize(torch.randn(B, T, H, n, K, generator=gen), dim=-1)
    v = torch.randn(B, T, H, n, V, generator=gen)
    beta = torch.rand(B, T, H, n, generator=gen)
    g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, generator=gen) + 2) if gated else None
    h0 = torch.randn(B, H, K, V, generator=gen)
    inputs = on_device([q, k, v, beta, g, h0])

    def run(q, k, v, beta, g, h0, backend):
        return delta_product(q, k, v, beta, g=g, initial_state=h0, output_final_state=True, backend=backend)

    check_against_reference(run, inputs, ["dq", "dk", "dv", "dbeta", "dg", "dh0"], 1e-5)


# (B, T, H, D, shared W0): T = 1, 16 (one full chunk of checkpoints), 37 (three chunks, the last
# ragged); D = 15 and 5 (not powers of two)
SRWM_SHAPES = [(2, 1, 2, 8, True), (1, 16, 2, 16, False), (2, 37, 1, 15, True), (3, 20, 1, 5, False)]


@pytest.mark.parametrize("B, T, H, D, shared", SRWM_SHAPES, ids=lambda s: str(s))
def test_srwm_kernel_matches_reference(B, T, H, D, shared):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, H, D, generator=gen)
    W0 = torch.randn(*(() if shared else (B,)), H, D, srwm_columns(D), generator=gen) / D ** 0.5
    inputs = on_device([x, W0])

    def run(x, W0, backend):
        return srwm(x, W0, output_final_state=True, backend=backend)

    check_against_reference(run, inputs, ["dx", "dW0"], 1e-5)


def test_bfloat16_inputs_keep_a_float32_state():
    q, k, v, beta, g, h0 = [x if x is None else x.detach().bfloat16().to(DEVICE)
                            for x in make_inputs("gated_delta", 2, 12, 2, 16, 16)]
    o, S = fast_weight(q, k, v, rule="gated_delta", beta=beta, g=g, output_final_state=True, backend="triton")
    o_ref, S_ref = fast_weight(q, k, v, rule="gated_delta", beta=beta, g=g, output_final_state=True,
                               backend="reference")
    assert o.dtype == torch.bfloat16 and S.dtype == torch.float32
    assert_close("o", o, o_ref, 1e-2)
    assert_close("final state", S, S_ref, 1e-5)


def test_torch_compile_traces_the_kernels_without_graph_breaks():
    q, k, v, beta, g, h0 = on_device(make_inputs("gated_delta", 1, 5, 2, 8, 8))
    x = torch.randn(1, 5, 2, 4, device=DEVICE, requires_grad=True)
    W0 = torch.randn(2, 4, srwm_columns(4), device=DEVICE, requires_grad=True)

    def step(q, k, v, beta, g, x, W0):
        o, _ = fast_weight(q, k, v, rule="gated_delta", beta=beta, g=g, backend="triton")
        y, _ = srwm(x, W0, backend="triton")
        return o.sum() + y.sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    expected = step(q, k, v, beta, g, x, W0)
    expected_grads = torch.autograd.grad(expected, [q, g, W0])
    actual = compiled(q, k, v, beta, g, x, W0)
    actual_grads = torch.autograd.grad(actual, [q, g, W0])
    assert_close("loss", actual, expected, 1e-6)
    for name, a, e in zip(["dq", "dg", "dW0"], actual_grads, expected_grads):
        assert_close(name, a, e, 1e-6)


def test_explain_backend_says_what_runs_and_why(monkeypatch):
    q = torch.zeros(2, 40, 2, 16)
    choice = explain_backend("fast_weight", q, rule="delta")
    assert choice.backend == "chunk" and "cpu tensors" in choice.reason and "40 steps" in str(choice)
    assert explain_backend("srwm", q).backend == "reference"
    with pytest.raises(ValueError, match="rule 'gla' has no Triton kernel"):
        explain_backend("fast_weight", q, rule="gla", backend="triton")
    with pytest.raises(ValueError, match="K=256, V=16: the Triton kernel keeps heads up to 128"):
        explain_backend("fast_weight", torch.zeros(1, 4, 1, 256), value_dim=16, backend="triton")
    with pytest.raises(ValueError, match="D=80: the SRWM kernel keeps W on chip for D <= 64"):
        explain_backend("srwm", torch.zeros(1, 4, 1, 80), backend="triton")
    with pytest.raises(ValueError, match="dtype torch.float64"):
        fast_weight(q.double(), q.double(), q.double(), rule="delta", backend="triton")
    assert explain_backend("delta_rnn", q).backend == "reference"
    with pytest.raises(ValueError, match="D=80: the kernel keeps the fast matrix on chip for D <= 64"):
        explain_backend("recurrent_delta", torch.zeros(1, 4, 1, 80), backend="triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="the Triton kernels need CUDA"):
        srwm(torch.zeros(1, 2, 1, 4), torch.zeros(1, 4, srwm_columns(4)), backend="triton")


@pytest.mark.parametrize("T,D", [(1, 4), (37, 13)], ids=["T1-D4", "T37-D13"])
def test_recurrent_fwp_kernels_match_the_loops(T, D):
    """delta_rnn's R loop and the Recurrent Delta Net as kernels: outputs, final states (including a
    carried initial state) and every gradient against the batched loops."""
    from metafwp.ops import DeltaRNNState, RecurrentDeltaState, delta_rnn, recurrent_delta
    from metafwp.ops.recurrent_fwp import sum_normalised_elu

    B, H = 2, 3
    gen = torch.Generator().manual_seed(T * D)
    rand = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    rnn = [sum_normalised_elu(rand(B, T, H, D)), sum_normalised_elu(rand(B, T, H, D)), rand(B, T, H, D),
           torch.rand(B, T, H, generator=gen), rand(B, T, H, D).softmax(-1), rand(B, T, H, D),
           torch.rand(B, T, H, generator=gen)]
    rdn = [rand(B, T, H, D), rand(B, T, H, D), rand(B, T, H, D), rand(B, T, H), rand(H, D, 3 * D + 1) / D ** 0.5]
    for op, inputs, kind, state in (
            (delta_rnn, rnn, DeltaRNNState, [rand(B, H, D, D) / D, rand(B, H, D, D) / D, rand(B, H, D)]),
            (recurrent_delta, rdn, RecurrentDeltaState, [rand(B, H, D, D) / D, rand(B, H, D)])):
        tensors = on_device(inputs + state)
        results = {}
        for backend in ("triton", "reference"):
            initial = kind(*tensors[len(inputs):])
            y, final = op(*tensors[:len(inputs)], initial_state=initial, output_final_state=True, backend=backend)
            cotangent = torch.Generator().manual_seed(1)
            pairs = [(x, torch.randn(x.shape, generator=cotangent).to(x)) for x in (y, *final)]
            results[backend] = [y, *final, *gradients(pairs, tensors)]
        names = ["y", *final._fields, *[f"d input {i}" for i in range(len(tensors))]]
        for name, ours, expected in zip(names, results["triton"], results["reference"]):
            assert_close(f"{op.__name__} {name}", ours, expected, 2e-5)
