"""Chunk-parallel WY/UT form of the delta family: delta, gated_delta, DeltaProduct and Oja.

Per chunk of C steps (metafwp/ops/README.md, with Gamma the within-chunk decay, all ones without g):
``A = tril(diag(b) (K K^T * Gamma), -1)``, ``T = (I + A)^-1 diag(b)`` (one unit-triangular solve),
``U = T V``, ``W = T (K * exp(G))``, then sequentially over chunks ``U' = U - W S``,
``O = (Q * exp(G)) S + (tril(Q K^T) * Gamma) U'``, ``S = exp(G_C) S + (K * exp(G_C - G))^T U'``.
Training stores the per-chunk states ([T/C, B, H, K, V]) and C x C matrices per chunk, never T
copies of the state.

Oja's rule ``S += b (k - S v) v^T`` is the delta rule on ``S^T`` with keys and values swapped, so it
runs the same solve and scan; only the read-out differs (see README.md).
"""
from __future__ import annotations

import torch

from metafwp.ops.chunk_linear import chunked_inputs, decay_within_chunk, from_chunks, read_out, to_chunks


def wy_inverse(keys: torch.Tensor, beta: torch.Tensor, gamma=None) -> torch.Tensor:
    """T = (I + tril(diag(b) (keys keys^T [* gamma]), -1))^-1 diag(b), the UT transform.

    keys [.., C, X], beta [.., C], gamma [.., C, C] or None -> [.., C, C]
    """
    gram = keys @ keys.transpose(-1, -2)
    if gamma is not None:
        gram = gram * gamma
    A = (gram * beta.unsqueeze(-1)).tril(-1)
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    return torch.linalg.solve_triangular(A, eye * beta.unsqueeze(-2), upper=False, unitriangular=True)


def chunk_delta(q, k, v, beta, g, *, scale, initial_state=None, output_final_state=False, chunk_size):
    """Delta (g None) or gated delta (g [B, T, H]) rule; shapes as ``fast_weight``."""
    in_dtype = q.dtype
    B, T, H, K = q.shape
    V = v.shape[-1]
    C, causal, q, k, v, b = chunked_inputs(q, k, v, beta, scale, chunk_size)  # [N, B, H, C, .]
    dtype = q.dtype

    if g is None:
        qk = (q @ k.transpose(-1, -2)).masked_fill(~causal, 0)
        T_ = wy_inverse(k, b)
        U, W = T_ @ v, T_ @ k
        q_read, k_write = q, k
    else:
        gc = to_chunks(g, C, dtype).cumsum(-1)  # [N, B, H, C]
        gamma = decay_within_chunk(gc)
        qk = (q @ k.transpose(-1, -2)) * gamma
        T_ = wy_inverse(k, b, gamma)
        U, W = T_ @ v, T_ @ (k * gc.exp().unsqueeze(-1))
        q_read = q * gc.exp().unsqueeze(-1)
        k_write = k * (gc[..., -1:] - gc).exp().unsqueeze(-1)
    decay = None if g is None else gc[..., -1].exp()[..., None, None]  # [N, B, H, 1, 1]
    S0 = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dtype)
    states, corrected, S = DeltaChunkScan.apply(U, W, k_write, decay, S0)
    o = read_out(qk, corrected, q_read, states)
    return from_chunks(o, T).to(in_dtype), (S if output_final_state else None)


class DeltaChunkScan(torch.autograd.Function):
    """The sequential part of the chunk form, with a hand-written backward.

    Forward, over chunks n: ``states_n = S``, ``u_n = U_n - W_n S``, ``S = d_n S + K_n^T u_n``.
    Backward runs the same recurrence in reverse for dS (two small matmuls per chunk); every other
    gradient is one batched matmul afterwards. Saves W, K, d, the per-chunk states and u.

    U [N, B, H, C, V], W and K [N, B, H, C, K] (contiguous), d [N, B, H, 1, 1] or None,
    S0 [B, H, K, V] -> states [N, B, H, K, V], u [N, B, H, C, V], final S [B, H, K, V].
    Each chunk's block is contiguous, so the per-chunk results are written in place.
    """

    @staticmethod
    def forward(ctx, U, W, K, decay, S0):
        U, W, K = (x.flatten(1, 2) for x in (U, W, K))  # [N, B*H, C, .]
        decay = None if decay is None else decay.flatten(1, 2)
        states = U.new_empty(U.shape[0], U.shape[1], *S0.shape[2:])
        corrected = torch.empty_like(U)
        S = S0.reshape(states.shape[1:])
        for n in range(U.shape[0]):
            states[n] = S
            torch.baddbmm(U[n], W[n], S, alpha=-1, out=corrected[n])
            S = torch.baddbmm(S if decay is None else S * decay[n], K[n].transpose(1, 2), corrected[n])
        ctx.save_for_backward(W, K, decay, states, corrected)
        return states.unflatten(1, S0.shape[:2]), corrected.unflatten(1, S0.shape[:2]), S.view(S0.shape)

    @staticmethod
    def backward(ctx, d_states, d_corrected, d_final):
        W, K, decay, states, corrected = ctx.saved_tensors
        heads = d_final.shape[:2]
        d_states, d_corrected = d_states.flatten(1, 2), d_corrected.flatten(1, 2)
        d_u = torch.empty_like(corrected)   # total gradient of each u
        d_next = torch.empty_like(states)   # gradient of the state leaving each chunk
        dS = d_final.reshape(states.shape[1:])
        for n in reversed(range(W.shape[0])):
            d_next[n] = dS
            torch.baddbmm(d_corrected[n], K[n], dS, out=d_u[n])
            carried = (dS if decay is None else dS * decay[n]) + d_states[n]
            dS = torch.baddbmm(carried, W[n].transpose(1, 2), d_u[n], alpha=-1)
        dW = -(d_u @ states.transpose(-1, -2))
        dK = corrected @ d_next.transpose(-1, -2)
        d_decay = None if decay is None else (states * d_next).sum((-1, -2), keepdim=True).unflatten(1, heads)
        return (d_u.unflatten(1, heads), dW.unflatten(1, heads), dK.unflatten(1, heads), d_decay,
                dS.view(d_final.shape))


def chunk_oja(q, k, v, beta, *, scale, initial_state=None, output_final_state=False, chunk_size):
    """Oja's rule ``S += b (k - S v) v^T``; shapes as ``fast_weight``.

    With P = S^T this is the delta rule on P with key v and value k: corrected targets
    ``U' = U - W S^T`` (in K), read-out ``O = Q S + tril(Q U'^T) V``, update ``S += U'^T V``.
    """
    in_dtype = q.dtype
    B, T, H, K = q.shape
    V = v.shape[-1]
    C, causal, q, k, v, b = chunked_inputs(q, k, v, beta, scale, chunk_size)
    dtype = q.dtype
    T_ = wy_inverse(v, b)
    U, W = T_ @ k, T_ @ v  # [N, B, H, C, K], [N, B, H, C, V]
    # With P = S^T [V, K]: u = U - W P, P += V^T u, the delta scan with v in the role of the keys
    P0 = q.new_zeros(B, H, V, K) if initial_state is None else initial_state.to(dtype).transpose(-1, -2)
    P_states, corrected, P = DeltaChunkScan.apply(U, W, v, None, P0)
    intra = (q @ corrected.transpose(-1, -2)).masked_fill(~causal, 0)
    o = read_out(intra, v, q, P_states.transpose(-1, -2))
    S = P.transpose(-1, -2).contiguous()
    return from_chunks(o, T).to(in_dtype), (S if output_final_state else None)
