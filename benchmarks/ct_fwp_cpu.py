"""The continuous-time FWP's field solved with gradients by backpropagation through the solver and by
the adjoint, on CPU, measured in the same run: forward+backward time and the memory autograd keeps
between the forward and the backward (its saved tensors) as the number of solver steps T grows, W(T) the output.
The field is the recipe's (``recipes/irregular_rows_ct_fwp.yaml``: delta_cde, hidden 32, 4 heads, 29
path channels), on a spline through T + 1 observations at unit gaps, rk4 at step 1.

    python benchmarks/ct_fwp_cpu.py                    # B=32, T in 28, 112, 448 (about a minute)
    python benchmarks/ct_fwp_cpu.py --threads 2 --repeats 5
"""
from __future__ import annotations

import argparse
import json

import torch

from metafwp.ops import LearningRuleField, NaturalCubicSpline, solve_ode
from ops_cpu import interleaved_medians  # benchmarks/ is on the path when run as a script
from rtrl_cpu import saved_bytes


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lengths", type=int, nargs="+", default=[28, 112, 448])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    field = LearningRuleField(29, 32, 4, rule="delta", cde=True)
    parameters = tuple(field.parameters())
    results = {}
    for T in args.lengths:
        times = torch.arange(T + 1, dtype=torch.float32)
        field.read(NaturalCubicSpline(times, torch.randn(args.batch, T + 1, 29)))

        def solve(adjoint: bool):  # W(T) only: T rk4 steps of 1, the solution kept at the two ends
            return solve_ode(field, field.initial(times[0]), times[[0, -1]], step_size=1.0, adjoint=adjoint,
                             parameters=parameters)[-1]

        def forward_backward(adjoint: bool):
            return lambda: torch.autograd.grad(solve(adjoint).square().sum(), parameters)

        seconds = interleaved_medians({"direct": forward_backward(False), "adjoint": forward_backward(True)},
                                      args.repeats)
        row = results[T] = {"direct_ms": 1e3 * seconds["direct"], "adjoint_ms": 1e3 * seconds["adjoint"],
                            "direct_saved_MB": saved_bytes(lambda: solve(False)) / 2**20,
                            "adjoint_saved_MB": saved_bytes(lambda: solve(True)) / 2**20}
        print(f"T={T:>4}: forward+backward through the solver {row['direct_ms']:.0f} ms, adjoint "
              f"{row['adjoint_ms']:.0f} ms ({row['adjoint_ms'] / row['direct_ms']:.2f}x); kept for the backward: "
              f"through the solver {row['direct_saved_MB']:.2f} MB, adjoint {row['adjoint_saved_MB']:.3f} MB")
    print(json.dumps({"batch": args.batch, "threads": args.threads, "results": results}))
    return results


if __name__ == "__main__":
    main()
