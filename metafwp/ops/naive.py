"""Reference time loop for every Table-1 rule and DeltaProduct: the oracle the other backends match.

Written to be as fast as a plain loop can be: inputs are split once with ``unbind`` (no per-step
indexing into tensors that need grad), every step is a handful of batched ops over B and H.
Autograd through it stores one state per step, so it is for checking and short sequences.
"""
from __future__ import annotations

import torch

from metafwp.ops.common import compute_dtype


def fast_weight_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    g: torch.Tensor | None,
    *,
    rule: str,
    scale: float,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
):
    """Plain loop over time, then over the ``n`` micro-steps of each token.

    Args:
        q: [B, T, H, K]
        k: [B, T, H, n, K] (n = 1 for the Table-1 rules, n > 1 for DeltaProduct)
        v: [B, T, H, n, V]
        beta: [B, T, H, n]
        g: None, [B, T, H] (scalar log-decay) or [B, T, H, K] (gla), applied once per token
        rule: one of hebbian, delta, oja, decay, gla, gated_delta
        scale: multiplies q
        initial_state: [B, H, K, V] or None (zeros)

    Returns:
        o [B, T, H, V] in q's dtype; final state [B, H, K, V] in the compute dtype, or None.
    """
    dtype = compute_dtype(q.dtype)
    B, T, H, n, K = k.shape
    V = v.shape[-1]
    if initial_state is None:
        S = q.new_zeros(B, H, K, V, dtype=dtype)
    else:
        S = initial_state.to(dtype)
    qs = (q.to(dtype) * scale).unbind(1)
    ks = k.to(dtype).transpose(2, 3).flatten(1, 2).unbind(1)  # T * n micro-steps of [B, H, K]
    vs = v.to(dtype).transpose(2, 3).flatten(1, 2).unbind(1)
    bs = beta.to(dtype).transpose(2, 3).flatten(1, 2).unsqueeze(-1).unbind(1)  # [B, H, 1]
    decays = None if g is None else g.to(dtype).exp().unbind(1)

    outputs = []
    for t in range(T):
        if decays is not None:
            a = decays[t]  # [B, H] or [B, H, K]
            S = S * (a[..., None, None] if a.ndim == 2 else a[..., None])
        for j in range(t * n, (t + 1) * n):
            k_t, v_t, b_t = ks[j], vs[j], bs[j]
            if rule in ("delta", "gated_delta"):
                # S += k (b (v - S^T k))^T
                u = b_t * (v_t - (k_t.unsqueeze(-2) @ S).squeeze(-2))
                S = S + k_t.unsqueeze(-1) * u.unsqueeze(-2)
            elif rule == "oja":
                # S += b (k - S v) v^T
                e = b_t * (k_t - (S @ v_t.unsqueeze(-1)).squeeze(-1))
                S = S + e.unsqueeze(-1) * v_t.unsqueeze(-2)
            else:  # hebbian, decay, gla: S += b k v^T
                S = S + (b_t * k_t).unsqueeze(-1) * v_t.unsqueeze(-2)
        outputs.append((qs[t].unsqueeze(-2) @ S).squeeze(-2))
    o = torch.stack(outputs, dim=1).to(q.dtype)
    return o, (S if output_final_state else None)
