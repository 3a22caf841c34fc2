"""The mesa rule (von Oswald et al. 2023): the fast weights that minimise the whole regularised local loss.

    W_t = argmin_W sum_{i<=t} ||W k_i - v_i||^2 + lambda ||W||^2 = (sum v_i k_i^T)(sum k_i k_i^T + lambda I)^-1
    o_t = W_t (scale q_t)

The state is the two sums, ``[sum k k^T | sum k v^T]`` [B, H, K, K + V] (lambda is not in it), so a
sequence continued from a returned state gives the same outputs as one call over the whole.
Backends: ``reference`` solves ``(A_t + lambda I) z = scale q_t`` step by step; ``chunk`` (the ``auto``
choice) factors ``A + lambda I`` once per chunk and gets every step's solve within the chunk from the
Woodbury identity (one C x C Cholesky and two triangular solves, ``mesa_chunk``), then reads
``o_t = B_prev^T z_t + sum_{s<=t in chunk} (k_s . z_t) v_s`` as a masked product: one sequential step
per chunk, not per token.
"""
from __future__ import annotations

import torch

from metafwp.ops.common import (check_backend, check_chunk_size, check_qkv, check_same_dtype_device, check_state,
                                compute_dtype, pad_time, resolve_scale)

MESA_BACKENDS = ("auto", "reference", "chunk")
MESA_CHUNK_SIZE = 16


def mesa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, lam: float | torch.Tensor = 1.0,
         scale: float | None = None, initial_state: torch.Tensor | None = None, output_final_state: bool = False,
         backend: str = "auto", chunk_size: int | None = None):
    """Run the mesa layer's recurrence over a batch of sequences.

    Args:
        q, k: [B, T, H, K] queries and keys (L2-normalised keys keep ``A_t`` well conditioned).
        v: [B, T, H, V] values.
        lam: the ridge lambda > 0, a float or a tensor [H] (one per head). Default: 1.
        scale: multiplies q. Default: ``K ** -0.5``.
        initial_state: [B, H, K, K + V] the sums ``[sum k k^T | sum k v^T]`` of earlier steps. Default: zeros.
        output_final_state: also return the final sums.
        backend: ``reference`` (a solve per step), ``chunk`` (Woodbury within each chunk) or
            ``auto`` (chunk). Default: auto.
        chunk_size: steps per chunk of the chunk backend. Default: 16.

    Returns:
        o [B, T, H, V] in q's dtype, and the state [B, H, K, K + V] (compute dtype) or None.
    """
    B, T, H, K, V = check_qkv(q, k, v)
    check_same_dtype_device("q", q, k=k, v=v)
    check_state("initial_state", initial_state, (B, H, K, K + V), "[B, H, K, K + V]", q)
    check_backend(backend, MESA_BACKENDS)
    chunk_size = MESA_CHUNK_SIZE if chunk_size is None else chunk_size
    check_chunk_size(chunk_size)
    scale = resolve_scale(scale, K)
    in_dtype, dtype = q.dtype, compute_dtype(q.dtype)
    ridge = _check_lambda(lam, H, q).to(dtype)[:, None, None] * torch.eye(K, dtype=dtype, device=q.device)  # [H, K, K]
    if initial_state is None:
        initial_state = q.new_zeros(B, H, K, K + V, dtype=dtype)
    state = initial_state.to(dtype)
    q, k, v = (x.to(dtype).transpose(1, 2) for x in (q, k, v))  # [B, H, T, .]
    run = mesa_reference if backend == "reference" else mesa_chunk
    o, state = run(scale * q, k, v, ridge, state, chunk_size)
    return o.transpose(1, 2).to(in_dtype), (state if output_final_state else None)


def mesa_reference(q, k, v, ridge, state, chunk_size=None):
    """Step by step: ``A += k k^T``, ``Bkv += k v^T``, ``o = Bkv^T solve(A + ridge, q)``; [B, H, T, .] inputs."""
    K = q.shape[-1]
    A, Bkv = state.split([K, state.shape[-1] - K], -1)
    outputs = []
    for q_t, k_t, v_t in zip(q.unbind(2), k.unbind(2), v.unbind(2)):
        A = A + k_t.unsqueeze(-1) * k_t.unsqueeze(-2)
        Bkv = Bkv + k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
        z = torch.linalg.solve(A + ridge, q_t.unsqueeze(-1))  # [B, H, K, 1]
        outputs.append((Bkv.transpose(-1, -2) @ z).squeeze(-1))
    return torch.stack(outputs, 2), torch.cat([A, Bkv], -1)


