"""Triton kernels for the SRWM (``ops.srwm``): one program per (sequence, head), W kept on chip.

W [D, 3D+4] is held as four register tiles, one per column block ``[y | q | k | beta]``, and all
four are read and updated together each step. Backward recomputes W instead of storing it per step:
the forward pass writes a checkpoint of W every ``C`` steps; the backward pass walks the chunks
from last to first, replays each chunk from its checkpoint into a scratch buffer of C matrices and
then steps back through it. Memory beyond inputs and outputs: ``ceil(T / C) + C`` matrices per
(sequence, head), against T for autograd through the loop. No reverse-time reverting, so the
gradients carry no drift.

Launched through ``torch.library`` custom ops (``metafwp::srwm_fwd`` / ``metafwp::srwm_bwd``).
Heads up to D = 64 (``backends.SRWM_TRITON_MAX_HEAD_DIM``) fit in registers; ``srwm`` sends larger
heads to the reference loop.
"""
from typing import Optional

import torch
import triton
import triton.language as tl

CHECKPOINT_EVERY = 16  # C: steps between checkpoints of W


@triton.jit
def _load_tiles(W, i_d, i_4, mask_d, D: tl.constexpr):
    """The four column blocks of W [D, 3D+4] (row-major at W) as fp32 tiles [BD, BD] x 3 and [BD, 4]."""
    rows = W + i_d[:, None] * (3 * D + 4)
    mask = mask_d[:, None] & mask_d[None, :]
    Wy = tl.load(rows + i_d[None, :], mask=mask, other=0).to(tl.float32)
    Wq = tl.load(rows + D + i_d[None, :], mask=mask, other=0).to(tl.float32)
    Wk = tl.load(rows + 2 * D + i_d[None, :], mask=mask, other=0).to(tl.float32)
    Wb = tl.load(rows + 3 * D + i_4[None, :], mask=mask_d[:, None], other=0).to(tl.float32)
    return Wy, Wq, Wk, Wb


@triton.jit
def _store_tiles(W, Wy, Wq, Wk, Wb, i_d, i_4, mask_d, D: tl.constexpr):
    rows = W + i_d[:, None] * (3 * D + 4)
    mask = mask_d[:, None] & mask_d[None, :]
    tl.store(rows + i_d[None, :], Wy, mask=mask)
    tl.store(rows + D + i_d[None, :], Wq, mask=mask)
    tl.store(rows + 2 * D + i_d[None, :], Wk, mask=mask)
    tl.store(rows + 3 * D + i_4[None, :], Wb, mask=mask_d[:, None])


@triton.jit
def _softmax(a, mask):
    a = tl.where(mask, a, float("-inf"))
    e = tl.exp(a - tl.max(a, 0))
    return e / tl.sum(e, 0)


@triton.jit
def _read(x, Wy, Wq, Wk, Wb, i_4, mask_d):
    """y, q = softmax(qa), k = softmax(ka), the 4 rates sigmoid(ba), and each rate picked out."""
    y = tl.sum(x[:, None] * Wy, 0)
    q = _softmax(tl.sum(x[:, None] * Wq, 0), mask_d)
    k = _softmax(tl.sum(x[:, None] * Wk, 0), mask_d)
    b = tl.sigmoid(tl.sum(x[:, None] * Wb, 0))  # [4]
    b_y = tl.sum(tl.where(i_4 == 0, b, 0.0), 0)
    b_q = tl.sum(tl.where(i_4 == 1, b, 0.0), 0)
    b_k = tl.sum(tl.where(i_4 == 2, b, 0.0), 0)
    b_b = tl.sum(tl.where(i_4 == 3, b, 0.0), 0)
    return y, q, k, b, b_y, b_q, b_k, b_b


