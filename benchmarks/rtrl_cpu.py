"""The e-LSTM's exact RTRL beside backpropagation through time, on CPU, measured in the same run:
time per token of a whole sequence (RTRL: forward step, sensitivity update and gradient; BPTT: the
forward over the sequence and one backward) and the memory each keeps for the gradient as T grows
(RTRL: the sensitivities, independent of T; BPTT: the saved activations, growing with T).

    python benchmarks/rtrl_cpu.py                      # B=32 H=128, T in 50, 500 (under a minute)
    python benchmarks/rtrl_cpu.py --threads 2 --repeats 5
"""
from __future__ import annotations

import argparse
import json

import torch

from metafwp.nn import ELSTMLayer, ELSTMRTRL
from ops_cpu import interleaved_medians  # benchmarks/ is on the path when run as a script


def saved_bytes(function) -> int:
    """Bytes autograd saves for the backward of ``function()``'s graph (its saved tensors)."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        function()
    return total


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layer = ELSTMLayer(args.hidden)
    results = {}
    for T in args.lengths:
        x = torch.randn(args.batch, T, args.hidden)

        def bptt():
            y, _ = layer(x)
            y.square().sum().backward()

        def rtrl():
            learner = ELSTMRTRL(layer, args.batch)
            for t in range(T):
                learner.step(x[:, t]).square().sum().backward()
                learner.accumulate()

        seconds = interleaved_medians({"bptt": bptt, "rtrl": rtrl}, args.repeats)
        learner = ELSTMRTRL(layer, args.batch)
        results[T] = {"bptt_ms_per_token": 1e3 * seconds["bptt"] / T, "rtrl_ms_per_token": 1e3 * seconds["rtrl"] / T,
                      "bptt_saved_MB": saved_bytes(lambda: layer(x)[0].sum()) / 2**20,
                      "rtrl_sensitivities_MB": learner.sensitivities.numel() * 4 / 2**20}
        row = results[T]
        print(f"T={T:>4}: per token BPTT {row['bptt_ms_per_token']:.3f} ms, RTRL {row['rtrl_ms_per_token']:.3f} ms "
              f"({row['rtrl_ms_per_token'] / row['bptt_ms_per_token']:.1f}x); memory for the gradient: BPTT "
              f"{row['bptt_saved_MB']:.1f} MB saved activations, RTRL {row['rtrl_sensitivities_MB']:.1f} MB "
              f"sensitivities")
    print(json.dumps({"batch": args.batch, "hidden": args.hidden, "threads": args.threads, "results": results}))
    return results


if __name__ == "__main__":
    main()
