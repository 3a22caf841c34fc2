"""Recurrent fast weight programmers (Irie, Schlag, Csordas & Schmidhuber, NeurIPS 2021; equations in
``ops/README.md``, "Recurrent FWPs").

Per head of size d, every fast matrix is stored keys x values as the other ops' states (``S = W^T``),
starts at zero unless given, is updated by the delta rule ``S += k (b (v - S^T k))^T`` and read
after its update. Keys, queries and learning rates that depend on the step's input only are mapped
by the caller (the layer); the maps that depend on the recurrence happen here.

- ``delta_rnn``:  ``z_t = W_t q_t``, ``y_t = R_t softmax(y_{t-1}) + z_t``.
- ``delta_lstm``: per gate g in (i, u, o) ``z^g = W^g q^g``, ``s = softmax(h_{t-1})``,
  ``i = sigmoid(R^i s + z^i)``, ``o = sigmoid(R^o s + z^o)``, ``u = R^u s + z^u``,
  ``c_t = i u + (1 - i) c_{t-1}``, ``h_t = o c_t``.
- ``recurrent_delta`` (RDN): ``a = tanh(y_{t-1})``; q, k, v, b read ``a`` through slow weights.
- ``delta_mlp``: n fast layers ``q <- q + W2 phi(W1 phi(LN(q)))``, each matrix delta-updated.
- ``delta_delta``: a fast matrix S (written by the slow net) makes the q, k, v, b of a second one.

The parts whose keys and values do not depend on the recurrence (W of delta_rnn and delta_lstm,
all of delta_mlp and delta_delta) are plain delta rules and run through ``fast_weight`` with the
given backend (the chunk form from 16 steps). The recurrent parts are batched time loops with one
einsum per step. Autograd through a loop stores the fast matrices of every step; ``recompute=C``
keeps them every C steps only and recomputes the steps in between in backward
(``torch.utils.checkpoint``), trading one more forward pass for T / C times less memory;
``compile_loop=True`` runs the loop in segments compiled by ``torch.compile`` (``time_loop.py``). On CUDA
(or under TRITON_INTERPRET=1 with ``backend="triton"``) the loops of delta_rnn and recurrent_delta
run as Triton kernels that keep the matrix on chip and recompute it from checkpoints in backward
(``fused_recurrent_fwp.py``).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from metafwp.ops.backends import recurrent_loop_backend
from metafwp.ops.common import check_backend, check_same_dtype_device, check_shape, check_tensor, compute_dtype
from metafwp.ops.fast_weight import fast_weight
from metafwp.ops.time_loop import scan

RECURRENT_FWPS = ("delta_rnn", "delta_lstm", "recurrent_delta", "delta_mlp", "delta_delta")
GATES = 3  # delta_lstm: input, update, output


class DeltaRNNState(NamedTuple):
    """W, R [B, H, d, d] (keys x values); y [B, H, d] the last output."""
    W: torch.Tensor
    R: torch.Tensor
    y: torch.Tensor


class DeltaLSTMState(NamedTuple):
    """W, R [B, H, 3, d, d] for the gates (i, u, o); h, c [B, H, d]."""
    W: torch.Tensor
    R: torch.Tensor
    h: torch.Tensor
    c: torch.Tensor


class RecurrentDeltaState(NamedTuple):
    """W [B, H, d, d]; y [B, H, d] the last output."""
    W: torch.Tensor
    y: torch.Tensor


class DeltaMLPState(NamedTuple):
    """W1 [B, H, n, d, F] and W2 [B, H, n, F, d] of the n fast layers."""
    W1: torch.Tensor
    W2: torch.Tensor


class DeltaDeltaState(NamedTuple):
    """S [B, H, d, 3d+1] (the fast matrix that writes W's q, k, v, b) and W [B, H, d, d]."""
    S: torch.Tensor
    W: torch.Tensor


def sum_normalised_elu(x: torch.Tensor) -> torch.Tensor:
    """``elu(x) + 1`` divided by its sum over the last dim (the authors' map for q and k)."""
    x = F.elu(x) + 1.0
    return x / x.sum(-1, keepdim=True)


def delta_read(S: torch.Tensor, k: torch.Tensor, v: torch.Tensor, b: torch.Tensor, q: torch.Tensor):
    """One delta-rule step on ``S [..., d, V]`` with key k [..., d], value v [..., V], rate b [...],
    and the read ``S_t^T q`` of the updated matrix, from one einsum on the old one.

    Returns ``(S_t, read [..., V])``.
    """
    reads = torch.einsum("...kv,...nk->...nv", S, torch.stack([k, q], -2))  # S^T k and S^T q
    update = b.unsqueeze(-1) * (v - reads[..., 0, :])
    read = reads[..., 1, :] + update * (k * q).sum(-1, keepdim=True)
    return S + k.unsqueeze(-1) * update.unsqueeze(-2), read


def delta_rnn(q, k, v, beta, rk, rv, rbeta, *, initial_state: DeltaRNNState | None = None,
              output_final_state: bool = False, backend: str = "auto", recompute: int | None = None,
              chunk_size: int | None = None, compile_loop: bool = False):
    """Delta RNN (the authors' v2): ``z_t = W_t q_t``, ``y_t = R_t softmax(y_{t-1}) + z_t``.

    Args:
        q, k, v: [B, T, H, d] query, key and value of W (the authors map q and k by
            ``sum_normalised_elu``; given here already mapped).
        beta: [B, T, H] W's learning rate.
        rk, rv: [B, T, H, d] key (the authors: softmax) and value of the recurrent matrix R.
        rbeta: [B, T, H] R's learning rate.
        initial_state: DeltaRNNState or None (zeros; ``softmax(0)`` is uniform).
        output_final_state: also return the final DeltaRNNState.
        backend: of W's delta rule (``fast_weight``), and of R's loop: ``triton`` (or ``auto`` on
            CUDA, D <= 64) runs it as a kernel, any other the batched loop. Default: auto.
        recompute: C > 0 makes the loop store R every C steps only (see module docstring; the
            kernel always does). Default: None.
        chunk_size: of W's chunk form (``fast_weight``). Default: its default for the head size.
        compile_loop: run R's loop in segments compiled by ``torch.compile`` (``time_loop``: a new
            shape compiles first; eager after one warning where that fails). Default: False.

    Returns:
        y [B, T, H, d] in q's dtype, and the final state (compute dtype) or None.
    """
    shape = _check_inputs(q, k=k, v=v, rk=rk, rv=rv, beta=beta, rbeta=rbeta)
    B, T, H, d = shape
    state = _initial_state(initial_state, DeltaRNNState, dict(W=(B, H, d, d), R=(B, H, d, d), y=(B, H, d)), q)
    check_backend(backend)
    dtype = compute_dtype(q.dtype)
    z, W = fast_weight(q, k, v, rule="delta", beta=beta, scale=1.0, initial_state=state.W, output_final_state=True,
                       backend=backend, chunk_size=chunk_size)
    if recurrent_loop_backend(backend, d, q.dtype, q.device).backend == "triton":
        from metafwp.ops.fused_recurrent_fwp import fused_delta_rnn_loop

        y, R = fused_delta_rnn_loop(rk, rv, rbeta, z, state.R, state.y)
        return y, (DeltaRNNState(W.to(dtype), R, y[:, -1].to(dtype)) if output_final_state else None)

    (R, y_last), y = scan(_delta_rnn_step, (state.R, state.y), _cast(dtype, rk, rv, rbeta, z), recompute,
                          compile_loop=compile_loop)
    return y.to(q.dtype), (DeltaRNNState(W.to(dtype), R, y_last) if output_final_state else None)


def delta_lstm(q, k, v, beta, rk, rv, rbeta, *, initial_state: DeltaLSTMState | None = None,
               output_final_state: bool = False, backend: str = "auto", recompute: int | None = None,
               chunk_size: int | None = None, compile_loop: bool = False):
    """Delta LSTM (the authors' v4): six fast matrices W^g, R^g for the gates g in (i, u, o).

    Args:
        q, k, v: [B, T, H, 3, d] per gate, query, key and value of W^g (mapped by the caller).
        beta: [B, T, H, 3] W^g's learning rates.
        rk, rv: [B, T, H, 3, d] key and value of R^g; rbeta [B, T, H, 3] its learning rates.
        initial_state: DeltaLSTMState or None (zeros).
        output_final_state, backend, recompute, chunk_size, compile_loop: as ``delta_rnn``.

    Returns:
        h [B, T, H, d] in q's dtype, and the final state or None.
    """
    check_tensor("q", q, 5, "[B, T, H, 3, d]")
    B, T, H, _, d = q.shape
    for name, x in (("k", k), ("v", v), ("rk", rk), ("rv", rv)):
        check_tensor(name, x, 5, "[B, T, H, 3, d]")
        check_shape(name, x, (B, T, H, GATES, d), "[B, T, H, 3, d]")
    for name, x in (("beta", beta), ("rbeta", rbeta)):
        check_tensor(name, x, 4, "[B, T, H, 3]")
        check_shape(name, x, (B, T, H, GATES), "[B, T, H, 3]")
    check_shape("q", q, (B, T, H, GATES, d), "[B, T, H, 3, d] (3 gates: i, u, o)")
    check_same_dtype_device("q", q, k=k, v=v, beta=beta, rk=rk, rv=rv, rbeta=rbeta)
    state = _initial_state(initial_state, DeltaLSTMState,
                           dict(W=(B, H, GATES, d, d), R=(B, H, GATES, d, d), h=(B, H, d), c=(B, H, d)), q)
    check_backend(backend)
    dtype = compute_dtype(q.dtype)
    gates_as_heads = lambda x: x.flatten(2, 3)  # noqa: E731  [B, T, 3H, ...]
    z, W = fast_weight(*(gates_as_heads(x) for x in (q, k, v)), rule="delta", beta=gates_as_heads(beta), scale=1.0,
                       initial_state=state.W.flatten(1, 2), output_final_state=True, backend=backend,
                       chunk_size=chunk_size)
    z = z.unflatten(2, (H, GATES))

    (R, h_last, c_last), h = scan(_delta_lstm_step, (state.R, state.h, state.c), _cast(dtype, rk, rv, rbeta, z),
                                  recompute, compile_loop=compile_loop)
    final = DeltaLSTMState(W.unflatten(1, (H, GATES)).to(dtype), R, h_last, c_last) if output_final_state else None
    return h.to(q.dtype), final


def recurrent_delta(q, k, v, beta, recurrent, *, initial_state: RecurrentDeltaState | None = None,
                    output_final_state: bool = False, backend: str = "auto", recompute: int | None = None,
                    compile_loop: bool = False):
    """Recurrent Delta Net: with ``a = tanh(y_{t-1})`` and ``[r_q | r_k | r_v | r_b] = a recurrent``,
    ``q = softmax(q_x + r_q)``, ``k = softmax(k_x + r_k)``, ``v = v_x + r_v``,
    ``b = sigmoid(b_x + r_b)``; delta update of W, ``y_t = W_t q_t``.

    Args:
        q, k, v: [B, T, H, d] the slow net's projections of x (before the maps).
        beta: [B, T, H] the learning rate's projection of x (before the sigmoid).
        recurrent: [H, d, 3d+1] the slow recurrent weights ``[R_q^T | R_k^T | R_v^T | r_b]``.
        initial_state: RecurrentDeltaState or None (zeros).
        output_final_state: also return the final state.
        backend: ``reference`` or ``chunk`` (the batched loop: there is no chunk form), ``triton``
            (the kernel; D <= 64) or ``auto`` (triton on CUDA where it fits). Default: auto.
        recompute, compile_loop: as ``delta_rnn``.

    Returns:
        y [B, T, H, d] in q's dtype, and the final state or None.
    """
    B, T, H, d = _check_inputs(q, k=k, v=v, beta=beta)
    check_tensor("recurrent", recurrent, 3, "[H, d, 3d+1]")
    check_shape("recurrent", recurrent, (H, d, 3 * d + 1), "[H, d, 3d+1]")
    check_same_dtype_device("q", q, recurrent=recurrent)
    state = _initial_state(initial_state, RecurrentDeltaState, dict(W=(B, H, d, d), y=(B, H, d)), q)
    dtype = compute_dtype(q.dtype)
    if recurrent_loop_backend(backend, d, q.dtype, q.device).backend == "triton":
        from metafwp.ops.fused_recurrent_fwp import fused_recurrent_delta

        y, W = fused_recurrent_delta(q, k, v, beta, recurrent, state.W, state.y)
        return y, (RecurrentDeltaState(W, y[:, -1].to(dtype)) if output_final_state else None)
    (W, y_last), y = scan(_recurrent_delta_step, (state.W, state.y), _cast(dtype, q, k, v, beta), recompute,
                          constants=(recurrent.to(dtype),), compile_loop=compile_loop)
    return y.to(q.dtype), (RecurrentDeltaState(W, y_last) if output_final_state else None)


def _delta_rnn_step(carry, rk_t, rv_t, rb_t, z_t):
    R, y = carry
    R, read = delta_read(R, rk_t, rv_t, rb_t, y.softmax(-1))
    y = read + z_t
    return (R, y), y


def _delta_lstm_step(carry, rk_t, rv_t, rb_t, z_t):
    R, h, c = carry
    R, read = delta_read(R, rk_t, rv_t, rb_t, h.softmax(-1).unsqueeze(2).expand_as(rk_t))
    input_gate, update, output_gate = (read + z_t).unbind(2)
    input_gate = input_gate.sigmoid()
    c = input_gate * update + (1 - input_gate) * c
    h = output_gate.sigmoid() * c
    return (R, h, c), h


def _recurrent_delta_step(carry, q_t, k_t, v_t, b_t, recurrent):
    W, y = carry
    d = recurrent.shape[1]
    r_q, r_k, r_v, r_b = torch.einsum("bhd,hdc->bhc", y.tanh(), recurrent).split([d, d, d, 1], -1)
    k_t = (k_t + r_k).softmax(-1)
    W, y = delta_read(W, k_t, v_t + r_v, (b_t + r_b.squeeze(-1)).sigmoid(), (q_t + r_q).softmax(-1))
    return (W, y), y


def delta_mlp(q, k1, v1, beta1, k2, v2, beta2, *, initial_state: DeltaMLPState | None = None,
              output_final_state: bool = False, backend: str = "auto"):
    """Delta MLP: n fast layers, each ``a = phi(LN(q))``, ``h = W1 a``, ``q <- q + W2 phi(h)`` with
    ``phi = sum_normalised_elu`` and LN without parameters; the output is the last q.

    Args:
        q: [B, T, H, d] the slow net's query.
        k1, v1: [B, T, H, n, d] and [B, T, H, n, F] key (mapped) and value of each W1 [F x d].
        beta1: [B, T, H, n] their learning rates.
        k2, v2: [B, T, H, n, F] and [B, T, H, n, d] key (mapped) and value of each W2 [d x F].
        beta2: [B, T, H, n].
        initial_state: DeltaMLPState or None (zeros).
        output_final_state: also return the final state.
        backend: of the delta rules (every matrix's keys and values come from the slow net, so each
            is a plain delta rule read with a query that depends on the layer below).

    Returns:
        y [B, T, H, d] in q's dtype, and the final state or None.
    """
    B, T, H, d = _check_inputs(q)
    check_tensor("k1", k1, 5, "[B, T, H, n, d]")
    n = k1.shape[3]
    check_tensor("v1", v1, 5, "[B, T, H, n, F]")
    hidden = v1.shape[-1]
    for name, x, width in (("k1", k1, d), ("v1", v1, hidden), ("k2", k2, hidden), ("v2", v2, d)):
        check_tensor(name, x, 5, "[B, T, H, n, d or F]")
        check_shape(name, x, (B, T, H, n, width), f"[B, T, H, n, {'d' if width == d else 'F'}]")
    for name, x in (("beta1", beta1), ("beta2", beta2)):
        check_tensor(name, x, 4, "[B, T, H, n]")
        check_shape(name, x, (B, T, H, n), "[B, T, H, n]")
    check_same_dtype_device("q", q, k1=k1, v1=v1, beta1=beta1, k2=k2, v2=v2, beta2=beta2)
    state = _initial_state(initial_state, DeltaMLPState, dict(W1=(B, H, n, d, hidden), W2=(B, H, n, hidden, d)), q)
    check_backend(backend)
    W1s, W2s = [], []
    for layer in range(n):
        a = sum_normalised_elu(F.layer_norm(q, (d,)))
        h, W1 = fast_weight(a, k1[:, :, :, layer], v1[:, :, :, layer], rule="delta", beta=beta1[..., layer],
                            scale=1.0, initial_state=state.W1[:, :, layer], output_final_state=True, backend=backend)
        out, W2 = fast_weight(sum_normalised_elu(h), k2[:, :, :, layer], v2[:, :, :, layer], rule="delta",
                              beta=beta2[..., layer], scale=1.0, initial_state=state.W2[:, :, layer],
                              output_final_state=True, backend=backend)
        q = q + out
        W1s.append(W1)
        W2s.append(W2)
    dtype = compute_dtype(q.dtype)
    final = DeltaMLPState(torch.stack(W1s, 2).to(dtype), torch.stack(W2s, 2).to(dtype)) if output_final_state else None
    return q, final


def delta_delta(q, k, v, beta, *, initial_state: DeltaDeltaState | None = None, output_final_state: bool = False,
                backend: str = "auto"):
    """Delta Delta Net: ``p_t = S_t q_t`` (S delta-updated from the slow net's k, v, beta) is split
    into ``(q', k', v', b')``; ``q' = phi(q')``, ``k' = phi(k')``, ``b' = sigmoid(b')``, W
    delta-updated from them and ``y_t = W_t q'_t`` (``phi = sum_normalised_elu``).

    Args:
        q, k: [B, T, H, d] the slow net's query and key for S (mapped by the caller).
        v: [B, T, H, 3d+1] the value S learns.
        beta: [B, T, H] S's learning rate.
        initial_state: DeltaDeltaState or None (zeros).
        output_final_state, backend: as ``delta_mlp``.

    Returns:
        y [B, T, H, d] in q's dtype, and the final state or None.
    """
    B, T, H, d = _check_inputs(q, k=k, beta=beta)
    check_tensor("v", v, 4, "[B, T, H, 3d+1]")
    check_shape("v", v, (B, T, H, 3 * d + 1), "[B, T, H, 3d+1]")
    check_same_dtype_device("q", q, v=v)
    state = _initial_state(initial_state, DeltaDeltaState, dict(S=(B, H, d, 3 * d + 1), W=(B, H, d, d)), q)
    check_backend(backend)
    p, S = fast_weight(q, k, v, rule="delta", beta=beta, scale=1.0, initial_state=state.S, output_final_state=True,
                       backend=backend)
    q2, k2, v2, b2 = p.split([d, d, d, 1], -1)
    y, W = fast_weight(sum_normalised_elu(q2), sum_normalised_elu(k2), v2, rule="delta", beta=b2.squeeze(-1).sigmoid(),
                       scale=1.0, initial_state=state.W, output_final_state=True, backend=backend)
    dtype = compute_dtype(q.dtype)
    return y, (DeltaDeltaState(S.to(dtype), W.to(dtype)) if output_final_state else None)


def _check_inputs(q: torch.Tensor, **others) -> tuple:
    """q [B, T, H, d]; every other a [B, T, H, d] tensor, or [B, T, H] if its name has 'beta'."""
    check_tensor("q", q, 4, "[B, T, H, d]")
    B, T, H, d = q.shape
    for name, x in others.items():
        rate = "beta" in name
        layout = "[B, T, H]" if rate else "[B, T, H, d]"
        check_tensor(name, x, 3 if rate else 4, layout)
        check_shape(name, x, (B, T, H) if rate else (B, T, H, d), layout)
    check_same_dtype_device("q", q, **others)
    return B, T, H, d


def _initial_state(state, kind: type, shapes: dict, q: torch.Tensor):
    """``state`` checked field by field (shape, the compute dtype, q's device), or zeros."""
    dtype = compute_dtype(q.dtype)
    if state is None:
        return kind(*(q.new_zeros(shape, dtype=dtype) for shape in shapes.values()))
    layout = ", ".join(f"{name} {list(shape)}" for name, shape in shapes.items())
    if not isinstance(state, tuple) or len(state) != len(shapes):
        raise ValueError(f"initial_state must be a {kind.__name__} ({layout}) as returned with "
                         f"output_final_state=True, got {type(state).__name__}")
    for name, x, shape in zip(shapes, state, shapes.values()):
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"initial_state.{name} must have shape {list(shape)} for q of shape "
                             f"{tuple(q.shape)}, got {got}")
        if x.dtype != dtype:
            raise ValueError(f"initial_state.{name} has dtype {x.dtype}, but inputs of {q.dtype} carry their state "
                             f"in {dtype}; cast it with .to({dtype})")
        if x.device != q.device:
            raise ValueError(f"initial_state.{name} is on {x.device} but the inputs are on {q.device}")
    return kind(*state)


def _cast(dtype: torch.dtype, *tensors: torch.Tensor) -> tuple:
    return tuple(x.to(dtype) for x in tensors)
