"""CPU speed and memory of the fast-weight ops, each figure beside its peer measured in the same run.

    python benchmarks/ops_cpu.py            # all figures (about two minutes on 2 cores)
    python benchmarks/ops_cpu.py --threads 2 --repeats 7

Figures (issue targets in brackets):
  1. delta rule chunk vs the reference loop, B=4 T=1024 H=4 K=V=64 fp32, fwd+bwd, default C  [>= 5x]
  2. chunk vs fla-core's pure-torch ``delta_rule_chunkwise``, same inputs, fwd+bwd at C=32   [>= 2x]
     and forward at every chunk size                                                       [> 1x]
  3. peak memory of chunk fwd+bwd at T=4096 over T=1024 (each in a fresh process, Linux)   [< 4.5x]
  4. SRWM loop, B=32 T=128 H=4 D=16 fwd+bwd: episodes/s (the baseline for the GPU kernel)
  5. this CPU's fp32 matmul rate and the chunk form's share of it (figure 2's inputs at C=32), its
     FLOPs counted from the algorithm's matmul shapes (``chunk_delta_flops``)
  6. the default chunk size (``default_chunk_size``) beside C = 16, 32, 64: delta rule fwd+bwd,
     B=32 T=128 H=4 at K=V=16, 32, 64, 128 (the default is meant to be the fastest or near it)
Timings are medians over interleaved repeats, so both sides see the same machine noise.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import warnings

import torch
import torch.nn.functional as F

from metafwp.ops import delta_rule, srwm, srwm_columns
from metafwp.ops.fast_weight import default_chunk_size


def delta_inputs(B, T, H, K, V, requires_grad=True, layout="BTHK"):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(B, T, H, K, generator=gen)
    k = F.normalize(torch.randn(B, T, H, K, generator=gen), dim=-1)
    v = torch.randn(B, T, H, V, generator=gen)
    beta = torch.rand(B, T, H, generator=gen)
    tensors = [q, k, v, beta]
    if layout == "BHTK":  # fla's naive functions take [B, H, T, K]
        tensors = [x.transpose(1, 2).contiguous() for x in tensors]
    return [x.requires_grad_(requires_grad) for x in tensors]


def verdict(reached: bool) -> str:
    """PASS or SHORT beside a target."""
    return "PASS" if reached else "SHORT"


def interleaved_medians(functions: dict, repeats: int) -> dict:
    """Median seconds of each function, calling them in turn ``repeats`` times after one warm-up."""
    for f in functions.values():
        f()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, f in functions.items():
            start = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def forward_backward(op):
    def run():
        o = op()
        o.sum().backward()
    return run


def figure_reference(repeats):
    q, k, v, b = delta_inputs(4, 1024, 4, 64, 64)
    t = interleaved_medians({
        "reference": forward_backward(lambda: delta_rule(q, k, v, b, backend="reference")[0]),
        "chunk": forward_backward(lambda: delta_rule(q, k, v, b, backend="chunk")[0]),
    }, max(2, repeats // 2))
    return {"reference_s": t["reference"], "chunk_s": t["chunk"], "speedup": t["reference"] / t["chunk"]}


def figure_fla(repeats):
    from fla.ops.delta_rule.naive import delta_rule_chunkwise

    ours = delta_inputs(4, 1024, 4, 64, 64)
    theirs = delta_inputs(4, 1024, 4, 64, 64, layout="BHTK")
    rows = []
    for C in (16, 32, 64):
        fwd = interleaved_medians({
            "metafwp": lambda: delta_rule(*ours, backend="chunk", chunk_size=C),
            "fla": lambda: delta_rule_chunkwise(*theirs, chunk_size=C),
        }, repeats)
        with torch.no_grad():
            fwd_nograd = interleaved_medians({
                "metafwp": lambda: delta_rule(*ours, backend="chunk", chunk_size=C),
                "fla": lambda: delta_rule_chunkwise(*theirs, chunk_size=C),
            }, repeats)
        fb = interleaved_medians({
            "metafwp": forward_backward(lambda: delta_rule(*ours, backend="chunk", chunk_size=C)[0]),
            "fla": forward_backward(lambda: delta_rule_chunkwise(*theirs, chunk_size=C)[0]),
        }, repeats)
        rows.append({
            "chunk_size": C,
            "fwd_speedup": fwd["fla"] / fwd["metafwp"],
            "fwd_nograd_speedup": fwd_nograd["fla"] / fwd_nograd["metafwp"],
            "fwd_nograd_metafwp_s": fwd_nograd["metafwp"],
            "fwd_bwd_metafwp_s": fb["metafwp"], "fwd_bwd_fla_s": fb["fla"],
            "fwd_bwd_speedup": fb["fla"] / fb["metafwp"],
        })
    return rows


def chunk_delta_flops(B, T, H, K, V, C) -> int:
    """FLOPs of the delta chunk form's forward (``metafwp.ops.chunk_delta``), 2 per multiply-add: per
    chunk and head, ``Q K^T`` and ``K K^T`` (2 C^2 K each), the unit-triangular solve with C right-hand
    sides (C^3), ``T V`` (2 C^2 V) and ``T K`` (2 C^2 K), the scan's ``U - W S`` and ``S += K^T u``
    (2 C K V each), the read ``Q S`` (2 C K V) and ``tril(Q K^T) u`` (2 C^2 V)."""
    per_chunk = 6 * C * C * K + 4 * C * C * V + C ** 3 + 6 * C * K * V
    return B * H * (T // C) * per_chunk


def figure_matmul_rate(repeats, n=1024):
    """fp32 GFLOP/s of an n x n x n matmul (2 n^3 FLOPs), the median of ``repeats``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    seconds = interleaved_medians({"matmul": lambda: a @ b}, repeats)["matmul"]
    return 2 * n ** 3 / seconds / 1e9


