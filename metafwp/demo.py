"""``make demo``: every fast-weight rule on one input, the chunk form checked against the reference
loop (outputs, final states, gradients) and both timed; the table is printed and saved as JSON.
Then one episode of the embedded Glyphs data is drawn to ``episode.png`` beside it.

    python -m metafwp.demo [--out runs/ops_demo] [--steps 256]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from episodes import FewShotSampler, Glyphs
from episodes.plot import plot_episode
from metafwp.ops import RULES, delta_product, fast_weight, srwm, srwm_columns


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def timed_forward_backward(op, inputs):
    """Seconds for one forward+backward of ``op(*inputs) -> (o, S)`` and the (o, S, grads) it gave."""
    start = time.perf_counter()
    o, S = op(*inputs)
    (o.sum() + S.sum()).backward()
    seconds = time.perf_counter() - start
    grads = [x.grad.clone() for x in inputs if x is not None and x.grad is not None]
    for x in inputs:
        if x is not None:
            x.grad = None
    return seconds, o.detach(), S.detach(), grads


def rule_inputs(rule, B, T, H, K, n=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    extra = (n,) if n > 1 else ()
    q = torch.randn(B, T, H, K, generator=gen)
    k = F.normalize(torch.randn(B, T, H, *extra, K, generator=gen), dim=-1)
    v = torch.randn(B, T, H, *extra, K, generator=gen)
    if rule == "oja":
        v = F.normalize(v, dim=-1)
    beta = torch.rand(B, T, H, *extra, generator=gen)
    g = None
    if rule in ("decay", "gated_delta"):
        g = F.logsigmoid(torch.randn(B, T, H, generator=gen) + 3)
    elif rule == "gla":
        g = F.logsigmoid(torch.randn(B, T, H, K, generator=gen) + 3)
    return [x if x is None else x.requires_grad_() for x in (q, k, v, beta, g)]


def compare(name, make_op, inputs):
    """Each backend timed on its second call (the first warms up allocations)."""
    for backend in ("reference", "chunk"):
        timed_forward_backward(make_op(backend), inputs)
    t_ref, o_ref, S_ref, g_ref = timed_forward_backward(make_op("reference"), inputs)
    t_chunk, o, S, grads = timed_forward_backward(make_op("chunk"), inputs)
    return {
        "op": name,
        "output_error": relative_error(o, o_ref),
        "state_error": relative_error(S, S_ref),
        "gradient_error": max(relative_error(a, b) for a, b in zip(grads, g_ref)),
        "reference_ms": 1e3 * t_ref,
        "chunk_ms": 1e3 * t_chunk,
        "speedup": t_ref / t_chunk,
    }


def main():
    parser = argparse.ArgumentParser(description="Every fast-weight rule: chunk vs reference loop")
    parser.add_argument("--out", default="runs/ops_demo", help="folder for results.json")
    parser.add_argument("--steps", type=int, default=256, help="sequence length T")
    args = parser.parse_args()
    B, T, H, K = 4, args.steps, 4, 32
    print(f"metafwp ops demo: B={B} T={T} H={H} K=V={K}, float32, forward+backward, "
          f"{torch.get_num_threads()} threads\n")

    rows = []
    for rule in RULES:
        def make_op(backend, rule=rule):
            return lambda q, k, v, beta, g: fast_weight(q, k, v, rule=rule, beta=beta, g=g, output_final_state=True,
                                                        backend=backend)
        rows.append(compare(rule, make_op, rule_inputs(rule, B, T, H, K)))
    dp_make = lambda backend: lambda q, k, v, beta, g: delta_product(q, k, v, beta, output_final_state=True,
                                                                     backend=backend)
    rows.append(compare("delta_product n=2", dp_make, rule_inputs("delta", B, T, H, K, n=2)))

    header = f"{'op':<18} {'|o| err':>9} {'|S| err':>9} {'|grad| err':>10} {'loop ms':>8} {'chunk ms':>9} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['op']:<18} {r['output_error']:>9.1e} {r['state_error']:>9.1e} {r['gradient_error']:>10.1e} "
              f"{r['reference_ms']:>8.1f} {r['chunk_ms']:>9.1f} {r['speedup']:>8.1f}x")

    D = 16
    x = torch.randn(B, T, H, D, requires_grad=True)
    W0 = (torch.randn(H, D, srwm_columns(D)) / D ** 0.5).requires_grad_()
    run_srwm = lambda x, W0: srwm(x, W0, output_final_state=True)
    timed_forward_backward(run_srwm, [x, W0])
    seconds, *_ = timed_forward_backward(run_srwm, [x, W0])
    print(f"\nSRWM (sequential; its loop is the CPU backend) B={B} T={T} H={H} D={D}: {1e3 * seconds:.1f} ms fwd+bwd")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"shape": {"B": B, "T": T, "H": H, "K": K, "V": K}, "rules": rows, "srwm_ms": 1e3 * seconds}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nResults written to {(out / 'results.json').resolve()}")

    glyphs = Glyphs("background")  # the embedded data the trainer will learn from (rendered once, cached)
    episode = FewShotSampler(glyphs, n_way=5, k_shot=2, n_query=2, seed=0).sample(range(1))
    plot_episode(episode, 0, out / "episode.png")
    print(f"A 5-way 2-shot Glyphs episode ({glyphs!r}) drawn in {(out / 'episode.png').resolve()}")


if __name__ == "__main__":
    main()
