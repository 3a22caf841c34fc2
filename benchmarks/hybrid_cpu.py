"""The hybrid memory layers on CPU beside their two parts, measured in the same run: forward +
backward of a layer of width H x D (projections included) for sliding-window attention, the three
hybrid quadratic-linear variants, DeltaNet (chunk form) and full causal softmax attention, with
the memory each saves for its backward (the saved activations; what grows with T).

    python benchmarks/hybrid_cpu.py                     # B=8 H=4 D=32, T in 256, 1024, window 64
    python benchmarks/hybrid_cpu.py --window 8 --threads 2
"""
from __future__ import annotations

import argparse
import json

import torch

from metafwp.nn import CausalAttentionLayer, FastWeightLayer, HybridQLTLayer, SlidingWindowAttentionLayer
from ops_cpu import interleaved_medians  # benchmarks/ is on the path when run as a script
from rtrl_cpu import saved_bytes


def layers(d_model: int, heads: int, window: int) -> dict:
    torch.manual_seed(0)
    built = {"full attention": CausalAttentionLayer(d_model, heads),
             f"window attention (W={window})": SlidingWindowAttentionLayer(d_model, heads, window),
             "DeltaNet (chunk)": FastWeightLayer(d_model, heads, rule="delta", backend="chunk")}
    for variant in ("synchronous", "delayed_stream", "delayed_chunk"):
        built[f"HQLT {variant}"] = HybridQLTLayer(d_model, heads, window, variant, backend="chunk")
    return built


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    d_model = args.heads * args.head_dim
    built = layers(d_model, args.heads, args.window)
    results = {}
    for T in args.lengths:
        x = torch.randn(args.batch, T, d_model)

        def run(layer):
            return lambda: layer(x)[0].square().mean().backward()

        seconds = interleaved_medians({name: run(layer) for name, layer in built.items()}, args.repeats)
        results[T] = {name: {"ms": 1e3 * seconds[name], "saved_MB": saved_bytes(lambda: layer(x)[0].sum()) / 2**20}
                      for name, layer in built.items()}
        print(f"T={T} (B={args.batch}, H={args.heads}, D={args.head_dim}, {args.threads} thread(s)), "
              "forward + backward:")
        for name, row in results[T].items():
            print(f"  {name:28s} {row['ms']:9.1f} ms   {row['saved_MB']:8.1f} MB saved for the backward")
    print(json.dumps({"batch": args.batch, "heads": args.heads, "head_dim": args.head_dim, "window": args.window,
                      "threads": args.threads, "results": results}))
    return results


if __name__ == "__main__":
    main()
