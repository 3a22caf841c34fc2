"""Public entry points for the Table-1 rules and DeltaProduct: validate, then dispatch to a backend."""
from __future__ import annotations

import torch

from metafwp.ops.backends import fast_weight_backend
from metafwp.ops.chunk_delta import chunk_delta, chunk_oja
from metafwp.ops.chunk_linear import chunk_linear
from metafwp.ops.common import (
    check_chunk_size,
    check_qkv,
    check_same_dtype_device,
    check_shape,
    check_state,
    check_tensor,
    resolve_scale,
)
from metafwp.ops.naive import fast_weight_reference

RULES = ("hebbian", "delta", "oja", "decay", "gla", "gated_delta")
DECAY_SHAPE = {"decay": "[B, T, H]", "gated_delta": "[B, T, H]", "gla": "[B, T, H, K]"}


def default_chunk_size(rule: str, K: int) -> int:
    """Steps per chunk when chunk_size is None, measured on CPU (fp32, fwd+bwd, benchmarks/ops_cpu.py):
    gla's intra-chunk decay is C x C x K, so it takes 16; the delta family's C x C unit-triangular
    solve dominates at small heads, so it takes 16 up to K = 32; every other case takes 32 (64 was
    1.2-2x slower than 32 from K = 16 to 128)."""
    if rule == "gla" or (rule in ("delta", "gated_delta", "oja") and K <= 32):
        return 16
    return 32


def fast_weight(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    rule: str,
    beta: torch.Tensor | None = None,
    g: torch.Tensor | None = None,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    backend: str = "auto",
    chunk_size: int | None = None,
):
    """Run a fast-weight recurrence (Table 1 of Irie & Gershman 2025) over a batch of sequences.

    The state ``S`` [B, H, K, V] is the transpose of that table's W; the output is read after the
    update, ``o_t = S_t^T (scale * q_t)`` (fla's convention).

    Args:
        q: [B, T, H, K] queries.
        k: [B, T, H, K] keys (L2-normalise them for the delta rules).
        v: [B, T, H, V] values.
        rule: ``hebbian`` (S += b k v^T), ``delta`` (S += k (b (v - S^T k))^T),
            ``oja`` (S += b (k - S v) v^T), ``decay`` (S = exp(g) S + b k v^T),
            ``gla`` (S = diag(exp(g)) S + b k v^T), ``gated_delta`` (S = exp(g) S, then delta).
        beta: [B, T, H] learning rate b. Default: ones.
        g: log-decay (<= 0), [B, T, H] for ``decay``/``gated_delta``, [B, T, H, K] for ``gla``;
            required by those rules, rejected by the others.
        scale: multiplies q. Default: ``K ** -0.5``.
        initial_state: [B, H, K, V]. Default: zeros.
        output_final_state: return the final state too.
        backend: ``reference`` (time loop, any float dtype), ``chunk`` (chunk-parallel torch),
            ``triton`` (fused recurrent kernel: CUDA, or CPU under TRITON_INTERPRET=1; not gla;
            K, V <= 128) or ``auto``: triton on CUDA where it has a kernel, else the chunk form
            from 16 steps (from 4 when K >= 32), else the loop. ``explain_backend`` says which
            and why. Default: ``auto``.
        chunk_size: steps per chunk for the chunk backend. Default: ``default_chunk_size(rule, K)``
            (16 for ``gla`` and for the delta rules up to K = 32, else 32).

    Returns:
        o [B, T, H, V] in q's dtype, and the final state [B, H, K, V] (float32 for half inputs,
        else q's dtype) or None.
    """
    if rule not in RULES:
        raise ValueError(f"Unknown rule {rule!r}. Valid: {', '.join(RULES)}")
    B, T, H, K, V = check_qkv(q, k, v)
    if chunk_size is None:
        chunk_size = default_chunk_size(rule, K)
    check_chunk_size(chunk_size)
    if beta is not None:
        check_tensor("beta", beta, 3, "[B, T, H]")
        check_shape("beta", beta, (B, T, H), "[B, T, H]")
    _check_decay(rule, g, (B, T, H, K))
    check_same_dtype_device("q", q, k=k, v=v, beta=beta, g=g)
    check_state("initial_state", initial_state, (B, H, K, V), "[B, H, K, V]", q)
    scale = resolve_scale(scale, K)
    if beta is None:
        beta = q.new_ones(B, T, H)

    backend = fast_weight_backend(backend, rule, T, K, V, q.dtype, q.device).backend
    if backend == "triton":
        from metafwp.ops.fused_recurrent import fused_recurrent

        return fused_recurrent(q, k, v, beta, g, rule=rule, scale=scale, initial_state=initial_state,
                               output_final_state=output_final_state)
    if backend == "reference":
        return fast_weight_reference(
            q, k.unsqueeze(3), v.unsqueeze(3), beta.unsqueeze(3), g, rule=rule, scale=scale,
            initial_state=initial_state, output_final_state=output_final_state,
        )
    options = dict(scale=scale, initial_state=initial_state, output_final_state=output_final_state,
                   chunk_size=chunk_size)
    if rule in ("delta", "gated_delta"):
        return chunk_delta(q, k, v, beta, g, **options)
    if rule == "oja":
        return chunk_oja(q, k, v, beta, **options)
    return chunk_linear(q, k, v, beta, g, **options)


def delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    *,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    backend: str = "auto",
    chunk_size: int | None = None,
):
    """DeltaNet: ``fast_weight(q, k, v, rule="delta", beta=beta, ...)``; same shapes and semantics
    as ``fla.ops.delta_rule``. beta [B, T, H] is required."""
    if beta is None:
        raise ValueError("delta_rule needs beta [B, T, H] (the learning rate); pass ones for b = 1")
    return fast_weight(q, k, v, rule="delta", beta=beta, scale=scale, initial_state=initial_state,
                       output_final_state=output_final_state, backend=backend, chunk_size=chunk_size)


def delta_product(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    *,
    g: torch.Tensor | None = None,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    backend: str = "auto",
    chunk_size: int | None = None,
):
    """DeltaProduct (Siems et al. 2025): ``n`` delta-rule micro-steps per token, read after the last.

    Args:
        q: [B, T, H, K]
        k: [B, T, H, n, K] one key per micro-step
        v: [B, T, H, n, V]
        beta: [B, T, H, n]
        g: optional log-decay [B, T, H] applied once per token before its micro-steps (gated
            DeltaProduct). Default: None.
        scale, initial_state, output_final_state, backend: as ``fast_weight``.
        chunk_size: micro-steps per chunk for the chunk backend. Default: ``default_chunk_size``.

    Returns:
        o [B, T, H, V], final state [B, H, K, V] or None.
    """
    check_tensor("q", q, 4, "[B, T, H, K]")
    B, T, H, K = q.shape
    chunk_size = default_chunk_size("delta", K) if chunk_size is None else chunk_size
    check_chunk_size(chunk_size)
    check_tensor("k", k, 5, "[B, T, H, n, K]")
    n = k.shape[3]
    check_shape("k", k, (B, T, H, n, K), "[B, T, H, n, K]")
    check_tensor("v", v, 5, "[B, T, H, n, V]")
    check_shape("v", v, (B, T, H, n, v.shape[-1]), "[B, T, H, n, V]")
    V = v.shape[-1]
    check_tensor("beta", beta, 4, "[B, T, H, n]")
    check_shape("beta", beta, (B, T, H, n), "[B, T, H, n]")
    if g is not None:
        check_tensor("g", g, 3, "[B, T, H]")
        check_shape("g", g, (B, T, H), "[B, T, H]")
    check_same_dtype_device("q", q, k=k, v=v, beta=beta, g=g)
    check_state("initial_state", initial_state, (B, H, K, V), "[B, H, K, V]", q)
    scale = resolve_scale(scale, K)
    rule = "delta" if g is None else "gated_delta"

    backend = fast_weight_backend(backend, rule, T * n, K, V, q.dtype, q.device).backend
    if backend == "reference":
        return fast_weight_reference(q, k, v, beta, g, rule=rule, scale=scale, initial_state=initial_state,
                                     output_final_state=output_final_state)
    # Interleave the micro-steps into time: token t becomes steps t*n .. t*n+n-1, the query sits on
    # the last of them and the decay on the first.
    q_steps = torch.cat([q.new_zeros(B, T, n - 1, H, K), q.unsqueeze(2)], dim=2).flatten(1, 2)
    g_steps = None if g is None else torch.cat([g.unsqueeze(2), g.new_zeros(B, T, n - 1, H)], 2).flatten(1, 2)
    steps = (q_steps, k.transpose(2, 3).flatten(1, 2), v.transpose(2, 3).flatten(1, 2),
             beta.transpose(2, 3).flatten(1, 2), g_steps)
    if backend == "triton":
        from metafwp.ops.fused_recurrent import fused_recurrent

        o, S = fused_recurrent(*steps, rule=rule, scale=scale, initial_state=initial_state,
                               output_final_state=output_final_state)
    else:
        o, S = chunk_delta(*steps, scale=scale, initial_state=initial_state,
                           output_final_state=output_final_state, chunk_size=chunk_size)
    return o.unflatten(1, (T, n))[:, :, -1], S


def _check_decay(rule: str, g, qk_shape: tuple) -> None:
    B, T, H, K = qk_shape
    if rule not in DECAY_SHAPE:
        if g is not None:
            raise ValueError(
                f"rule {rule!r} has no decay but g was given; pass g=None, or use rule 'decay', 'gla' "
                "or 'gated_delta'"
            )
        return
    layout = DECAY_SHAPE[rule]
    if g is None:
        raise ValueError(f"rule {rule!r} needs the log-decay g of shape {layout}")
    expected = (B, T, H) if rule != "gla" else (B, T, H, K)
    check_tensor("g", g, len(expected), layout)
    check_shape("g", g, expected, layout)
