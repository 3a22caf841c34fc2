"""HybridQLTLayer: a hybrid quadratic-linear transformer layer (Irie, Yau & Gershman 2025): one set of
queries, keys and values feeds two memories, a sliding window of softmax attention (exact, short
term) and a DeltaNet fast weight (compressed, long term), whose outputs are mixed per channel.

The variants differ in what the fast weight holds and when it is read (C = ``window``):

- ``synchronous``: every token is written to the fast weight at once; step t reads the fast weight
  after its own write and attends to the window ``t - C + 1 .. t``.
- ``delayed_stream``: a token is written C steps late, when it leaves the window: step t writes
  token ``t - C`` and attends to ``t - C + 1 .. t``, so the two memories hold disjoint tokens.
  The delayed write uses the rate of the written token (Default; ``delayed_rate="own"``) or, as
  the authors' code, the rate computed at step t (``delayed_rate="current"``).
- ``delayed_chunk``: the sequence is cut into chunks of C steps; a step attends causally within its
  chunk and reads the fast weight as it was at the chunk's start; a chunk is written when it ends.

Front end: q, k, v = W x (no bias), each optionally through a causal depthwise convolution of 4
steps (``short_conv``; SiLU on v only), else v = SiLU(W_v x). The attention reads the raw q, k
with scale D^-1/2; the fast weight reads l2norm(SiLU(q)), l2norm(SiLU(k)), v, and a rate
beta = sigmoid(w x) per head (``2sigmoid``: in (0, 2), negative eigenvalues), with scale D^-1/2.
Mixing: ``gate`` (g = sigmoid(W_g x) per channel, g o_fw + (1 - g) o_kv; the Default), ``sum``
or ``static`` (two learned scalars, from 1); then RMSNorm per head and the output projection.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from metafwp.nn.fast_weight_layer import BETA_ACTIVATIONS, silu_l2
from metafwp.nn.short_conv import CONV_STEPS, ShortConvolution
from metafwp.ops import fast_weight, sliding_window_attention

HQLT_VARIANTS = ("synchronous", "delayed_stream", "delayed_chunk")
HQLT_MIXINGS = ("gate", "sum", "static")
DELAYED_RATES = ("own", "current")


class HybridState(NamedTuple):
    """A HybridQLTLayer's state after a call; the next call continues the sequence exactly.

    fast: [B, H, D, D] the fast weight (delayed_chunk: as at the start of the current chunk).
    keys, values: [B, m, H, D] the attention's keys and values (raw, after the convolution) of the
        last m steps that a later step needs (synchronous: C - 1; delayed_stream: C, not yet
        written; delayed_chunk: the current chunk's steps so far).
    rates: [B, m, H] those steps' fast-weight rates.
    conv: [B, 3, 3 H D] the projections of the last 3 steps, the convolution's history (None
        without ``short_conv``).
    """

    fast: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    rates: torch.Tensor
    conv: torch.Tensor | None


def check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"Unknown {name} {value!r}. Valid: {', '.join(valid)}")


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def chunk_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int) -> torch.Tensor:
    """Causal softmax attention within consecutive chunks of ``chunk`` steps (the first chunk starts at
    step 0), scale D^-1/2; ``q, k, v [B, T, H, D]`` -> ``[B, T, H, D]``."""
    B, T, H, D = q.shape
    n = -(-T // chunk)
    pad = n * chunk - T   # steps appended after the last real one: no real step attends to them

    def blocks(x):
        return F.pad(x, (0, 0, 0, 0, 0, pad)).view(B, n, chunk, H, D).transpose(2, 3)  # [B, n, H, C, D]

    mask = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    scores = blocks(q) @ blocks(k).transpose(-1, -2) * D ** -0.5
    out = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ blocks(v)
    return out.transpose(2, 3).reshape(B, n * chunk, H, D)[:, :T]


class HybridQLTLayer(nn.Module):
    """A hybrid quadratic-linear layer (see the module docstring).

    Args:
        d_model: input and output width.
        num_heads: H; the head size is D = d_model // H.
        window: C, the attention's window (delayed_chunk: the chunk size). Default: 8.
        variant: ``synchronous``, ``delayed_stream`` or ``delayed_chunk``. Default: synchronous.
        mixing: ``gate``, ``sum`` or ``static``. Default: gate.
        short_conv: causal depthwise convolutions of 4 steps on q, k, v. Default: False.
        beta_activation: ``sigmoid`` (rates in (0, 1)) or ``2sigmoid`` (in (0, 2)). Default: sigmoid.
        delayed_rate: ``own`` or ``current`` (delayed_stream only; see the module docstring).
        backend: the fast-weight op's backend. Default: auto.

    ``forward(x [B, T, d_model], state HybridState or None) -> (y [B, T, d_model], state)``;
    ``memories(x, state) -> (o_fw, o_kv [B, T, H, D], state)`` are the two reads before mixing.
    """

    def __init__(self, d_model: int, num_heads: int, window: int = 8, variant: str = "synchronous",
                 mixing: str = "gate", short_conv: bool = False, beta_activation: str = "sigmoid",
                 delayed_rate: str = "own", backend: str = "auto"):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ValueError(f"window must be an int >= 1 (the attention's steps, its own included), got {window!r}")
        check_choice("hybrid variant", variant, HQLT_VARIANTS)
        check_choice("hybrid mixing", mixing, HQLT_MIXINGS)
        check_choice("beta_activation", beta_activation, tuple(BETA_ACTIVATIONS))
        check_choice("delayed_rate", delayed_rate, DELAYED_RATES)
        self.num_heads, self.head_dim, self.window = num_heads, d_model // num_heads, window
        self.variant, self.mixing, self.beta_activation = variant, mixing, beta_activation
        self.delayed_rate, self.backend = delayed_rate, backend
        self.qkv_proj = nn.Linear(d_model, 3 * d_model, bias=False)
        self.conv = None
        if short_conv:
            self.conv = ShortConvolution(3 * d_model)
        self.beta_proj = nn.Linear(d_model, num_heads, bias=False)
        if mixing == "gate":
            self.gate_proj = nn.Linear(d_model, d_model, bias=False)
        if mixing == "static":
            self.scales = nn.Parameter(torch.ones(2))
        self.norm_weight = nn.Parameter(torch.ones(self.head_dim))
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def cached_steps(self, steps_seen: int) -> int:
        """Steps of the attention's keys and values the state keeps after ``steps_seen`` steps."""
        if self.variant == "synchronous":
            return min(self.window - 1, steps_seen)
        if self.variant == "delayed_stream":
            return min(self.window, steps_seen)
        return steps_seen % self.window

    def initial_state(self, x: torch.Tensor) -> HybridState:
        B, H, D = x.shape[0], self.num_heads, self.head_dim
        empty = x.new_zeros(B, 0, H, D)
        conv = x.new_zeros(B, CONV_STEPS - 1, 3 * H * D) if self.conv is not None else None
        return HybridState(x.new_zeros(B, H, D, D), empty, empty, x.new_zeros(B, 0, H), conv)

    def project(self, x: torch.Tensor, conv_history: torch.Tensor | None):
        """q, k, v [B, T, H, D] (raw q, k; v after SiLU) and the convolution's new history."""
        B, T, _ = x.shape
        qkv = self.qkv_proj(x)
        if self.conv is not None:
            qkv, conv_history = self.conv(qkv, conv_history)          # causal: output t reads t - 3 .. t
        q, k, v = qkv.view(B, T, 3, self.num_heads, self.head_dim).unbind(2)
        return q, k, F.silu(v), conv_history

    def memories(self, x: torch.Tensor, state: HybridState | None = None):
        state = self.initial_state(x) if state is None else state
        B, T, _ = x.shape
        q, k, v, conv_history = self.project(x, state.conv)
        beta = BETA_ACTIVATIONS[self.beta_activation](self.beta_proj(x))     # [B, T, H]
        m = state.keys.shape[1]
        keys, values = torch.cat([state.keys, k], 1), torch.cat([state.values, v], 1)
        rates = torch.cat([state.rates, beta], 1)
        C, fq = self.window, silu_l2(q)
        if self.variant == "delayed_chunk":
            o_fw, fast = self.chunk_reads(fq, keys, values, rates, m, state.fast)
            o_kv = chunk_causal_attention(torch.cat([torch.zeros_like(state.keys), q], 1), keys, values, C)[:, m:]
        else:
            if self.variant == "synchronous":
                wk, wv, wb = k, v, beta
            else:   # step j writes the step C before it: zeros where that step does not exist
                pad = C - m
                wk, wv, wb = (F.pad(t, (0, 0) * (t.dim() - 2) + (pad, 0))[:, :T] for t in (keys, values, rates))
                wb = beta if self.delayed_rate == "current" else wb
            o_fw, fast = fast_weight(fq, silu_l2(wk), wv, rule="delta", beta=wb, initial_state=state.fast,
                                     output_final_state=True, backend=self.backend)
            o_kv = sliding_window_attention(torch.cat([torch.zeros_like(state.keys), q], 1), keys, values, C)[:, m:]
        keep = self.cached_steps(m + T)   # m + T counts the steps seen as cached_steps needs (m is capped alike)
        new_state = HybridState(fast, keys[:, keys.shape[1] - keep:], values[:, values.shape[1] - keep:],
                                rates[:, rates.shape[1] - keep:], conv_history)
        return o_fw, o_kv, new_state

    def chunk_reads(self, fq, keys, values, rates, m: int, fast: torch.Tensor):
        """delayed_chunk's fast-weight reads: the new steps' queries ``fq [B, T, H, D]`` read the fast
        weight of their chunk's start; every chunk that ends here is written. The cached ``m`` steps
        open the first chunk. Returns ``(o_fw [B, T, H, D], the fast weight after the last whole chunk)``."""
        C, total = self.window, keys.shape[1]
        reads = []
        for start in range(0, total, C):
            end = min(start + C, total)
            queries = fq[:, max(start - m, 0):end - m]                  # the new steps of this chunk
            reads.append(torch.einsum("bthk,bhkv->bthv", queries, fast) * self.head_dim ** -0.5)
            if end - start == C:
                _, fast = fast_weight(fq.new_zeros(fq.shape[0], C, *fq.shape[2:]), silu_l2(keys[:, start:end]),
                                      values[:, start:end], rule="delta", beta=rates[:, start:end],
                                      initial_state=fast, output_final_state=True, backend=self.backend)
        return torch.cat(reads, 1), fast

    def forward(self, x: torch.Tensor, state: HybridState | None = None):
        B, T, _ = x.shape
        o_fw, o_kv, state = self.memories(x, state)
        if self.mixing == "gate":
            g = torch.sigmoid(self.gate_proj(x)).view_as(o_fw)
            o = g * o_fw + (1 - g) * o_kv
        elif self.mixing == "static":
            o = self.scales[0] * o_fw + self.scales[1] * o_kv
        else:
            o = o_fw + o_kv
        return self.out_proj(rms_norm(o, self.norm_weight).reshape(B, T, -1)), state

    def extra_repr(self) -> str:
        return (f"variant={self.variant}, window={self.window}, heads={self.num_heads}, mixing={self.mixing}, "
                f"short_conv={self.conv is not None}, beta={self.beta_activation}"
                + (f", delayed_rate={self.delayed_rate}" if self.variant == "delayed_stream" else ""))