def mesa_chunk(q, k, v, ridge, state, chunk_size):
    """Chunks of C steps, exact at every step without a solve per step: with ``P = (A + ridge)^-1``
    at the chunk's start and ``K`` the chunk's keys (rows), Woodbury gives step t's
    ``z_t = (A + ridge + K_t^T K_t)^-1 q_t = P q_t - P K_t^T (I + K_t P K_t^T)^-1 K_t P q_t`` for the
    first t keys ``K_t``. With ``I + K P K^T = L L^T`` (one Cholesky of C x C, eigenvalues >= 1), the
    leading t x t block of L is the factor of the leading block, so the rows ``w_s`` of
    ``L^-1 K P`` (one triangular solve) give every step's inverse as ``P - sum_{s<=t} w_s w_s^T``:
    ``z_t = P q_t - sum_{s<=t} (w_s . q_t) w_s``. Reads as
    ``o_t = B_prev^T z_t + sum_{s<=t in chunk} (k_s . z_t) v_s``; [B, H, T, .] inputs (zero padding
    adds nothing to the sums)."""
    T, K = q.shape[2], q.shape[-1]
    A, Bkv = state.split([K, state.shape[-1] - K], -1)
    C = min(chunk_size, T)
    q, k, v = (pad_time(x.transpose(1, 2), C).transpose(1, 2) for x in (q, k, v))
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()  # [t, s]: s <= t
    eye = torch.eye(C, dtype=q.dtype, device=q.device)
    outputs = []
    for q_c, k_c, v_c in zip(q.split(C, 2), k.split(C, 2), v.split(C, 2)):
        start = torch.linalg.cholesky(A + ridge)                                   # [B, H, K, K]
        Pq, Pk = torch.cholesky_solve(torch.cat([q_c, k_c], 2).transpose(-1, -2), start).split(C, -1)
        L = torch.linalg.cholesky(eye + k_c @ Pk)                                  # [B, H, C, C]
        w = torch.linalg.solve_triangular(L, Pk.transpose(-1, -2), upper=False)   # [B, H, C, K]: rows w_s
        weights = (q_c @ w.transpose(-1, -2)).masked_fill(~causal, 0.0)            # [B, H, C, C]: w_s . q_t
        z = Pq.transpose(-1, -2) - weights @ w                                     # [B, H, C, K]
        scores = (z @ k_c.transpose(-1, -2)).masked_fill(~causal, 0.0)             # [B, H, C, C]: k_s . z_t
        outputs.append(z @ Bkv + scores @ v_c)
        A = A + k_c.transpose(-1, -2) @ k_c
        Bkv = Bkv + k_c.transpose(-1, -2) @ v_c
    return torch.cat(outputs, 2)[:, :, :T], torch.cat([A, Bkv], -1)


def _check_lambda(lam, num_heads: int, q: torch.Tensor) -> torch.Tensor:
    """lambda as a tensor [H] of positive values, or a ValueError saying what is wrong."""
    if isinstance(lam, torch.Tensor):
        if lam.shape not in ((), (num_heads,)):
            raise ValueError(f"lam must be a float or a tensor [H] = [{num_heads}], got shape {tuple(lam.shape)}")
        values = lam.to(q.device).expand(num_heads)
    elif isinstance(lam, (int, float)) and not isinstance(lam, bool):
        values = torch.full((num_heads,), float(lam), dtype=torch.float64, device=q.device)
    else:
        raise ValueError(f"lam must be a float or a tensor [H], got {type(lam).__name__}")
    if not bool(((values.detach() > 0) & values.detach().isfinite()).all()):
        raise ValueError(f"lam must be finite and > 0 (the ridge term keeps sum k k^T + lam I invertible), got {lam}")
    return values
