"""The Triton kernels on CUDA: bf16 inputs, meta-learning and language-model shapes, fla-core parity
and the SRWM kernel's memory (skipped without a GPU; run it where one is lent)."""
import importlib.util
from pathlib import Path

import pytest
import torch

from metafwp.ops import delta_rule, explain_backend, fast_weight, srwm, srwm_columns
from metafwp.ops.backends import TRITON_RULES
from tests.helpers import assert_close, gradients, make_inputs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def cuda(inputs, dtype):
    return [x if x is None else x.detach().to("cuda", dtype).requires_grad_() for x in inputs]


@pytest.mark.parametrize("dtype, rtol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)], ids=["fp32", "bf16"])
@pytest.mark.parametrize("rule", TRITON_RULES)
@pytest.mark.parametrize("shape", [(128, 32, 16, 16, 16), (16, 512, 4, 64, 64), (4, 100, 2, 60, 100)],
                         ids=lambda s: "B{}-T{}-H{}-K{}-V{}".format(*s))
def test_kernel_matches_the_float32_reference_on_cuda(rule, shape, dtype, rtol):
    inputs64 = make_inputs(rule, *shape)
    ours, theirs = cuda(inputs64, dtype), cuda(inputs64, torch.float32)
    results = []
    for (q, k, v, beta, g, h0), backend in ((ours, "triton"), (theirs, "reference")):
        o, S = fast_weight(q, k, v, rule=rule, beta=beta, g=g, initial_state=h0, output_final_state=True,
                           backend=backend)
        gen = torch.Generator().manual_seed(1)
        do, dS = torch.randn(o.shape, generator=gen).cuda(), torch.randn(S.shape, generator=gen).cuda()
        results.append([o, S, *gradients([(o, do.to(o.dtype)), (S, dS)], [q, k, v, beta, g, h0])])
    for name, a, e in zip(["o", "S", "dq", "dk", "dv", "dbeta", "dg", "dh0"], *results):
        if e is not None:
            assert_close(name, a.float(), e, rtol)


def test_auto_runs_the_kernel_on_cuda():
    q = torch.zeros(2, 8, 2, 16, device="cuda")
    assert explain_backend("delta_rule", q).backend == "triton"
    assert explain_backend("srwm", q).backend == "triton"
    assert explain_backend("delta_rnn", q).backend == "triton"
    assert explain_backend("recurrent_delta", q).backend == "triton"
    assert explain_backend("fast_weight", q, rule="gla").backend == "chunk"


@pytest.mark.parametrize("T", [32, 2048])
def test_delta_rule_equals_fla_kernels(T):
    fla = pytest.importorskip("fla.ops.delta_rule")
    q, k, v, beta, _, h0 = cuda(make_inputs("delta", 4, T, 4, 64, 64), torch.bfloat16)
    o, S = delta_rule(q, k, v, beta, initial_state=h0.float(), output_final_state=True, backend="triton")
    for peer in (fla.fused_recurrent_delta_rule, fla.chunk_delta_rule):
        o_fla, S_fla = peer(q, k, v, beta, initial_state=h0.float(), output_final_state=True)
        assert_close(f"o vs {peer.__name__}", o, o_fla, 3e-2)
        assert_close(f"S vs {peer.__name__}", S, S_fla.float(), 3e-2)


@pytest.mark.parametrize("D", [16, 64])
def test_srwm_kernel_matches_reference_on_cuda(D):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 128, 4, D, generator=gen).cuda().requires_grad_()
    W0 = (torch.randn(4, D, srwm_columns(D), generator=gen) / D ** 0.5).cuda().requires_grad_()
    results = []
    for backend in ("triton", "reference"):
        y, W = srwm(x, W0, output_final_state=True, backend=backend)
        dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).cuda()
        results.append([y, W, *gradients([(y, dy)], [x, W0])])
    for name, a, e in zip(["y", "W", "dx", "dW0"], *results):
        assert_close(name, a, e, 1e-4)


def test_srwm_memory_beyond_inputs_and_outputs_stays_small():
    """Peak memory of SRWM fwd+bwd beyond x, y and their gradients: checkpoints every 16 steps plus
    16 replayed matrices, not one W per step (measured by the benchmark's own function)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "ops_gpu.py"
    spec = importlib.util.spec_from_file_location("ops_gpu", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    per_step_mib = 128 * 16 * 16 * srwm_columns(16) * 4 / 2 ** 20  # what one stored W per step would cost
    for T in (128, 512):
        assert benchmark.srwm_peak_extra_mib(T) < per_step_mib * (T // 16 + 16 + 2)


@pytest.mark.parametrize("dtype, rtol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)], ids=["fp32", "bf16"])
@pytest.mark.parametrize("D", [16, 64])
def test_recurrent_fwp_kernels_match_the_loops_on_cuda(D, dtype, rtol):
    """delta_rnn's R loop and the Recurrent Delta Net at B=32 T=128 H=4, against the float32 loops."""
    from metafwp.ops import delta_rnn, recurrent_delta
    from metafwp.ops.recurrent_fwp import sum_normalised_elu

    B, T, H = 32, 128, 4
    gen = torch.Generator().manual_seed(D)
    rand = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    rnn = [sum_normalised_elu(rand(B, T, H, D)), sum_normalised_elu(rand(B, T, H, D)), rand(B, T, H, D),
           torch.rand(B, T, H, generator=gen), rand(B, T, H, D).softmax(-1), rand(B, T, H, D),
           torch.rand(B, T, H, generator=gen)]
    rdn = [rand(B, T, H, D), rand(B, T, H, D), rand(B, T, H, D), rand(B, T, H), rand(H, D, 3 * D + 1) / D ** 0.5]
    for op, inputs in ((delta_rnn, rnn), (recurrent_delta, rdn)):
        results = []
        for tensors, backend in ((cuda(inputs, dtype), "triton"), (cuda(inputs, torch.float32), "reference")):
            y, final = op(*tensors, output_final_state=True, backend=backend)
            dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).cuda()
            results.append([y, *final, *gradients([(y, dy.to(y.dtype))], tensors)])
        for i, (a, e) in enumerate(zip(*results)):
            assert_close(f"{op.__name__} result {i}", a.float(), e, rtol)
