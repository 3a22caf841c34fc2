"""GPU speed and memory of the Triton kernels, each figure beside its peer measured in the same run.

    python benchmarks/ops_gpu.py            # all figures (a few minutes on one H100)
    python benchmarks/ops_gpu.py --quick    # one shape per figure

Figures (issue targets in brackets), forward+backward, times from triton.testing.do_bench:
  1. delta rule at meta-learning shapes, B=128 H=16, T in {32, 128, 512}, K=V in {16, 64}, fp32 and
     bf16: the kernel against the faster of fla-core's fused_recurrent_delta_rule and
     chunk_delta_rule [>= 1.0x], and against the reference loop [>= 20x]
  2. delta rule at a language-model shape, B=8 T=2048 H=8 K=V=64 bf16, against fla's
     chunk_delta_rule [within 1.5x]
  3. SRWM, B=128 T=128 H=16 D=16 fp32, against the reference loop [>= 20x], and the peak memory
     beyond inputs and outputs at T=128 and T=512 [independent of T but for ceil(T/16) checkpoints]
fla's chunk kernel takes no fp32; fp32 rows compare with its fused recurrent kernel only.
"""
from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from triton.testing import do_bench

from metafwp.ops import delta_rule, srwm, srwm_columns


def delta_inputs(B, T, H, K, dtype):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(B, T, H, K, generator=gen)
    k = F.normalize(torch.randn(B, T, H, K, generator=gen), dim=-1)
    v = torch.randn(B, T, H, K, generator=gen)
    beta = torch.rand(B, T, H, generator=gen)
    return [x.to("cuda", dtype).requires_grad_() for x in (q, k, v, beta)]


def fwd_bwd_ms(op, inputs):
    def run():
        o = op(*inputs)[0]
        o.backward(torch.ones_like(o))
    return do_bench(run, grad_to_none=inputs)


def peers(dtype):
    from fla.ops.delta_rule import chunk_delta_rule, fused_recurrent_delta_rule

    found = {"fla fused_recurrent": fused_recurrent_delta_rule}
    if dtype != torch.float32:
        found["fla chunk"] = chunk_delta_rule
    return found


def figure_meta_learning(shapes, with_reference):
    rows = []
    for T, K, dtype in shapes:
        inputs = delta_inputs(128, T, 16, K, dtype)
        row = {"T": T, "K=V": K, "dtype": str(dtype).split(".")[1],
               "metafwp_ms": fwd_bwd_ms(lambda *x: delta_rule(*x, backend="triton"), inputs)}
        for name, peer in peers(dtype).items():
            row[f"{name}_ms"] = fwd_bwd_ms(peer, inputs)
        best = min(v for name, v in row.items() if name.startswith("fla"))
        row["vs_best_fla"] = best / row["metafwp_ms"]
        if with_reference:
            row["reference_ms"] = fwd_bwd_ms(lambda *x: delta_rule(*x, backend="reference"), inputs)
            row["vs_reference"] = row["reference_ms"] / row["metafwp_ms"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def figure_language_model():
    from fla.ops.delta_rule import chunk_delta_rule

    inputs = delta_inputs(8, 2048, 8, 64, torch.bfloat16)
    row = {"metafwp_ms": fwd_bwd_ms(lambda *x: delta_rule(*x, backend="triton"), inputs),
           "fla_chunk_ms": fwd_bwd_ms(chunk_delta_rule, inputs)}
    row["metafwp_over_fla"] = row["metafwp_ms"] / row["fla_chunk_ms"]
    print(json.dumps(row), flush=True)
    return row


def srwm_inputs(T):
    x = torch.randn(128, T, 16, 16, device="cuda", requires_grad=True)
    W0 = (torch.randn(16, 16, srwm_columns(16), device="cuda") / 4).requires_grad_()
    return [x, W0]


def srwm_peak_extra_mib(T):
    x, W0 = srwm_inputs(T)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    y, _ = srwm(x, W0, backend="triton")
    y.backward(torch.ones_like(y))
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base - 3 * x.numel() * 4) / 2 ** 20


def figure_srwm():
    inputs = srwm_inputs(128)
    row = {"metafwp_ms": fwd_bwd_ms(lambda *x: srwm(*x, backend="triton"), inputs),
           "reference_ms": fwd_bwd_ms(lambda *x: srwm(*x, backend="reference"), inputs)}
    row["vs_reference"] = row["reference_ms"] / row["metafwp_ms"]
    row["peak_extra_mib_T128"] = srwm_peak_extra_mib(128)
    row["peak_extra_mib_T512"] = srwm_peak_extra_mib(512)
    print(json.dumps(row), flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one shape per figure")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/ops_gpu.py needs a CUDA GPU; benchmarks/ops_cpu.py measures the CPU backends")
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}")
    shapes = [(T, K, dtype) for dtype in (torch.float32, torch.bfloat16) for K in (16, 64) for T in (32, 128, 512)]
    if args.quick:
        shapes = [(128, 16, torch.float32), (128, 64, torch.bfloat16)]
    print("# 1. delta rule fwd+bwd, B=128 H=16")
    figure_meta_learning(shapes, with_reference=True)
    print("# 2. delta rule fwd+bwd, B=8 T=2048 H=8 K=V=64 bf16")
    figure_language_model()
    print("# 3. SRWM fwd+bwd, B=128 T=128 H=16 D=16 fp32")
    figure_srwm()


if __name__ == "__main__":
    main()
