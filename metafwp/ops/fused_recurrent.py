"""Fused recurrent Triton kernels for the Table-1 rules hebbian, decay, delta, gated_delta and oja.

One program per (value block, sequence, head) keeps its slice of the state ``S [K, V]`` in
registers and walks the sequence once. Backward runs in Triton with the state recomputed, never
stored per step (derivation in README.md, "Fused recurrent kernels"):

1. a reverse pass carries ``dS`` from the final-state cotangent back to ``dS_0`` and gives dv,
   dbeta, the ``dS``-side of dk and the per-step term ``L_t = b_t k_t^T dS_t v_t``;
2. a forward pass replays ``S`` from the initial state (recomputing each step's update) and gives
   dq, the ``S``-side of dk (delta) or dv (oja) and ``r_t = q_t . dq_t``;
3. the log-decay gradient is a reverse cumulative sum, ``dg_t = <dS_T, S_T> + sum_{s >= t} (r_s - L_s)``.

Each step also keeps one vector beside the inputs (``w = v - S'^T k`` for delta, ``k - S' v`` for oja).
Launched through ``torch.library`` custom ops (``metafwp::fused_recurrent_fwd`` / ``_bwd``) with an
autograd formula, so ``torch.compile`` traces through them. Every tensor argument is contiguous.
"""
from typing import Optional

import torch
import triton
import triton.language as tl

# How each rule (backends.TRITON_RULES) updates the state after its decay.
HEBBIAN, DELTA, OJA = tl.constexpr(0), tl.constexpr(1), tl.constexpr(2)
UPDATE_KIND = {"hebbian": HEBBIAN.value, "decay": HEBBIAN.value, "delta": DELTA.value, "gated_delta": DELTA.value,
               "oja": OJA.value}
VALUE_BLOCK = 32  # columns of S per program (oja needs every column in one program)


