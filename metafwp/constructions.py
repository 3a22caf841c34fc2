"""Slow weights that make a fast weight programmer run a learning algorithm (von Oswald et al. 2023).

Tokens are ``e_t = [x_t; s_t]`` of width ``dx + dy``: support tokens carry ``[x_i; y_i]`` and
query tokens ``[x*; 0]``. Only support tokens write into the fast weights; every token reads.

A *GD layer* is a one-head vanilla FWP (Hebbian rule, identity feature map) whose slow weights are

    W^Q = W^K = [[I, 0], [0, 0]]       (keys and queries: the x part)
    W^V       = [[0, 0], [0, I]]       (values: the target slot s)
    W^O       = [[0, 0], [0, -c I]]    (the output subtracts from the target slot)

so with ``S = sum_{writers} s_i x_i^T`` each token's target slot becomes ``s_j - c S x_j``. An
embedding ``[[I, 0], [-W0, I]]`` first turns the target slots into ``y_i - W0 x_i`` (support) and
``-W0 x*`` (queries). By induction, after GD layer ``l`` a support slot holds the residual
``y_i - W_l x_i`` and a query slot ``-W_l x*``: the prediction is minus the query's target slot.

- ``causal=False``: every token reads the state of the whole support, so the stack computes
  ``W_{l+1} = W_l + c_l sum_i (y_i - W_l x_i) x_i^T``: full-batch gradient descent from W0 with
  learning rate ``eta_l = N c_l`` on the mean loss ``1/(2N) sum_i ||y_i - W x_i||^2``.
- ``causal=True`` (the FWP as it runs): token t reads the state of the support tokens up to and
  including itself. Token t's slot then holds the residual under its own prefix model
  ``W_l^(t)``, and the stack computes, for each prefix,

      W_0^(t) = W0,   W_{l+1}^(t) = W_l^(t) + c_l sum_{i <= t} (y_i - W_l^(i) x_i) x_i^T,

  i.e. step l's gradient takes each example's error under the model trained on *that example's*
  prefix (the stale residuals left in its token), not under ``W_l``. For one layer, and for any
  query after the whole support, ``W_1 = W0 + c_0 sum_i (y_i - W0 x_i) x_i^T``: one exact GD
  step. From two layers on it differs from GD (``docs/protocols.md`` section 9 derives it).

``c_l`` (``step_sizes``) is the step per example, the strength with which each support token
writes; the GD learning rate of results (``gd_lr``, the regression baselines' and von Oswald et
al.'s eta) is ``N c`` for N support examples.

``lms_predict`` runs a DeltaNet (delta rule, identity feature map, fast weights starting at W0)
with the same projections: it computes Widrow-Hoff, one online step per example in order.
``gd_plus_plus_predict`` adds von Oswald et al.'s GD++ preconditioning layer.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from metafwp.ops import fast_weight


def _check_regression_inputs(x_support, y_support, x_query, W0) -> tuple[int, int]:
    """One clear error for the shapes the constructions cannot read; returns ``(dx, dy)``."""
    for name, tensor in (("x_support", x_support), ("y_support", y_support), ("x_query", x_query)):
        if tensor.dim() != 3:
            raise ValueError(f"{name} must be [B, N, d], got shape {tuple(tensor.shape)}")
    B, N, dx = x_support.shape
    if N == 0:
        raise ValueError("the support is empty (N = 0): give at least one (x, y) example")
    if y_support.shape[:2] != (B, N):
        raise ValueError(f"y_support {tuple(y_support.shape)} must be [B={B}, N={N}, dy] as x_support")
    if x_query.shape[0] != B or x_query.shape[2] != dx:
        raise ValueError(f"x_query {tuple(x_query.shape)} must be [B={B}, M, dx={dx}] as x_support")
    dy = y_support.shape[2]
    if W0.shape != (dy, dx):
        raise ValueError(f"W0 must be [dy, dx] = [{dy}, {dx}] for these tokens, got {tuple(W0.shape)}")
    return dx, dy


def regression_tokens(x_support: torch.Tensor, y_support: torch.Tensor, x_query: torch.Tensor):
    """``(tokens [B, N + M, dx + dy], writes [N + M] bool)``: support ``[x_i; y_i]`` first, then
    queries ``[x*; 0]``; ``writes`` marks the support tokens."""
    queries = torch.cat([x_query, x_query.new_zeros(*x_query.shape[:2], y_support.shape[2])], -1)
    tokens = torch.cat([torch.cat([x_support, y_support], -1), queries], 1)
    writes = torch.arange(tokens.shape[1], device=tokens.device) < x_support.shape[1]
    return tokens, writes


class VanillaFWPLayer(nn.Module):
    """One head of a vanilla FWP with given slow weights, on a residual stream:
    ``e_t <- e_t + W^O S_t^T (W^Q e_t)`` with ``S_t = sum_{writers i (<= t if causal)} (W^K e_i)(W^V e_i)^T``.

    ``forward(tokens [B, T, D], writes [T] bool) -> tokens [B, T, D]``. The causal form runs the
    toolkit's Hebbian op (``metafwp.ops.fast_weight``, scale 1); the non-causal form reads the
    sum over all writers.
    """

    def __init__(self, W_q: torch.Tensor, W_k: torch.Tensor, W_v: torch.Tensor, W_o: torch.Tensor,
                 causal: bool = False):
        super().__init__()
        for name, weight in (("W_q", W_q), ("W_k", W_k), ("W_v", W_v), ("W_o", W_o)):
            self.register_buffer(name, weight)
        self.causal = causal

    def forward(self, tokens: torch.Tensor, writes: torch.Tensor) -> torch.Tensor:
        q = tokens @ self.W_q.T
        k = (tokens @ self.W_k.T) * writes[:, None].to(tokens.dtype)  # a zero key writes nothing
        v = tokens @ self.W_v.T
        if self.causal:
            read, _ = fast_weight(q[:, :, None], k[:, :, None], v[:, :, None], rule="hebbian", scale=1.0,
                                  backend="reference")
            read = read[:, :, 0]
        else:
            read = q @ (k.transpose(1, 2) @ v)
        return tokens + read @ self.W_o.T


def _gd_slow_weights(dx: int, dy: int, step_size: float, like: torch.Tensor):
    D = dx + dy
    W_qk = like.new_zeros(D, D)
    W_qk[:dx, :dx] = torch.eye(dx, dtype=like.dtype)
    W_v = like.new_zeros(D, D)
    W_v[dx:, dx:] = torch.eye(dy, dtype=like.dtype)
    return W_qk, W_qk.clone(), W_v, -step_size * W_v


class GDLayers(nn.Module):
    """The embedding ``[[I, 0], [-W0, I]]`` then one GD layer per step size (see the module
    docstring). ``forward(tokens [B, T, dx + dy], writes [T] bool) -> tokens``; the prediction of
    token t is minus its target slot: ``-tokens[..., dx:]``."""

    def __init__(self, W0: torch.Tensor, step_sizes: Sequence[float], causal: bool = False):
        super().__init__()
        if W0.dim() != 2:
            raise ValueError(f"W0 must be [dy, dx], got shape {tuple(W0.shape)}")
        if len(step_sizes) < 1:
            raise ValueError("step_sizes must hold one step size per layer (at least one)")
        dy, dx = W0.shape
        embed = torch.eye(dx + dy, dtype=W0.dtype, device=W0.device)
        embed[dx:, :dx] = -W0
        self.register_buffer("embedding", embed)
        self.dx, self.dy = dx, dy
        self.layers = nn.ModuleList(VanillaFWPLayer(*_gd_slow_weights(dx, dy, float(c), W0), causal=causal)
                                    for c in step_sizes)

    def forward(self, tokens: torch.Tensor, writes: torch.Tensor) -> torch.Tensor:
        if tokens.shape[-1] != self.dx + self.dy:
            raise ValueError(f"tokens have width {tokens.shape[-1]}, but W0 [dy={self.dy}, dx={self.dx}] "
                             f"reads tokens [x; y] of width dx + dy = {self.dx + self.dy}")
        tokens = tokens @ self.embedding.T
        for layer in self.layers:
            tokens = layer(tokens, writes)
        return tokens


def gd_layers(W0: torch.Tensor, step_sizes: Sequence[float], *, causal: bool = False) -> GDLayers:
    """The vanilla-FWP layers whose forward pass is gradient descent on the support, from ``W0 [dy, dx]``
    with step size per example ``step_sizes[l]`` at layer l (see the module docstring for the causal form)."""
    return GDLayers(W0, step_sizes, causal=causal)


def gd_predict(x_support: torch.Tensor, y_support: torch.Tensor, x_query: torch.Tensor, W0: torch.Tensor,
               step_sizes: Sequence[float], *, causal: bool = False) -> torch.Tensor:
    """Predictions ``[B, M, dy]`` of ``gd_layers(W0, step_sizes)`` for the queries ``x_query [B, M, dx]`` after
    the support ``x_support [B, N, dx]``, ``y_support [B, N, dy]``. With ``causal=False`` this is
    ``W_L x*`` after ``L = len(step_sizes)`` full-batch GD steps ``W_{l+1} = W_l + c_l sum_i (y_i - W_l x_i) x_i^T``
    (learning rates ``gd_lr = N c_l``)."""
    dx, _ = _check_regression_inputs(x_support, y_support, x_query, W0)
    tokens, writes = regression_tokens(x_support, y_support, x_query)
    out = gd_layers(W0, step_sizes, causal=causal)(tokens, writes)
    return -out[:, x_support.shape[1]:, dx:]


def lms_predict(x_support: torch.Tensor, y_support: torch.Tensor, x_query: torch.Tensor, W0: torch.Tensor,
                step_sizes: Sequence[float]) -> torch.Tensor:
    """Predictions ``[B, M, dy]`` of a DeltaNet (one head, identity feature map, write strength
    ``step_sizes[0]``, fast weights starting at ``W0``) with the GD layer's projections: keys and queries
    ``x``, values ``y``. Its fast weights follow Widrow-Hoff / LMS, one online step per example in
    order, ``W_t = W_{t-1} + c (y_t - W_{t-1} x_t) x_t^T``, and queries (which write nothing) read
    ``W_N x*``."""
    dx, dy = _check_regression_inputs(x_support, y_support, x_query, W0)
    if len(step_sizes) != 1:
        raise ValueError(f"lms_predict takes one step size (step_sizes=[c]), got {len(step_sizes)}")
    tokens, writes = regression_tokens(x_support, y_support, x_query)
    B, T, _ = tokens.shape
    q = tokens[..., :dx]
    beta = torch.full((B, T, 1), float(step_sizes[0]), dtype=tokens.dtype, device=tokens.device) * writes[:, None]
    state = W0.T.expand(B, 1, dx, dy).contiguous()  # S is the transpose of W
    out, _ = fast_weight(q[:, :, None], q[:, :, None], tokens[:, :, None, dx:], rule="delta", beta=beta,
                         scale=1.0, initial_state=state, backend="reference")
    return out[:, x_support.shape[1]:, 0]


def gd_plus_plus_predict(x_support: torch.Tensor, y_support: torch.Tensor, x_query: torch.Tensor, W0: torch.Tensor,
                         step_sizes: Sequence[float], gamma: float) -> torch.Tensor:
    """GD++ (von Oswald et al. 2023, section 4): a first vanilla-FWP layer that reads and writes the
    x part only, ``x_j <- (I - gamma X^T X) x_j`` with ``X^T X = sum_i x_i x_i^T`` over the support
    (non-causal), then the GD layers of ``step_sizes`` on the transformed inputs. Returns ``[B, M, dy]``."""
    dx, dy = _check_regression_inputs(x_support, y_support, x_query, W0)
    tokens, writes = regression_tokens(x_support, y_support, x_query)
    W_qk, _, _, _ = _gd_slow_weights(dx, dy, 0.0, W0)
    precondition = VanillaFWPLayer(W_qk, W_qk.clone(), W_qk.clone(), -gamma * W_qk)
    out = gd_layers(W0, step_sizes)(precondition(tokens, writes), writes)
    return -out[:, x_support.shape[1]:, dx:]
