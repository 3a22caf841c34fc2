"""Chunk-parallel form (Box 1 of Irie & Gershman 2025) of the additive and decaying rules: hebbian, decay, gla.

Inside a chunk of C steps the output is masked attention; across chunks the state carries it:
``O_n = (Q_n * exp(G)) S_n + (tril(Q_n K_n^T) * Gamma) (beta V_n)``,
``S_{n+1} = exp(G_C) S_n + (K_n * exp(G_C - G))^T (beta V_n)``, with G the within-chunk cumulative
log-decay and Gamma_ts = exp(G_t - G_s) for s <= t (computed from the difference, so it never
overflows). Autograd stores the per-chunk states S_n ([T/C, B, H, K, V]) and per-chunk C x C
(gla: C x C x K) decay/attention tensors, never T copies of the state.
"""
from __future__ import annotations

import torch

from metafwp.ops.common import compute_dtype, pad_time


def to_chunks(x: torch.Tensor, chunk: int, dtype: torch.dtype) -> torch.Tensor:
    """[B, T, H, ...] -> contiguous [N, B, H, C, ...] with T zero-padded to N * C.

    Chunks lead, so every chunk's block is contiguous for the sequential scans."""
    x = pad_time(x.to(dtype), chunk)
    x = x.reshape(x.shape[0], -1, chunk, *x.shape[2:])  # [B, N, C, H, ...]
    return x.permute(1, 0, 3, 2, *range(4, x.ndim)).contiguous()


def from_chunks(x: torch.Tensor, length: int) -> torch.Tensor:
    """[N, B, H, C, V] -> [B, T, H, V], dropping the padding."""
    x = x.permute(1, 0, 3, 2, 4)  # [B, N, C, H, V]
    return x.reshape(x.shape[0], -1, *x.shape[3:])[:, :length]


def chunked_inputs(q, k, v, beta, scale: float, chunk_size: int):
    """Cast to the compute dtype and cut into chunks: q (scaled), k [N, B, H, C, K], v [N, B, H, C, V],
    beta [N, B, H, C], plus the chunk length C and the causal mask [C, C] (diagonal included)."""
    dtype = compute_dtype(q.dtype)
    C = min(chunk_size, q.shape[1])
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    return C, causal, to_chunks(q, C, dtype) * scale, *(to_chunks(x, C, dtype) for x in (k, v, beta))


def read_out(intra: torch.Tensor, values: torch.Tensor, queries: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """``intra @ values + queries @ states`` as one fused batched matmul-add, all [N, B, H, ., .]."""
    out = torch.baddbmm(intra.flatten(0, 2) @ values.flatten(0, 2), queries.flatten(0, 2), states.flatten(0, 2))
    return out.view(*intra.shape[:3], *out.shape[1:])


def decay_within_chunk(gc: torch.Tensor) -> torch.Tensor:
    """Gamma [.., C, C] = exp(gc_t - gc_s) for s <= t, else 0, from cumulative log-decays gc [.., C]."""
    C = gc.shape[-1]
    causal = torch.ones(C, C, dtype=torch.bool, device=gc.device).tril()
    diff = gc.unsqueeze(-1) - gc.unsqueeze(-2)
    return torch.where(causal, diff, float("-inf")).exp()


def chunk_linear(q, k, v, beta, g, *, scale, initial_state=None, output_final_state=False, chunk_size):
    """Hebbian (g None), scalar decay (g [B, T, H]) or gla (g [B, T, H, K]); shapes as ``fast_weight``."""
    in_dtype = q.dtype
    B, T, H, K = q.shape
    V = v.shape[-1]
    C, causal, q, k, v, b = chunked_inputs(q, k, v, beta, scale, chunk_size)
    dtype = q.dtype
    v = v * b.unsqueeze(-1)  # beta folded into v

    if g is None:
        attn = (q @ k.transpose(-1, -2)).masked_fill(~causal, 0)
        q_read, k_write, chunk_decay = q, k, None
    elif g.ndim == 3:
        gc = to_chunks(g, C, dtype).cumsum(-1)  # [N, B, H, C]
        attn = (q @ k.transpose(-1, -2)) * decay_within_chunk(gc)
        q_read = q * gc.exp().unsqueeze(-1)
        k_write = k * (gc[..., -1:] - gc).exp().unsqueeze(-1)
        chunk_decay = gc[..., -1].exp()[..., None, None]  # [N, B, H, 1, 1]
    else:
        gc = to_chunks(g, C, dtype).cumsum(-2)  # [N, B, H, C, K]
        diff = gc.unsqueeze(-2) - gc.unsqueeze(-3)  # [N, B, H, C_t, C_s, K]
        gamma = torch.where(causal[..., None], diff, float("-inf")).exp()
        # attn_ts = sum_k q_tk k_sk exp(gc_tk - gc_sk)
        attn = (q.unsqueeze(-2) @ (gamma * k.unsqueeze(-3)).transpose(-1, -2)).squeeze(-2)
        q_read = q * gc.exp()
        k_write = k * (gc[..., -1:, :] - gc).exp()
        chunk_decay = gc[..., -1, :].exp().unsqueeze(-1)  # [N, B, H, K, 1]

    increments = (k_write.transpose(-1, -2) @ v).unbind(0)  # N x [B, H, K, V]
    decays = None if chunk_decay is None else chunk_decay.unbind(0)
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dtype)
    states = []
    for i, increment in enumerate(increments):
        states.append(S)
        S = (S if decays is None else S * decays[i]) + increment
    o = read_out(attn, v, q_read, torch.stack(states))
    return from_chunks(o, T).to(in_dtype), (S if output_final_state else None)
