"""Triton kernels for the time loops of the recurrent FWPs (``ops.recurrent_fwp``): the recurrent
matrix R of ``delta_rnn`` and the whole ``recurrent_delta``. One program per (sequence, head) keeps
its fast matrix [D, D] on chip and walks the sequence once.

Backward recomputes the matrix instead of storing it per step, as the SRWM kernel does
(``fused_srwm.py``): the forward pass writes a checkpoint every ``C`` steps; the backward pass takes
the chunks last to first, replays one from its checkpoint into a scratch buffer of C matrices, and
steps back through it with the chain rule of one step. The previous output ``y_{t-1}`` that a step
reads is the kernel's own output, so it is not stored twice (for half inputs the backward pass reads
it rounded to the output dtype, as the next layer does). Memory beyond inputs and outputs:
``ceil(T / C) + C`` matrices per (sequence, head) instead of T.

Launched through ``torch.library`` custom ops (``metafwp::delta_rnn_fwd`` / ``_bwd``,
``metafwp::recurrent_delta_fwd`` / ``_bwd``); heads up to D = 64 (``backends.RFWP_TRITON_MAX_HEAD_DIM``).
"""
from typing import Optional

import torch
import triton
import triton.language as tl

from metafwp.ops.fused_srwm import _softmax

CHECKPOINT_EVERY = 16  # C: steps between checkpoints of the fast matrix


@triton.jit
def _tanh(a):
    return 2 * tl.sigmoid(2 * a) - 1


@triton.jit
def _load_vector(pointer, i_d, mask):
    return tl.load(pointer + i_d, mask=mask, other=0).to(tl.float32)


@triton.jit
def _load_matrix(pointer, i_d, mask2, D: tl.constexpr, stride: tl.constexpr):
    return tl.load(pointer + i_d[:, None] * stride + i_d[None, :], mask=mask2, other=0).to(tl.float32)


@triton.jit
def _store_matrix(pointer, M, i_d, mask2, D: tl.constexpr):
    tl.store(pointer + i_d[:, None] * D + i_d[None, :], M, mask=mask2)


@triton.jit
def _previous_output(y, y0, step, t, i_bh, i_d, mask, H: tl.constexpr, D: tl.constexpr):
    """``y_{t-1}``: the kernel's output one step back, or the initial y0 at t = 0."""
    if t == 0:
        previous = _load_vector(y0 + i_bh * D, i_d, mask)
    else:
        previous = _load_vector(y + (step - H) * D, i_d, mask)
    return previous


@triton.jit
def _delta_update(M, k, v, b):
    """The delta rule on M [keys, values]: ``(M^T k, u, M + k u^T)`` with ``u = b (v - M^T k)``."""
    Mk = tl.sum(M * k[:, None], 0)
    u = b * (v - Mk)
    return Mk, u, M + k[:, None] * u[None, :]


