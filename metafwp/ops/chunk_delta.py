"""Chunk-parallel WY/UT form of the delta family: delta, gated_delta, DeltaProduct and Oja.

Per chunk of C steps (REFERENCE.md 1, with Gamma the within-chunk decay, all ones without g):
``A = tril(diag(b) (K K^T * Gamma), -1)``, ``[U | W] = (I + A)^-1 diag(b) [V | K * exp(G)]``
(one triangular solve), then sequentially over chunks ``U' = U - W S``,
``O = (Q * exp(G)) S + (tril(Q K^T) * Gamma) U'``, ``S = exp(G_C) S + (K * exp(G_C - G))^T U'``.
Autograd stores the per-chunk states ([B, H, T/C, K, V]) and C x C matrices per chunk, never T
copies of the state.

Oja's rule ``S += b (k - S v) v^T`` is the delta rule on ``S^T`` with keys and values swapped, so it
reuses the same solve; only the read-out differs (see README.md).
"""
from __future__ import annotations

import torch

from metafwp.ops.chunk_linear import decay_within_chunk, from_chunks, to_chunks
from metafwp.ops.common import compute_dtype


def wy_solve(keys: torch.Tensor, beta: torch.Tensor, rhs: torch.Tensor, gamma=None) -> torch.Tensor:
    """(I + tril(diag(b) (keys keys^T [* gamma]), -1))^-1 diag(b) rhs.

    keys [.., C, X], beta [.., C], rhs [.., C, Y], gamma [.., C, C] or None -> [.., C, Y]
    """
    gram = keys @ keys.transpose(-1, -2)
    if gamma is not None:
        gram = gram * gamma
    A = (gram * beta.unsqueeze(-1)).tril(-1)
    return torch.linalg.solve_triangular(A, beta.unsqueeze(-1) * rhs, upper=False, unitriangular=True)


def chunk_delta(q, k, v, beta, g, *, scale, initial_state=None, output_final_state=False, chunk_size=64):
    """Delta (g None) or gated delta (g [B, T, H]) rule; shapes as ``fast_weight``."""
    in_dtype, dtype = q.dtype, compute_dtype(q.dtype)
    B, T, H, K = q.shape
    V = v.shape[-1]
    C = min(chunk_size, T)
    q = to_chunks(q, C, dtype) * scale  # [B, H, N, C, K]
    k = to_chunks(k, C, dtype)
    v = to_chunks(v, C, dtype)
    b = to_chunks(beta, C, dtype)  # [B, H, N, C]
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()

    if g is None:
        gamma = None
        qk = (q @ k.transpose(-1, -2)).masked_fill(~causal, 0)
        UW = wy_solve(k, b, torch.cat([v, k], dim=-1))
        q_read, k_write, chunk_decay = q, k, None
    else:
        gc = to_chunks(g, C, dtype).cumsum(-1)  # [B, H, N, C]
        gamma = decay_within_chunk(gc)
        qk = (q @ k.transpose(-1, -2)) * gamma
        UW = wy_solve(k, b, torch.cat([v, k * gc.exp().unsqueeze(-1)], dim=-1), gamma)
        q_read = q * gc.exp().unsqueeze(-1)
        k_write = k * (gc[..., -1:] - gc).exp().unsqueeze(-1)
        chunk_decay = gc[..., -1].exp()[..., None, None].unbind(2)
    U, W = UW[..., :V].unbind(2), UW[..., V:].unbind(2)

    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dtype)
    outputs = []
    for i, (q_i, qk_i, k_i) in enumerate(zip(q_read.unbind(2), qk.unbind(2), k_write.unbind(2))):
        u = U[i] - W[i] @ S  # [B, H, C, V]
        outputs.append(q_i @ S + qk_i @ u)
        S = (S if chunk_decay is None else S * chunk_decay[i]) + k_i.transpose(-1, -2) @ u
    o = from_chunks(torch.stack(outputs, dim=2), T).to(in_dtype)
    return o, (S if output_final_state else None)


def chunk_oja(q, k, v, beta, *, scale, initial_state=None, output_final_state=False, chunk_size=64):
    """Oja's rule ``S += b (k - S v) v^T``; shapes as ``fast_weight``.

    With P = S^T this is the delta rule on P with key v and value k: corrected targets
    ``U' = U - W S^T`` (in K), read-out ``O = Q S + tril(Q U'^T) V``, update ``S += U'^T V``.
    """
    in_dtype, dtype = q.dtype, compute_dtype(q.dtype)
    B, T, H, K = q.shape
    V = v.shape[-1]
    C = min(chunk_size, T)
    q = to_chunks(q, C, dtype) * scale
    k = to_chunks(k, C, dtype)
    v = to_chunks(v, C, dtype)
    b = to_chunks(beta, C, dtype)
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    UW = wy_solve(v, b, torch.cat([k, v], dim=-1))
    U, W = UW[..., :K].unbind(2), UW[..., K:].unbind(2)

    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dtype)
    outputs = []
    for i, (q_i, v_i) in enumerate(zip(q.unbind(2), v.unbind(2))):
        u = U[i] - W[i] @ S.transpose(-1, -2)  # [B, H, C, K]
        outputs.append(q_i @ S + (q_i @ u.transpose(-1, -2)).masked_fill(~causal, 0) @ v_i)
        S = S + u.transpose(-1, -2) @ v_i
    o = from_chunks(torch.stack(outputs, dim=2), T).to(in_dtype)
    return o, (S if output_final_state else None)