def resident_kib(field: str) -> int:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, from /proc (Linux)."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_child(T: int) -> None:
    """Run in a fresh process: print the peak resident memory added by one chunk fwd+bwd."""
    q, k, v, b = delta_inputs(4, T, 4, 64, 64)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident size
    before = resident_kib("VmRSS")
    o, _ = delta_rule(q, k, v, b, backend="chunk")
    o.sum().backward()
    print(json.dumps({"T": T, "peak_kib": resident_kib("VmHWM") - before}))


def figure_memory():
    peaks = {}
    for T in (1024, 4096):
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(T)], capture_output=True,
                             text=True, check=True)
        peaks[T] = json.loads(out.stdout.strip().splitlines()[-1])["peak_kib"]
    return {"peak_mib_T1024": peaks[1024] / 1024, "peak_mib_T4096": peaks[4096] / 1024,
            "ratio": peaks[4096] / peaks[1024]}


def figure_srwm(repeats):
    B, T, H, D = 32, 128, 4, 16
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, H, D, generator=gen, requires_grad=True)
    W0 = (torch.randn(H, D, srwm_columns(D), generator=gen) / D ** 0.5).requires_grad_()
    t = interleaved_medians({"srwm": forward_backward(lambda: srwm(x, W0)[0])}, max(2, repeats // 2))
    return {"fwd_bwd_s": t["srwm"], "episodes_per_s": B / t["srwm"]}


def figure_default_chunk_size(repeats):
    """Per head size: fwd+bwd seconds at C = 16, 32, 64 and the default's choice."""
    rows = []
    for K in (16, 32, 64, 128):
        inputs = delta_inputs(32, 128, 4, K, K)
        times = interleaved_medians({C: forward_backward(lambda C=C: delta_rule(*inputs, backend="chunk",
                                                                                  chunk_size=C)[0])
                                     for C in (16, 32, 64)}, max(3, repeats // 2))
        rows.append({"K": K, "seconds": times, "default": default_chunk_size("delta", K)})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Triton is not supported")
    if args.memory_child:
        peak_memory_child(args.memory_child)
        return

    print(f"torch {torch.__version__}, {args.threads} threads, fp32, medians of {args.repeats}")
    ref = figure_reference(args.repeats)
    print(f"\n1. delta rule B=4 T=1024 H=4 K=V=64 fwd+bwd: reference loop {ref['reference_s'] * 1e3:.0f} ms, "
          f"default chunk {ref['chunk_s'] * 1e3:.0f} ms -> {ref['speedup']:.1f}x  [target >= 5x: "
          f"{verdict(ref['speedup'] >= 5)}]")
    print("\n2. chunk vs fla-core delta_rule_chunkwise (same inputs, same chunk size), speed-up = fla / metafwp")
    print(f"   {'C':>4} {'fwd':>8} {'fwd no-grad':>12} {'fwd+bwd':>9} {'metafwp ms':>11} {'fla ms':>8}")
    rows = figure_fla(args.repeats)
    for row in rows:
        print(f"   {row['chunk_size']:>4} {row['fwd_speedup']:>7.2f}x {row['fwd_nograd_speedup']:>11.2f}x "
              f"{row['fwd_bwd_speedup']:>8.2f}x {row['fwd_bwd_metafwp_s'] * 1e3:>11.0f} "
              f"{row['fwd_bwd_fla_s'] * 1e3:>8.0f}")
    at_32 = next(row["fwd_bwd_speedup"] for row in rows if row["chunk_size"] == 32)
    print(f"   [target fwd+bwd >= 2x at C=32: {at_32:.2f}x {verdict(at_32 >= 2)}; target fwd > 1x at every C: "
          f"{verdict(all(row['fwd_speedup'] > 1 for row in rows))}]")
    mem = figure_memory()
    print(f"\n3. chunk fwd+bwd peak memory: T=1024 {mem['peak_mib_T1024']:.0f} MiB, T=4096 "
          f"{mem['peak_mib_T4096']:.0f} MiB -> {mem['ratio']:.2f}x  [target < 4.5x: {verdict(mem['ratio'] < 4.5)}]")
    rate = figure_matmul_rate(args.repeats)
    row = next(row for row in rows if row["chunk_size"] == 32)
    flops = chunk_delta_flops(4, 1024, 4, 64, 64, 32)
    forward_rate = flops / row["fwd_nograd_metafwp_s"] / 1e9
    training_rate = 3 * flops / row["fwd_bwd_metafwp_s"] / 1e9     # the backward counted as twice the forward
    print(f"\n5. fp32 matmul 1024^3: {rate:.1f} GFLOP/s. Delta chunk form, B=4 T=1024 H=4 K=V=64 C=32: "
          f"B H (T/C) (6 C^2 K + 4 C^2 V + C^3 + 6 C K V) = {flops / 1e6:.0f} MFLOP forward; no-grad forward "
          f"{row['fwd_nograd_metafwp_s'] * 1e3:.1f} ms -> {forward_rate:.1f} GFLOP/s "
          f"({100 * forward_rate / rate:.0f} % of the matmul rate); fwd+bwd (backward = 2x forward FLOPs) "
          f"{training_rate:.1f} GFLOP/s ({100 * training_rate / rate:.0f} %)")
    s = figure_srwm(args.repeats)
    print(f"\n4. SRWM loop B=32 T=128 H=4 D=16 fwd+bwd: {s['fwd_bwd_s'] * 1e3:.0f} ms -> "
          f"{s['episodes_per_s']:.0f} episodes/s  [baseline for the GPU kernel]")
    print("\n6. delta rule B=32 T=128 H=4 fwd+bwd ms by chunk size; the default's choice against the fastest")
    for row in figure_default_chunk_size(args.repeats):
        times, best = row["seconds"], min(row["seconds"], key=row["seconds"].get)
        cells = "  ".join(f"C={C} {t * 1e3:6.1f}" for C, t in times.items())
        print(f"   K={row['K']:>3}: {cells}  default C={row['default']} "
              f"({times[row['default']] / times[best]:.2f}x the fastest, C={best})")


if __name__ == "__main__":
    main()