@triton.jit
def delta_rnn_fwd_kernel(rk, rv, rb, z, R0, y0, y, Rt, checkpoints, T, NUM_CHECKPOINTS,
                         H: tl.constexpr, D: tl.constexpr, BD: tl.constexpr, C: tl.constexpr):
    """Grid (B * H). rk, rv, z, y [B, T, H, D]; rb [B, T, H]; R0, Rt [B, H, D, D]; y0 [B, H, D];
    checkpoints [B, H, ceil(T/C), D, D]."""
    i_bh = tl.program_id(0).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    i_d = tl.arange(0, BD)
    mask = i_d < D
    mask2 = mask[:, None] & mask[None, :]
    R = _load_matrix(R0 + i_bh * D * D, i_d, mask2, D, D)
    y_prev = _load_vector(y0 + i_bh * D, i_d, mask)
    for t in range(T):
        if t % C == 0:
            _store_matrix(checkpoints + (i_bh * NUM_CHECKPOINTS + t // C) * D * D, R, i_d, mask2, D)
        step = (i_b * T + t) * H + i_h
        b_rk = _load_vector(rk + step * D, i_d, mask)
        b_rb = tl.load(rb + step).to(tl.float32)
        s = tl.where(mask, _softmax(y_prev, mask), 0.0)
        _, u, R = _delta_update(R, b_rk, _load_vector(rv + step * D, i_d, mask), b_rb)
        b_y = tl.sum(R * s[:, None], 0) + _load_vector(z + step * D, i_d, mask)
        tl.store(y + step * D + i_d, b_y.to(y.dtype.element_ty), mask=mask)
        y_prev = tl.where(mask, b_y, 0.0)
    _store_matrix(Rt + i_bh * D * D, R, i_d, mask2, D)


@triton.jit
def delta_rnn_bwd_kernel(rk, rv, rb, y, y0, checkpoints, scratch, dy, dRt, drk, drv, drb, dz, dR0, dy0, T,
                         NUM_CHECKPOINTS, H: tl.constexpr, D: tl.constexpr, BD: tl.constexpr, C: tl.constexpr,
                         HAS_DRT: tl.constexpr):
    """Grid (B * H). Gradients float32: drk, drv, dz [B, T, H, D], drb [B, T, H], dR0 [B, H, D, D],
    dy0 [B, H, D]; scratch [B, H, C, D, D] holds the replayed R_{t-1} of one chunk."""
    i_bh = tl.program_id(0).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    i_d = tl.arange(0, BD)
    mask = i_d < D
    mask2 = mask[:, None] & mask[None, :]
    dR = tl.zeros([BD, BD], dtype=tl.float32)
    if HAS_DRT:
        dR = _load_matrix(dRt + i_bh * D * D, i_d, mask2, D, D)
    dy_next = tl.zeros([BD], dtype=tl.float32)  # gradient reaching y_t through the next step's softmax
    for chunk_back in range(NUM_CHECKPOINTS):
        chunk = NUM_CHECKPOINTS - 1 - chunk_back
        start = chunk * C
        steps = tl.minimum(C, T - start)
        R = _load_matrix(checkpoints + (i_bh * NUM_CHECKPOINTS + chunk) * D * D, i_d, mask2, D, D)
        for s in range(steps):  # replay: R's updates do not read y
            _store_matrix(scratch + (i_bh * C + s) * D * D, R, i_d, mask2, D)
            step = (i_b * T + start + s) * H + i_h
            _, _, R = _delta_update(R, _load_vector(rk + step * D, i_d, mask), _load_vector(rv + step * D, i_d, mask),
                                    tl.load(rb + step).to(tl.float32))
        tl.debug_barrier()
        for s_back in range(steps):
            s = steps - 1 - s_back
            t = start + s
            step = (i_b * T + t) * H + i_h
            R = _load_matrix(scratch + (i_bh * C + s) * D * D, i_d, mask2, D, D)
            y_prev = _previous_output(y, y0, step, t, i_bh, i_d, mask, H, D)
            softmax = tl.where(mask, _softmax(y_prev, mask), 0.0)
            b_rk = _load_vector(rk + step * D, i_d, mask)
            b_rv = _load_vector(rv + step * D, i_d, mask)
            b_rb = tl.load(rb + step).to(tl.float32)
            Rk, u, R_t = _delta_update(R, b_rk, b_rv, b_rb)
            g = _load_vector(dy + step * D, i_d, mask) + dy_next  # d loss / d y_t
            tl.store(dz + step * D + i_d, g, mask=mask)
            dR += softmax[:, None] * g[None, :]  # now d / d R_t
            ds = tl.sum(R_t * g[None, :], 1)
            dy_next = tl.where(mask, softmax * (ds - tl.sum(softmax * ds, 0)), 0.0)
            du = tl.sum(dR * b_rk[:, None], 0)
            d_rk = tl.sum(dR * u[None, :], 1)
            tl.store(drv + step * D + i_d, b_rb * du, mask=mask)
            tl.store(drb + step, tl.sum(du * (b_rv - Rk), 0))
            dRk = -b_rb * du  # d / d (R^T rk)
            dR += b_rk[:, None] * dRk[None, :]  # now d / d R_{t-1}
            d_rk += tl.sum(R * dRk[None, :], 1)
            tl.store(drk + step * D + i_d, d_rk, mask=mask)
        tl.debug_barrier()
    _store_matrix(dR0 + i_bh * D * D, dR, i_d, mask2, D)
    tl.store(dy0 + i_bh * D + i_d, dy_next, mask=mask)


@triton.jit
def _load_slow(recurrent, i_h, i_d, mask, mask2, D: tl.constexpr):
    """Head i_h's slow recurrent weights [D, 3D+1] as tiles R_q, R_k, R_v [D, D] and r_b [D]."""
    slow = recurrent + i_h * D * (3 * D + 1)
    Rq = _load_matrix(slow, i_d, mask2, D, 3 * D + 1)
    Rk = _load_matrix(slow + D, i_d, mask2, D, 3 * D + 1)
    Rv = _load_matrix(slow + 2 * D, i_d, mask2, D, 3 * D + 1)
    rbv = tl.load(slow + i_d * (3 * D + 1) + 3 * D, mask=mask, other=0).to(tl.float32)
    return Rq, Rk, Rv, rbv


@triton.jit
def _rdn_read(qx, kx, vx, bx, step, a, Rq, Rk, Rv, rbv, i_d, mask, D: tl.constexpr):
    """q, k, v, b of a Recurrent Delta Net step from the input's projections and ``a = tanh(y_{t-1})``."""
    q = tl.where(mask, _softmax(_load_vector(qx + step * D, i_d, mask) + tl.sum(a[:, None] * Rq, 0), mask), 0.0)
    k = tl.where(mask, _softmax(_load_vector(kx + step * D, i_d, mask) + tl.sum(a[:, None] * Rk, 0), mask), 0.0)
    v = _load_vector(vx + step * D, i_d, mask) + tl.sum(a[:, None] * Rv, 0)
    b = tl.sigmoid(tl.load(bx + step).to(tl.float32) + tl.sum(a * rbv, 0))
    return q, k, v, b


@triton.jit
def recurrent_delta_fwd_kernel(qx, kx, vx, bx, recurrent, W0, y0, y, Wt, checkpoints, T, NUM_CHECKPOINTS,
                               H: tl.constexpr, D: tl.constexpr, BD: tl.constexpr, C: tl.constexpr):
    """Grid (B * H). qx, kx, vx, y [B, T, H, D]; bx [B, T, H]; recurrent [H, D, 3D+1]; W0, Wt
    [B, H, D, D]; y0 [B, H, D]; checkpoints [B, H, ceil(T/C), D, D]."""
    i_bh = tl.program_id(0).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    i_d = tl.arange(0, BD)
    mask = i_d < D
    mask2 = mask[:, None] & mask[None, :]
    Rq, Rk, Rv, rbv = _load_slow(recurrent, i_h, i_d, mask, mask2, D)
    W = _load_matrix(W0 + i_bh * D * D, i_d, mask2, D, D)
    y_prev = _load_vector(y0 + i_bh * D, i_d, mask)
    for t in range(T):
        if t % C == 0:
            _store_matrix(checkpoints + (i_bh * NUM_CHECKPOINTS + t // C) * D * D, W, i_d, mask2, D)
        step = (i_b * T + t) * H + i_h
        q, k, v, b = _rdn_read(qx, kx, vx, bx, step, tl.where(mask, _tanh(y_prev), 0.0), Rq, Rk, Rv, rbv, i_d, mask, D)
        _, _, W = _delta_update(W, k, v, b)
        b_y = tl.sum(W * q[:, None], 0)
        tl.store(y + step * D + i_d, b_y.to(y.dtype.element_ty), mask=mask)
        y_prev = tl.where(mask, b_y, 0.0)
    _store_matrix(Wt + i_bh * D * D, W, i_d, mask2, D)


@triton.jit
def recurrent_delta_bwd_kernel(qx, kx, vx, bx, recurrent, y, y0, checkpoints, scratch, dy, dWt, dqx, dkx, dvx,
                               dbx, drecurrent, dW0, dy0, T, NUM_CHECKPOINTS, H: tl.constexpr, D: tl.constexpr,
                               BD: tl.constexpr, C: tl.constexpr, HAS_DWT: tl.constexpr):
    """Grid (B * H). Gradients float32: dqx, dkx, dvx [B, T, H, D], dbx [B, T, H], drecurrent
    [B, H, D, 3D+1] (this sequence's share; summed over B outside), dW0 [B, H, D, D], dy0 [B, H, D]."""
    i_bh = tl.program_id(0).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    i_d = tl.arange(0, BD)
    mask = i_d < D
    mask2 = mask[:, None] & mask[None, :]
    Rq, Rk, Rv, rbv = _load_slow(recurrent, i_h, i_d, mask, mask2, D)
    dRq = tl.zeros([BD, BD], dtype=tl.float32)
    dRk = tl.zeros([BD, BD], dtype=tl.float32)
    dRv = tl.zeros([BD, BD], dtype=tl.float32)
    drbv = tl.zeros([BD], dtype=tl.float32)
    dW = tl.zeros([BD, BD], dtype=tl.float32)
    if HAS_DWT:
        dW = _load_matrix(dWt + i_bh * D * D, i_d, mask2, D, D)
    dy_next = tl.zeros([BD], dtype=tl.float32)  # gradient reaching y_t through the next step's tanh
    for chunk_back in range(NUM_CHECKPOINTS):
        chunk = NUM_CHECKPOINTS - 1 - chunk_back
        start = chunk * C
        steps = tl.minimum(C, T - start)
        W = _load_matrix(checkpoints + (i_bh * NUM_CHECKPOINTS + chunk) * D * D, i_d, mask2, D, D)
        for s in range(steps):  # replay, keeping W_{t-1}; y_{t-1} is the forward's output
            _store_matrix(scratch + (i_bh * C + s) * D * D, W, i_d, mask2, D)
            t = start + s
            step = (i_b * T + t) * H + i_h
            y_prev = _previous_output(y, y0, step, t, i_bh, i_d, mask, H, D)
            q, k, v, b = _rdn_read(qx, kx, vx, bx, step, tl.where(mask, _tanh(y_prev), 0.0), Rq, Rk, Rv, rbv, i_d,
                                   mask, D)
            _, _, W = _delta_update(W, k, v, b)
        tl.debug_barrier()
        for s_back in range(steps):
            s = steps - 1 - s_back
            t = start + s
            step = (i_b * T + t) * H + i_h
            W = _load_matrix(scratch + (i_bh * C + s) * D * D, i_d, mask2, D, D)
            y_prev = _previous_output(y, y0, step, t, i_bh, i_d, mask, H, D)
            a = tl.where(mask, _tanh(y_prev), 0.0)
            q, k, v, b = _rdn_read(qx, kx, vx, bx, step, a, Rq, Rk, Rv, rbv, i_d, mask, D)
            Wk, u, W_t = _delta_update(W, k, v, b)
            g = _load_vector(dy + step * D, i_d, mask) + dy_next  # d loss / d y_t
            dq = tl.sum(W_t * g[None, :], 1)
            dW += q[:, None] * g[None, :]  # now d / d W_t
            du = tl.sum(dW * k[:, None], 0)
            dk = tl.sum(dW * u[None, :], 1)
            dv = b * du
            db = tl.sum(du * (v - Wk), 0)
            dWk = -b * du
            dW += k[:, None] * dWk[None, :]  # now d / d W_{t-1}
            dk += tl.sum(W * dWk[None, :], 1)
            dqa = tl.where(mask, q * (dq - tl.sum(q * dq, 0)), 0.0)
            dka = tl.where(mask, k * (dk - tl.sum(k * dk, 0)), 0.0)
            dba = db * b * (1 - b)
            tl.store(dqx + step * D + i_d, dqa, mask=mask)
            tl.store(dkx + step * D + i_d, dka, mask=mask)
            tl.store(dvx + step * D + i_d, dv, mask=mask)
            tl.store(dbx + step, dba)
            dRq += a[:, None] * dqa[None, :]
            dRk += a[:, None] * dka[None, :]
            dRv += a[:, None] * dv[None, :]
            drbv += a * dba
            da = (tl.sum(Rq * dqa[None, :], 1) + tl.sum(Rk * dka[None, :], 1) + tl.sum(Rv * dv[None, :], 1)
                  + rbv * dba)
            dy_next = tl.where(mask, da * (1 - a * a), 0.0)
        tl.debug_barrier()
    out = drecurrent + i_bh * D * (3 * D + 1) + i_d[:, None] * (3 * D + 1) + i_d[None, :]
    tl.store(out, dRq, mask=mask2)
    tl.store(out + D, dRk, mask=mask2)
    tl.store(out + 2 * D, dRv, mask=mask2)
    tl.store(drecurrent + i_bh * D * (3 * D + 1) + i_d * (3 * D + 1) + 3 * D, drbv, mask=mask)
    _store_matrix(dW0 + i_bh * D * D, dW, i_d, mask2, D)
    tl.store(dy0 + i_bh * D + i_d, dy_next, mask=mask)


def launch_shape(D: int):
    """Block size BD and warps for heads of D."""
    BD = triton.next_power_of_2(D)
    return BD, (1 if BD <= 16 else 4 if BD <= 32 else 8)  # the fewest without spills (ptxas, sm_90)


def _checkpoint_count(T: int) -> int:
    return (T + CHECKPOINT_EVERY - 1) // CHECKPOINT_EVERY


@torch.library.custom_op("metafwp::delta_rnn_fwd", mutates_args=())
def delta_rnn_fwd(rk: torch.Tensor, rv: torch.Tensor, rb: torch.Tensor, z: torch.Tensor, R0: torch.Tensor,
                  y0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """y [B, T, H, D] in z's dtype, final R [B, H, D, D] float32, checkpoints float32."""
    B, T, H, D = rk.shape
    BD, num_warps = launch_shape(D)
    y = torch.empty_like(z)
    Rt = rk.new_empty(B, H, D, D, dtype=torch.float32)
    checkpoints = rk.new_empty(B, H, _checkpoint_count(T), D, D, dtype=torch.float32)
    delta_rnn_fwd_kernel[(B * H,)](rk, rv, rb, z, R0, y0, y, Rt, checkpoints, T, checkpoints.shape[2], H=H, D=D,
                                   BD=BD, C=CHECKPOINT_EVERY, num_warps=num_warps)
    return y, Rt, checkpoints


@delta_rnn_fwd.register_fake
def _(rk, rv, rb, z, R0, y0):
    B, T, H, D = rk.shape
    return (torch.empty_like(z), rk.new_empty(B, H, D, D, dtype=torch.float32),
            rk.new_empty(B, H, _checkpoint_count(T), D, D, dtype=torch.float32))


@torch.library.custom_op("metafwp::delta_rnn_bwd", mutates_args=())
def delta_rnn_bwd(rk: torch.Tensor, rv: torch.Tensor, rb: torch.Tensor, y: torch.Tensor, y0: torch.Tensor,
                  checkpoints: torch.Tensor, dy: torch.Tensor, dRt: Optional[torch.Tensor]) -> list[torch.Tensor]:
    """[drk, drv, drb, dz, dR0, dy0], float32."""
    B, T, H, D = rk.shape
    BD, num_warps = launch_shape(D)
    scratch = rk.new_empty(B, H, CHECKPOINT_EVERY, D, D, dtype=torch.float32)
    drk, drv, dz = (rk.new_empty(B, T, H, D, dtype=torch.float32) for _ in range(3))
    drb = rk.new_empty(B, T, H, dtype=torch.float32)
    dR0 = rk.new_empty(B, H, D, D, dtype=torch.float32)
    dy0 = rk.new_empty(B, H, D, dtype=torch.float32)
    delta_rnn_bwd_kernel[(B * H,)](rk, rv, rb, y, y0, checkpoints, scratch, dy, dRt, drk, drv, drb, dz, dR0, dy0,
                                   T, checkpoints.shape[2], H=H, D=D, BD=BD, C=CHECKPOINT_EVERY,
                                   HAS_DRT=dRt is not None, num_warps=num_warps)
    return [drk, drv, drb, dz, dR0, dy0]


@delta_rnn_bwd.register_fake
def _(rk, rv, rb, y, y0, checkpoints, dy, dRt):
    B, T, H, D = rk.shape
    f32 = dict(dtype=torch.float32)
    return [rk.new_empty(B, T, H, D, **f32), rk.new_empty(B, T, H, D, **f32), rk.new_empty(B, T, H, **f32),
            rk.new_empty(B, T, H, D, **f32), rk.new_empty(B, H, D, D, **f32), rk.new_empty(B, H, D, **f32)]


def _delta_rnn_setup(ctx, inputs, output):
    rk, rv, rb, z, R0, y0 = inputs
    ctx.save_for_backward(rk, rv, rb, output[0], y0, output[2])
    ctx.dtypes = [x.dtype for x in inputs]


def _delta_rnn_backward(ctx, dy, dRt, dcheckpoints):
    rk, rv, rb, y, y0, checkpoints = ctx.saved_tensors
    grads = delta_rnn_bwd(rk, rv, rb, y, y0, checkpoints, dy.contiguous(), _optional(dRt))
    return tuple(g.to(dtype) for g, dtype in zip(grads, ctx.dtypes))


delta_rnn_fwd.register_autograd(_delta_rnn_backward, setup_context=_delta_rnn_setup)


@torch.library.custom_op("metafwp::recurrent_delta_fwd", mutates_args=())
def recurrent_delta_fwd(qx: torch.Tensor, kx: torch.Tensor, vx: torch.Tensor, bx: torch.Tensor,
                        recurrent: torch.Tensor, W0: torch.Tensor,
                        y0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """y [B, T, H, D] in qx's dtype, final W [B, H, D, D] float32, checkpoints float32."""
    B, T, H, D = qx.shape
    BD, num_warps = launch_shape(D)
    y = torch.empty_like(qx)
    Wt = qx.new_empty(B, H, D, D, dtype=torch.float32)
    checkpoints = qx.new_empty(B, H, _checkpoint_count(T), D, D, dtype=torch.float32)
    recurrent_delta_fwd_kernel[(B * H,)](qx, kx, vx, bx, recurrent, W0, y0, y, Wt, checkpoints, T, checkpoints.shape[2],
                                         H=H, D=D, BD=BD, C=CHECKPOINT_EVERY, num_warps=num_warps)
    return y, Wt, checkpoints


@recurrent_delta_fwd.register_fake
def _(qx, kx, vx, bx, recurrent, W0, y0):
    B, T, H, D = qx.shape
    return (torch.empty_like(qx), qx.new_empty(B, H, D, D, dtype=torch.float32),
            qx.new_empty(B, H, _checkpoint_count(T), D, D, dtype=torch.float32))


@torch.library.custom_op("metafwp::recurrent_delta_bwd", mutates_args=())
def recurrent_delta_bwd(qx: torch.Tensor, kx: torch.Tensor, vx: torch.Tensor, bx: torch.Tensor,
                        recurrent: torch.Tensor, y: torch.Tensor, y0: torch.Tensor, checkpoints: torch.Tensor,
                        dy: torch.Tensor, dWt: Optional[torch.Tensor]) -> list[torch.Tensor]:
    """[dqx, dkx, dvx, dbx, drecurrent, dW0, dy0], float32."""
    B, T, H, D = qx.shape
    BD, num_warps = launch_shape(D)
    scratch = qx.new_empty(B, H, CHECKPOINT_EVERY, D, D, dtype=torch.float32)
    dqx, dkx, dvx = (qx.new_empty(B, T, H, D, dtype=torch.float32) for _ in range(3))
    dbx = qx.new_empty(B, T, H, dtype=torch.float32)
    drecurrent = qx.new_empty(B, H, D, 3 * D + 1, dtype=torch.float32)
    dW0 = qx.new_empty(B, H, D, D, dtype=torch.float32)
    dy0 = qx.new_empty(B, H, D, dtype=torch.float32)
    recurrent_delta_bwd_kernel[(B * H,)](qx, kx, vx, bx, recurrent, y, y0, checkpoints, scratch, dy, dWt, dqx, dkx,
                                         dvx, dbx, drecurrent, dW0, dy0, T, checkpoints.shape[2], H=H, D=D, BD=BD,
                                         C=CHECKPOINT_EVERY, HAS_DWT=dWt is not None, num_warps=num_warps)
    return [dqx, dkx, dvx, dbx, drecurrent.sum(0), dW0, dy0]


@recurrent_delta_bwd.register_fake
def _(qx, kx, vx, bx, recurrent, y, y0, checkpoints, dy, dWt):
    B, T, H, D = qx.shape
    f32 = dict(dtype=torch.float32)
    return [qx.new_empty(B, T, H, D, **f32), qx.new_empty(B, T, H, D, **f32), qx.new_empty(B, T, H, D, **f32),
            qx.new_empty(B, T, H, **f32), qx.new_empty(H, D, 3 * D + 1, **f32), qx.new_empty(B, H, D, D, **f32),
            qx.new_empty(B, H, D, **f32)]


def _recurrent_delta_setup(ctx, inputs, output):
    qx, kx, vx, bx, recurrent, W0, y0 = inputs
    ctx.save_for_backward(qx, kx, vx, bx, recurrent, output[0], y0, output[2])
    ctx.dtypes = [x.dtype for x in inputs]


def _recurrent_delta_backward(ctx, dy, dWt, dcheckpoints):
    qx, kx, vx, bx, recurrent, y, y0, checkpoints = ctx.saved_tensors
    grads = recurrent_delta_bwd(qx, kx, vx, bx, recurrent, y, y0, checkpoints, dy.contiguous(), _optional(dWt))
    return tuple(g.to(dtype) for g, dtype in zip(grads, ctx.dtypes))


recurrent_delta_fwd.register_autograd(_recurrent_delta_backward, setup_context=_recurrent_delta_setup)


def _optional(gradient: torch.Tensor | None) -> torch.Tensor | None:
    return None if gradient is None else gradient.contiguous()


def fused_delta_rnn_loop(rk, rv, rbeta, z, R0, y0):
    """The Triton form of ``delta_rnn``'s R loop (arguments checked there): ``(y, R_T)``."""
    y, Rt, _ = delta_rnn_fwd(*(x.contiguous() for x in (rk, rv, rbeta, z, R0, y0)))
    return y, Rt


def fused_recurrent_delta(q, k, v, beta, recurrent, W0, y0):
    """The Triton form of ``recurrent_delta`` (arguments checked there): ``(y, W_T)``."""
    y, Wt, _ = recurrent_delta_fwd(*(x.contiguous() for x in (q, k, v, beta, recurrent, W0, y0)))
    return y, Wt