@triton.jit
def _step(x, Wy, Wq, Wk, Wb, i_4, mask_d):
    """One SRWM step: the output y read from W_{t-1}, and W_t (all four blocks change by the old W)."""
    y, q, k, b, rate_y, rate_q, rate_k, rate_b = _read(x, Wy, Wq, Wk, Wb, i_4, mask_d)
    d = (q - k)[:, None]
    Wy += k[:, None] * (tl.sum(d * Wy, 0) * rate_y)[None, :]
    Wq += k[:, None] * (tl.sum(d * Wq, 0) * rate_q)[None, :]
    Wk += k[:, None] * (tl.sum(d * Wk, 0) * rate_k)[None, :]
    Wb += k[:, None] * (tl.sum(d * Wb, 0) * rate_b)[None, :]
    return y, Wy, Wq, Wk, Wb


@triton.jit
def srwm_fwd_kernel(x, W0, y, Wt, checkpoints, T, NUM_CHECKPOINTS,
                    H: tl.constexpr, D: tl.constexpr, BD: tl.constexpr, C: tl.constexpr):
    """Grid (B * H). x, y [B, T, H, D]; W0, Wt [B, H, D, 3D+4]; checkpoints [B, H, ceil(T/C), D, 3D+4]."""
    i_bh = tl.program_id(0).to(tl.int64)  # checkpoint offsets pass 2**31 at large B, H, T
    i_b, i_h = i_bh // H, i_bh % H
    i_d, i_4 = tl.arange(0, BD), tl.arange(0, 4)  # rows and columns of a D block; the 4 rates
    mask_d = i_d < D
    size = D * (3 * D + 4)
    Wy, Wq, Wk, Wb = _load_tiles(W0 + i_bh * size, i_d, i_4, mask_d, D)
    for t in range(T):
        if t % C == 0:
            checkpoint = checkpoints + (i_bh * NUM_CHECKPOINTS + t // C) * size
            _store_tiles(checkpoint, Wy, Wq, Wk, Wb, i_d, i_4, mask_d, D)
        step = ((i_b * T + t) * H + i_h) * D
        b_x = tl.load(x + step + i_d, mask=mask_d, other=0).to(tl.float32)
        b_y, Wy, Wq, Wk, Wb = _step(b_x, Wy, Wq, Wk, Wb, i_4, mask_d)
        tl.store(y + step + i_d, b_y.to(y.dtype.element_ty), mask=mask_d)
    _store_tiles(Wt + i_bh * size, Wy, Wq, Wk, Wb, i_d, i_4, mask_d, D)


@triton.jit
def srwm_bwd_kernel(x, checkpoints, scratch, dy, dWt, dx, dW0, T, NUM_CHECKPOINTS,
                    H: tl.constexpr, D: tl.constexpr, BD: tl.constexpr, C: tl.constexpr,
                    HAS_DWT: tl.constexpr):
    """Grid (B * H). scratch [B, H, C, D, 3D+4] holds the replayed W_{t-1} of one chunk; dx [B, T, H, D]
    float32; dW0 [B, H, D, 3D+4] float32."""
    i_bh = tl.program_id(0).to(tl.int64)  # checkpoint offsets pass 2**31 at large B, H, T
    i_b, i_h = i_bh // H, i_bh % H
    i_d, i_4 = tl.arange(0, BD), tl.arange(0, 4)  # rows and columns of a D block; the 4 rates
    mask_d = i_d < D
    size = D * (3 * D + 4)
    dWy = tl.zeros([BD, BD], dtype=tl.float32)
    dWq = tl.zeros([BD, BD], dtype=tl.float32)
    dWk = tl.zeros([BD, BD], dtype=tl.float32)
    dWb = tl.zeros([BD, 4], dtype=tl.float32)
    if HAS_DWT:
        dWy, dWq, dWk, dWb = _load_tiles(dWt + i_bh * size, i_d, i_4, mask_d, D)
    for chunk_back in range(NUM_CHECKPOINTS):
        chunk = NUM_CHECKPOINTS - 1 - chunk_back
        start = chunk * C
        steps = tl.minimum(C, T - start)
        # replay the chunk, keeping W_{t-1} of every step
        Wy, Wq, Wk, Wb = _load_tiles(checkpoints + (i_bh * NUM_CHECKPOINTS + chunk) * size,
                                     i_d, i_4, mask_d, D)
        for s in range(steps):
            _store_tiles(scratch + (i_bh * C + s) * size, Wy, Wq, Wk, Wb, i_d, i_4, mask_d, D)
            b_x = tl.load(x + ((i_b * T + start + s) * H + i_h) * D + i_d, mask=mask_d, other=0).to(tl.float32)
            _, Wy, Wq, Wk, Wb = _step(b_x, Wy, Wq, Wk, Wb, i_4, mask_d)
        tl.debug_barrier()
        # step back through it: dW holds the gradient w.r.t. W_t
        for s_back in range(steps):
            s = steps - 1 - s_back
            step = ((i_b * T + start + s) * H + i_h) * D
            Wy, Wq, Wk, Wb = _load_tiles(scratch + (i_bh * C + s) * size, i_d, i_4, mask_d, D)
            b_x = tl.load(x + step + i_d, mask=mask_d, other=0).to(tl.float32)
            b_dy = tl.load(dy + step + i_d, mask=mask_d, other=0).to(tl.float32)
            _, q, k, b, rate_y, rate_q, rate_k, rate_b = _read(b_x, Wy, Wq, Wk, Wb, i_4, mask_d)
            d = (q - k)[:, None]
            # W_t = W + k^T (rate * ((q - k) W)), block by block
            c_y = tl.sum(d * Wy, 0)
            c_q = tl.sum(d * Wq, 0)
            c_k = tl.sum(d * Wk, 0)
            c_b = tl.sum(d * Wb, 0)
            dch_y = tl.sum(k[:, None] * dWy, 0)  # dW^T k, per block
            dch_q = tl.sum(k[:, None] * dWq, 0)
            dch_k = tl.sum(k[:, None] * dWk, 0)
            dch_b = tl.sum(k[:, None] * dWb, 0)
            dk = (tl.sum(dWy * (c_y * rate_y)[None, :], 1) + tl.sum(dWq * (c_q * rate_q)[None, :], 1)
                  + tl.sum(dWk * (c_k * rate_k)[None, :], 1) + tl.sum(dWb * (c_b * rate_b)[None, :], 1))
            drate = tl.where(i_4 == 0, tl.sum(dch_y * c_y, 0), 0.0)
            drate += tl.where(i_4 == 1, tl.sum(dch_q * c_q, 0), 0.0)
            drate += tl.where(i_4 == 2, tl.sum(dch_k * c_k, 0), 0.0)
            drate += tl.where(i_4 == 3, tl.sum(dch_b * c_b, 0), 0.0)
            dc_y, dc_q, dc_k, dc_b = dch_y * rate_y, dch_q * rate_q, dch_k * rate_k, dch_b * rate_b
            dd = (tl.sum(Wy * dc_y[None, :], 1) + tl.sum(Wq * dc_q[None, :], 1)
                  + tl.sum(Wk * dc_k[None, :], 1) + tl.sum(Wb * dc_b[None, :], 1))  # d(q - k) = W dc
            dk -= dd
            dqa = tl.where(mask_d, q * (dd - tl.sum(q * dd, 0)), 0.0)
            dka = tl.where(mask_d, k * (dk - tl.sum(k * dk, 0)), 0.0)
            dba = drate * b * (1 - b)
            dWy += d * dc_y[None, :] + b_x[:, None] * b_dy[None, :]
            dWq += d * dc_q[None, :] + b_x[:, None] * dqa[None, :]
            dWk += d * dc_k[None, :] + b_x[:, None] * dka[None, :]
            dWb += d * dc_b[None, :] + b_x[:, None] * dba[None, :]
            b_dx = (tl.sum(Wy * b_dy[None, :], 1) + tl.sum(Wq * dqa[None, :], 1)
                    + tl.sum(Wk * dka[None, :], 1) + tl.sum(Wb * dba[None, :], 1))
            tl.store(dx + step + i_d, b_dx, mask=mask_d)
        tl.debug_barrier()
    _store_tiles(dW0 + i_bh * size, dWy, dWq, dWk, dWb, i_d, i_4, mask_d, D)


def launch_shape(D: int):
    """Block size BD and warps for heads of D."""
    BD = triton.next_power_of_2(D)
    # the fewest warps whose registers hold W and dW without spilling (ptxas, sm_90)
    return BD, (1 if BD <= 16 else 4 if BD <= 32 else 8)


@torch.library.custom_op("metafwp::srwm_fwd", mutates_args=())
def srwm_fwd(x: torch.Tensor, W0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """y [B, T, H, D] in x's dtype, final W [B, H, D, 3D+4] float32, checkpoints float32."""
    B, T, H, D = x.shape
    BD, num_warps = launch_shape(D)
    num_checkpoints = triton.cdiv(T, CHECKPOINT_EVERY)
    y = torch.empty_like(x)
    Wt = x.new_empty(W0.shape, dtype=torch.float32)
    checkpoints = x.new_empty(B, H, num_checkpoints, D, 3 * D + 4, dtype=torch.float32)
    srwm_fwd_kernel[(B * H,)](x, W0, y, Wt, checkpoints, T, num_checkpoints, H=H, D=D, BD=BD,
                              C=CHECKPOINT_EVERY, num_warps=num_warps)
    return y, Wt, checkpoints


@srwm_fwd.register_fake
def _(x, W0):
    B, T, H, D = x.shape
    num_checkpoints = (T + CHECKPOINT_EVERY - 1) // CHECKPOINT_EVERY
    return (torch.empty_like(x), x.new_empty(W0.shape, dtype=torch.float32),
            x.new_empty(B, H, num_checkpoints, D, 3 * D + 4, dtype=torch.float32))


@torch.library.custom_op("metafwp::srwm_bwd", mutates_args=())
def srwm_bwd(x: torch.Tensor, checkpoints: torch.Tensor, dy: torch.Tensor,
             dWt: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """dx [B, T, H, D] and dW0 [B, H, D, 3D+4], both float32."""
    B, T, H, D = x.shape
    BD, num_warps = launch_shape(D)
    scratch = x.new_empty(B, H, CHECKPOINT_EVERY, D, 3 * D + 4, dtype=torch.float32)
    dx = x.new_empty(B, T, H, D, dtype=torch.float32)
    dW0 = x.new_empty(B, H, D, 3 * D + 4, dtype=torch.float32)
    srwm_bwd_kernel[(B * H,)](x, checkpoints, scratch, dy, dWt, dx, dW0, T, checkpoints.shape[2], H=H, D=D,
                              BD=BD, C=CHECKPOINT_EVERY, HAS_DWT=dWt is not None, num_warps=num_warps)
    return dx, dW0


@srwm_bwd.register_fake
def _(x, checkpoints, dy, dWt):
    B, T, H, D = x.shape
    return x.new_empty(B, T, H, D, dtype=torch.float32), x.new_empty(B, H, D, 3 * D + 4, dtype=torch.float32)


def _setup_context(ctx, inputs, output):
    x, W0 = inputs
    ctx.save_for_backward(x, output[2])
    ctx.W0_dtype = W0.dtype


def _backward(ctx, dy, dWt, dcheckpoints):
    x, checkpoints = ctx.saved_tensors
    dx, dW0 = srwm_bwd(x, checkpoints, dy.contiguous(), None if dWt is None else dWt.contiguous())
    return dx.to(x.dtype), dW0.to(ctx.W0_dtype)


srwm_fwd.register_autograd(_backward, setup_context=_setup_context)


def fused_srwm(x: torch.Tensor, W0: torch.Tensor, *, output_final_state: bool = False):
    """The Triton backend of ``srwm`` (arguments already checked there).

    Args:
        x: [B, T, H, D] with D <= 64. W0: [H, D, 3D+4] or [B, H, D, 3D+4].

    Returns:
        y [B, T, H, D] in x's dtype, and W [B, H, D, 3D+4] float32 or None.
    """
    B, T, H, D = x.shape
    y, Wt, _ = srwm_fwd(x.contiguous(), W0.expand(B, H, D, 3 * D + 4).contiguous())
    return y, (Wt if output_final_state else None)