@triton.jit
def _block(i_vb, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """Key offsets [BK] and this program's value offsets [BV], with their masks."""
    i_k = tl.arange(0, BK)
    i_v = i_vb * BV + tl.arange(0, BV)
    return i_k, i_v, i_k < K, i_v < V


@triton.jit
def _load_state(S, i_bh, i_k, i_v, mask_k, mask_v, K: tl.constexpr, V: tl.constexpr,
                BK: tl.constexpr, BV: tl.constexpr, PRESENT: tl.constexpr):
    """This program's block [BK, BV] of a state [B, H, K, V] in float32 (zeros when not PRESENT)."""
    block = tl.zeros([BK, BV], dtype=tl.float32)
    if PRESENT:
        offsets = i_bh * K * V + i_k[:, None] * V + i_v[None, :]
        block += tl.load(S + offsets, mask=mask_k[:, None] & mask_v[None, :], other=0).to(tl.float32)
    return block


@triton.jit
def _store_state(S, block, i_bh, i_k, i_v, mask_k, mask_v, K: tl.constexpr, V: tl.constexpr):
    offsets = i_bh * K * V + i_k[:, None] * V + i_v[None, :]
    tl.store(S + offsets, block, mask=mask_k[:, None] & mask_v[None, :])


@triton.jit
def _load_step(q, k, v, beta, g, step, i_k, i_v, mask_k, mask_v, scale,
               K: tl.constexpr, V: tl.constexpr, HAS_DECAY: tl.constexpr):
    """One step's inputs in float32: q * scale [BK], k [BK], v [BV], beta and the decay factor exp(g)."""
    b_q = tl.load(q + step * K + i_k, mask=mask_k, other=0).to(tl.float32) * scale
    b_k = tl.load(k + step * K + i_k, mask=mask_k, other=0).to(tl.float32)
    b_v = tl.load(v + step * V + i_v, mask=mask_v, other=0).to(tl.float32)
    b_beta = tl.load(beta + step).to(tl.float32)
    b_decay = tl.full([], 1.0, tl.float32)
    if HAS_DECAY:
        b_decay = tl.exp(tl.load(g + step).to(tl.float32))
    return b_q, b_k, b_v, b_beta, b_decay


@triton.jit
def _update(b_S, b_k, b_v, b_beta, UPDATE: tl.constexpr):
    """The rank-one update of the decayed state S' [BK, BV]: S_t, and w (v - S'^T k [BV] for delta,
    k - S' v [BK] for oja; unused for the additive rules)."""
    if UPDATE == DELTA:
        b_w = b_v - tl.sum(b_S * b_k[:, None], 0)
        b_S += b_k[:, None] * (b_beta * b_w)[None, :]
    elif UPDATE == OJA:
        b_w = b_k - tl.sum(b_S * b_v[None, :], 1)
        b_S += (b_beta * b_w)[:, None] * b_v[None, :]
    else:
        b_w = b_v
        b_S += (b_beta * b_k)[:, None] * b_v[None, :]
    return b_S, b_w


@triton.jit
def fused_recurrent_fwd_kernel(
    q, k, v, beta, g, h0, o, w, ht, scale, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    UPDATE: tl.constexpr, HAS_DECAY: tl.constexpr, HAS_H0: tl.constexpr,
):
    """Grid (V blocks, B * H). o [B, T, H, V]; w [B, T, H, V] (delta) or [B, T, H, K] (oja); ht [B, H, K, V]."""
    i_vb, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    i_k, i_v, mask_k, mask_v = _block(i_vb, K, V, BK, BV)
    b_S = _load_state(h0, i_bh, i_k, i_v, mask_k, mask_v, K, V, BK, BV, HAS_H0)
    for t in range(T):
        step = (i_b * T + t) * H + i_h
        b_q, b_k, b_v, b_beta, b_decay = _load_step(q, k, v, beta, g, step, i_k, i_v, mask_k, mask_v,
                                                    scale, K, V, HAS_DECAY)
        b_S, b_w = _update(b_S * b_decay, b_k, b_v, b_beta, UPDATE)
        if UPDATE == DELTA:
            tl.store(w + step * V + i_v, b_w, mask=mask_v)
        elif UPDATE == OJA:
            tl.store(w + step * K + i_k, b_w, mask=mask_k)
        b_o = tl.sum(b_S * b_q[:, None], 0)  # [BV]
        tl.store(o + step * V + i_v, b_o.to(o.dtype.element_ty), mask=mask_v)
    _store_state(ht, b_S, i_bh, i_k, i_v, mask_k, mask_v, K, V)


@triton.jit
def fused_recurrent_bwd_reverse_kernel(
    q, k, v, beta, g, w, do, dht, dk_state, dv, dbeta, dloss_L, dh0, scale, T, NB,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    UPDATE: tl.constexpr, HAS_DECAY: tl.constexpr, HAS_DHT: tl.constexpr,
):
    """Reverse pass. dk_state [NV, B, T, H, K] (the dS side of dk), dv [B, T, H, V],
    dbeta and L [NV, B, T, H] (partial sums over this program's value block), dh0 [B, H, K, V]."""
    i_vb, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    i_k, i_v, mask_k, mask_v = _block(i_vb, K, V, BK, BV)
    partial = i_vb * NB * T * H  # offset of this value block in the [NV, B, T, H] partial sums
    block_k = i_vb.to(tl.int64) * NB * T * H * K  # and in the [NV, B, T, H, K] ones (past 2**31 at large shapes)
    b_dS = _load_state(dht, i_bh, i_k, i_v, mask_k, mask_v, K, V, BK, BV, HAS_DHT)
    for t_back in range(T):
        t = T - 1 - t_back
        step = (i_b * T + t) * H + i_h
        b_q, b_k, b_v, b_beta, b_decay = _load_step(q, k, v, beta, g, step, i_k, i_v, mask_k, mask_v,
                                                    scale, K, V, HAS_DECAY)
        b_do = tl.load(do + step * V + i_v, mask=mask_v, other=0).to(tl.float32)
        b_dS += b_q[:, None] * b_do[None, :]  # dS_t, the read-out included
        b_dSv = tl.sum(b_dS * b_v[None, :], 1)  # [BK] dS v
        b_dSk = tl.sum(b_dS * b_k[:, None], 0)  # [BV] dS^T k
        b_L = b_beta * tl.sum(b_dSv * b_k)
        if UPDATE == DELTA:
            b_w = tl.load(w + step * V + i_v, mask=mask_v, other=0)
            b_dk = tl.sum(b_dS * (b_beta * b_w)[None, :], 1)  # dS u
            b_dv = b_beta * b_dSk  # b du, also what the forward replay needs
            b_db = tl.sum(b_dSk * b_w)
            b_dS -= b_k[:, None] * b_dv[None, :]
        elif UPDATE == OJA:
            b_w = tl.load(w + step * K + i_k, mask=mask_k, other=0)
            b_dv = tl.sum(b_dS * (b_beta * b_w)[:, None], 0)  # dS^T e
            b_dk = b_beta * b_dSv  # b de, also what the forward replay needs
            b_db = tl.sum(b_dSv * b_w)
            b_dS -= b_dk[:, None] * b_v[None, :]
        else:
            b_dk = b_beta * b_dSv
            b_dv = b_beta * b_dSk
            b_db = tl.sum(b_dSv * b_k)
        b_dS = b_dS * b_decay
        tl.store(dk_state + block_k + step * K + i_k, b_dk, mask=mask_k)
        tl.store(dv + step * V + i_v, b_dv, mask=mask_v)
        tl.store(dbeta + partial + step, b_db)
        tl.store(dloss_L + partial + step, b_L)
    _store_state(dh0, b_dS, i_bh, i_k, i_v, mask_k, mask_v, K, V)


@triton.jit
def fused_recurrent_bwd_replay_kernel(
    q, k, v, beta, g, h0, do, dk_state, dv, dq, dk_replay, dv_replay, r, scale, T, NB,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    UPDATE: tl.constexpr, HAS_DECAY: tl.constexpr, HAS_H0: tl.constexpr,
):
    """Forward replay. dq [NV, B, T, H, K], dk_replay [NV, B, T, H, K] (delta only), dv_replay
    [B, T, H, V] (oja only), r [NV, B, T, H] (partial q . dq)."""
    i_vb, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    i_k, i_v, mask_k, mask_v = _block(i_vb, K, V, BK, BV)
    block_k = i_vb.to(tl.int64) * NB * T * H * K  # offset of this value block in the [NV, B, T, H, K] partials
    b_S = _load_state(h0, i_bh, i_k, i_v, mask_k, mask_v, K, V, BK, BV, HAS_H0)
    for t in range(T):
        step = (i_b * T + t) * H + i_h
        b_q, b_k, b_v, b_beta, b_decay = _load_step(q, k, v, beta, g, step, i_k, i_v, mask_k, mask_v,
                                                    scale, K, V, HAS_DECAY)
        b_S = b_S * b_decay
        if UPDATE == DELTA:  # the terms that meet S' = the decayed state before the update
            b_bdu = tl.load(dv + step * V + i_v, mask=mask_v, other=0)
            tl.store(dk_replay + block_k + step * K + i_k, -tl.sum(b_S * b_bdu[None, :], 1), mask=mask_k)
        elif UPDATE == OJA:
            b_bde = tl.load(dk_state + step * K + i_k, mask=mask_k, other=0)
            tl.store(dv_replay + step * V + i_v, -tl.sum(b_S * b_bde[:, None], 0), mask=mask_v)
        b_S, _ = _update(b_S, b_k, b_v, b_beta, UPDATE)
        b_do = tl.load(do + step * V + i_v, mask=mask_v, other=0).to(tl.float32)
        b_Sdo = tl.sum(b_S * b_do[None, :], 1)  # [BK]
        tl.store(dq + block_k + step * K + i_k, b_Sdo * scale, mask=mask_k)
        tl.store(r + i_vb * NB * T * H + step, tl.sum(b_Sdo * b_q))  # o . do = (scale q) . S do


def launch_shape(rule: str, K: int, V: int):
    """Block sizes, number of value blocks and warps for heads of K x V."""
    BK = triton.next_power_of_2(K)
    BV = triton.next_power_of_2(V) if rule == "oja" else min(triton.next_power_of_2(V), VALUE_BLOCK)
    num_value_blocks = triton.cdiv(V, BV)
    # the fewest warps whose registers hold the state tiles without spilling (ptxas, sm_90)
    num_warps = 1 if BK * BV <= 1024 else 4 if BK * BV <= 4096 else 8 if BK * BV <= 8192 else 16
    return BK, BV, num_value_blocks, num_warps


def _step_vector_shape(rule: str, qk_shape, V: int) -> tuple:
    """Shape of the per-step vector w: [B, T, H, V] (delta), [B, T, H, K] (oja), empty (additive rules)."""
    B, T, H, K = qk_shape
    return {DELTA.value: (B, T, H, V), OJA.value: (B, T, H, K), HEBBIAN.value: (0,)}[UPDATE_KIND[rule]]


@torch.library.custom_op("metafwp::fused_recurrent_fwd", mutates_args=())
def fused_recurrent_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, g: Optional[torch.Tensor],
    h0: Optional[torch.Tensor], scale: float, rule: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """o [B, T, H, V] in q's dtype, final state [B, H, K, V] float32, and the per-step vector w."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    BK, BV, NV, num_warps = launch_shape(rule, K, V)
    o = torch.empty_like(v)
    w = q.new_empty(_step_vector_shape(rule, q.shape, V), dtype=torch.float32)
    ht = q.new_empty(B, H, K, V, dtype=torch.float32)
    fused_recurrent_fwd_kernel[(NV, B * H)](
        q, k, v, beta, g, h0, o, w, ht, scale, T, H=H, K=K, V=V, BK=BK, BV=BV,
        UPDATE=UPDATE_KIND[rule], HAS_DECAY=g is not None, HAS_H0=h0 is not None, num_warps=num_warps,
    )
    return o, ht, w


@fused_recurrent_fwd.register_fake
def _(q, k, v, beta, g, h0, scale, rule):
    B, T, H, K = q.shape
    V = v.shape[-1]
    return (torch.empty_like(v), q.new_empty(B, H, K, V, dtype=torch.float32),
            q.new_empty(_step_vector_shape(rule, q.shape, V), dtype=torch.float32))


@torch.library.custom_op("metafwp::fused_recurrent_bwd", mutates_args=())
def fused_recurrent_bwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, g: Optional[torch.Tensor],
    h0: Optional[torch.Tensor], w: torch.Tensor, ht: torch.Tensor, do: torch.Tensor,
    dht: Optional[torch.Tensor], scale: float, rule: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (dq, dk, dv, dbeta, dg, dh0) in float32; dg is empty without a decay."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    BK, BV, NV, num_warps = launch_shape(rule, K, V)
    update, has_decay = UPDATE_KIND[rule], g is not None
    f32 = dict(dtype=torch.float32)
    dk_state = q.new_empty(NV, B, T, H, K, **f32)
    dv = q.new_empty(B, T, H, V, **f32)
    dbeta = q.new_empty(NV, B, T, H, **f32)
    dloss_L = q.new_empty(NV, B, T, H, **f32)
    dh0 = q.new_empty(B, H, K, V, **f32)
    shapes = dict(H=H, K=K, V=V, BK=BK, BV=BV, UPDATE=update, HAS_DECAY=has_decay, num_warps=num_warps)
    fused_recurrent_bwd_reverse_kernel[(NV, B * H)](
        q, k, v, beta, g, w, do, dht, dk_state, dv, dbeta, dloss_L, dh0, scale, T, B,
        HAS_DHT=dht is not None, **shapes,
    )
    dq = q.new_empty(NV, B, T, H, K, **f32)
    dk_replay = q.new_empty(NV, B, T, H, K, **f32) if update == DELTA.value else None
    dv_replay = q.new_empty(B, T, H, V, **f32) if update == OJA.value else None
    r = q.new_empty(NV, B, T, H, **f32)
    fused_recurrent_bwd_replay_kernel[(NV, B * H)](
        q, k, v, beta, g, h0, do, dk_state, dv, dq, dk_replay, dv_replay, r, scale, T, B,
        HAS_H0=h0 is not None, **shapes,
    )
    dk = dk_state.sum(0) if dk_replay is None else dk_state.sum(0) + dk_replay.sum(0)
    dv = dv if dv_replay is None else dv + dv_replay
    dg = q.new_empty(0, **f32)
    if has_decay:
        # dg_t = <dS_T, S_T> + sum over s >= t of (r_s - L_s)
        final = 0.0 if dht is None else (dht.float() * ht).sum((-2, -1)).unsqueeze(1)  # [B, 1, H]
        dg = (r.sum(0) - dloss_L.sum(0)).flip(1).cumsum(1).flip(1) + final
    return dq.sum(0), dk, dv, dbeta.sum(0), dg, dh0


@fused_recurrent_bwd.register_fake
def _(q, k, v, beta, g, h0, w, ht, do, dht, scale, rule):
    f32 = dict(dtype=torch.float32)
    dg = q.new_empty(beta.shape if g is not None else (0,), **f32)
    return (torch.empty_like(q, **f32), torch.empty_like(k, **f32), torch.empty_like(v, **f32),
            torch.empty_like(beta, **f32), dg, q.new_empty(*ht.shape, **f32))


def _setup_context(ctx, inputs, output):
    q, k, v, beta, g, h0, scale, rule = inputs
    _, ht, w = output
    ctx.save_for_backward(q, k, v, beta, g, h0, w, ht)
    ctx.scale, ctx.rule = scale, rule
    ctx.h0_dtype = None if h0 is None else h0.dtype


def _backward(ctx, do, dht, dw):
    q, k, v, beta, g, h0, w, ht = ctx.saved_tensors
    dq, dk, dv, dbeta, dg, dh0 = fused_recurrent_bwd(
        q, k, v, beta, g, h0, w, ht, do.contiguous(), None if dht is None else dht.contiguous(),
        ctx.scale, ctx.rule,
    )
    return (dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), dbeta.to(beta.dtype),
            None if g is None else dg.to(g.dtype), None if h0 is None else dh0.to(ctx.h0_dtype), None, None)


fused_recurrent_fwd.register_autograd(_backward, setup_context=_setup_context)


def fused_recurrent(q, k, v, beta, g, *, rule: str, scale: float, initial_state=None, output_final_state=False):
    """The Triton backend of ``fast_weight`` (arguments already checked there).

    Args:
        q, k: [B, T, H, K]; v: [B, T, H, V]; beta: [B, T, H]; g: [B, T, H] log-decay or None.
        rule: one of backends.TRITON_RULES. scale: multiplies q. initial_state: [B, H, K, V] or None.

    Returns:
        o [B, T, H, V] in q's dtype, final state [B, H, K, V] float32 or None.
    """
    contiguous = [None if x is None else x.contiguous() for x in (q, k, v, beta, g, initial_state)]
    o, ht, _ = fused_recurrent_fwd(*contiguous, scale, rule)
    return o, (ht if output_final_state else None)
