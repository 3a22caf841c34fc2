"""CPU forward+backward time of the recurrent FWPs and the mesa rule, beside the SRWM loop and the delta
rule's chunk form measured in the same run: the price of recurrence.

    python benchmarks/recurrent_cpu.py                 # B=32 T=128 H=4 D=16, fp32 (about 3 minutes)
    python benchmarks/recurrent_cpu.py --threads 2 --repeats 7

Every op gets the inputs its layer would give it (mapped keys, rates in (0, 1)); times are medians
over interleaved repeats (one warm-up), so all ops see the same machine noise. The compiled loops
(``compile_loop=True``) are first checked against the eager ones; their compilation is not timed.
"""
from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from metafwp.ops import delta_delta, delta_lstm, delta_mlp, delta_rnn, delta_rule, mesa, recurrent_delta, srwm
from metafwp.nn.recurrent_fwp_layer import LOOP_KINDS
from metafwp.ops.recurrent_fwp import sum_normalised_elu
from ops_cpu import interleaved_medians, verdict  # benchmarks/ is on the path when run as a script


def recurrent_inputs(B: int, T: int, H: int, d: int) -> dict[str, list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    rate = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    keys = lambda *shape: sum_normalised_elu(rand(*shape))  # noqa: E731
    F_ = 2 * d
    tensors = {
        "delta_rnn": [keys(B, T, H, d), keys(B, T, H, d), rand(B, T, H, d), rate(B, T, H), rand(B, T, H, d).softmax(-1),
                      rand(B, T, H, d), rate(B, T, H)],
        "delta_lstm": [keys(B, T, H, 3, d), keys(B, T, H, 3, d), rand(B, T, H, 3, d), rate(B, T, H, 3),
                       rand(B, T, H, 3, d).softmax(-1), rand(B, T, H, 3, d), rate(B, T, H, 3)],
        "recurrent_delta": [rand(B, T, H, d), rand(B, T, H, d), rand(B, T, H, d), rand(B, T, H),
                            rand(H, d, 3 * d + 1) / d ** 0.5],
        "delta_mlp": [rand(B, T, H, d), keys(B, T, H, 1, d), rand(B, T, H, 1, F_), rate(B, T, H, 1),
                      keys(B, T, H, 1, F_), rand(B, T, H, 1, d), rate(B, T, H, 1)],
        "delta_delta": [keys(B, T, H, d), keys(B, T, H, d), rand(B, T, H, 3 * d + 1), rate(B, T, H)],
        "srwm": [rand(B, T, H, d), rand(H, d, 3 * d + 4) / d ** 0.5],
        "delta": [rand(B, T, H, d), F.normalize(rand(B, T, H, d), dim=-1), rand(B, T, H, d), rate(B, T, H)],
        "mesa": [rand(B, T, H, d), F.normalize(rand(B, T, H, d), dim=-1), rand(B, T, H, d)],
    }
    return {name: [x.requires_grad_() for x in xs] for name, xs in tensors.items()}


FORMER_CHUNK_SIZE = 64  # the chunk form's default before it depended on the head size


def compiled_difference(eager, compiled, inputs) -> float:
    """Largest relative difference, max |compiled - eager| / max |eager|, of the output and of every
    input's gradient."""
    results = []
    for op in (eager, compiled):
        for x in inputs:
            x.grad = None
        out = op()
        out.sum().backward()
        results.append([out.detach()] + [x.grad.clone() for x in inputs])
    for x in inputs:
        x.grad = None
    return max(((b - a).abs().max() / a.abs().max()).item() for a, b in zip(*results))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    B, T, H, d = args.batch, args.steps, args.heads, args.head_dim
    x = recurrent_inputs(B, T, H, d)
    ops = {
        "delta_rnn": lambda: delta_rnn(*x["delta_rnn"])[0],
        "delta_rnn, recompute=16": lambda: delta_rnn(*x["delta_rnn"], recompute=16)[0],
        "delta_rnn, W at C=64 (before)": lambda: delta_rnn(*x["delta_rnn"], chunk_size=FORMER_CHUNK_SIZE)[0],
        "delta_lstm": lambda: delta_lstm(*x["delta_lstm"])[0],
        "delta_lstm, W at C=64 (before)": lambda: delta_lstm(*x["delta_lstm"], chunk_size=FORMER_CHUNK_SIZE)[0],
        "delta_rnn, compiled loop": lambda: delta_rnn(*x["delta_rnn"], compile_loop=True)[0],
        "delta_lstm, compiled loop": lambda: delta_lstm(*x["delta_lstm"], compile_loop=True)[0],
        "recurrent_delta, compiled loop": lambda: recurrent_delta(*x["recurrent_delta"], compile_loop=True)[0],
        "recurrent_delta": lambda: recurrent_delta(*x["recurrent_delta"])[0],
        "recurrent_delta, recompute=16": lambda: recurrent_delta(*x["recurrent_delta"], recompute=16)[0],
        "delta_mlp (chunk delta rules)": lambda: delta_mlp(*x["delta_mlp"])[0],
        "delta_delta (chunk delta rules)": lambda: delta_delta(*x["delta_delta"])[0],
        "mesa, a solve per step": lambda: mesa(*x["mesa"], backend="reference")[0],
        "mesa, chunk (Woodbury)": lambda: mesa(*x["mesa"], backend="chunk")[0],
        "peer: SRWM loop": lambda: srwm(*x["srwm"], backend="reference")[0],
        "peer: delta rule, chunk form": lambda: delta_rule(*x["delta"], backend="chunk")[0],
        "peer: delta rule, loop": lambda: delta_rule(*x["delta"], backend="reference")[0],
    }

    def forward_backward(op):
        return lambda: op().sum().backward()

    print("compiled loops against the eager ones (the first call compiles), fp32, largest relative difference "
          "of the output and of every input's gradient:")
    for name in LOOP_KINDS:
        print(f"  {name:<17} {compiled_difference(ops[name], ops[f'{name}, compiled loop'], x[name]):.2e}")
    medians = interleaved_medians({name: forward_backward(op) for name, op in ops.items()}, args.repeats)
    chunk = medians["peer: delta rule, chunk form"]
    print(f"fwd+bwd, B={B} T={T} H={H} D={d} fp32, {args.threads} threads, median of {args.repeats}:")
    print(f"  {'op':<34}{'ms':>9}{'x delta chunk':>15}{'episodes/s':>12}")
    for name, seconds in medians.items():
        print(f"  {name:<34}{1000 * seconds:>9.1f}{seconds / chunk:>15.1f}{B / seconds:>12.0f}")
    mesa_speedup = medians["mesa, a solve per step"] / medians["mesa, chunk (Woodbury)"]
    mesa_ratio = medians["mesa, chunk (Woodbury)"] / chunk
    print(f"  target: mesa chunk >= 4x a solve per step: {mesa_speedup:.2f}x {verdict(mesa_speedup >= 4)}")
    print(f"  target: mesa chunk <= 2x the delta chunk form: {mesa_ratio:.2f}x {verdict(mesa_ratio <= 2)}")
    for name in LOOP_KINDS:
        before = medians.get(f"{name}, W at C=64 (before)", medians[name])
        eager, compiled = before / medians[name], before / medians[f"{name}, compiled loop"]
        print(f"  target: {name} 2x faster than before ({'W at C=64, ' if name != 'recurrent_delta' else ''}"
              f"eager loop): default {eager:.2f}x, compiled loop {compiled:.2f}x {verdict(max(eager, compiled) >= 2)}")
    result = {"shape": [B, T, H, d], "threads": args.threads, "ms": {n: 1000 * s for n, s in medians.items()}}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
