"""The classic sequence mixers beside the fast-weight layers, with the same ``(x, state) -> (y, state)``
interface: an LSTM, causal softmax attention and sliding-window softmax attention."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from metafwp.nn.short_conv import ShortConvolution
from metafwp.ops import sliding_window_attention


class LSTMLayer(nn.Module):
    """One LSTM of width ``d_model``.

    ``forward(x [B, T, d_model], state (h, c) each [1, B, d_model] or None) -> (y [B, T, d_model], (h, c))``.
    """

    def __init__(self, d_model: int):
        super().__init__()
        self.lstm = nn.LSTM(d_model, d_model, batch_first=True)

    def forward(self, x: torch.Tensor, state=None):
        return self.lstm(x, state)


class CausalAttentionLayer(nn.Module):
    """Multi-head causal softmax attention (torch SDPA), no positional encoding (the causal mask
    orders the steps).

    ``forward(x [B, T, d_model], state (keys, values) each [B, H, T_past, D] or None)
    -> (y [B, T, d_model], (keys, values))``: the state is the key/value cache of every step seen,
    so a later call attends to the whole history exactly as one long call would. ``short_conv``:
    q, k, v pass a causal depthwise convolution of 4 steps (``ShortConvolution``) and the state
    gains its history, ``(keys, values, history [B, 3, 3 d_model])``.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, short_conv: bool = False):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.num_heads, self.dropout = num_heads, dropout
        self.qkv_proj = nn.Linear(d_model, 3 * d_model, bias=False)
        self.conv = ShortConvolution(3 * d_model) if short_conv else None
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def project(self, x: torch.Tensor, state):
        """``(q, k, v [B, T, H, D], the cache (keys, values) of state or None, the convolution's history)``."""
        B, T, _ = x.shape
        qkv, cache, history = self.qkv_proj(x), None, None
        if state is not None:
            cache, history = (state[:2], state[2]) if self.conv is not None else (state, None)
        if self.conv is not None:
            qkv, history = self.conv(qkv, history)
        q, k, v = qkv.view(B, T, 3, self.num_heads, -1).unbind(2)
        return q, k, v, cache, history

    def state_of(self, keys: torch.Tensor, values: torch.Tensor, history: torch.Tensor | None) -> tuple:
        return (keys, values) if self.conv is None else (keys, values, history)

    @torch.no_grad()
    def match_keys_to_queries(self) -> None:
        """Start the key projection equal to the query projection (see FastWeightLayer's)."""
        d_model = self.out_proj.weight.shape[0]
        self.qkv_proj.weight[d_model:2 * d_model] = self.qkv_proj.weight[:d_model]

    def forward(self, x: torch.Tensor, state=None):
        B, T, d_model = x.shape
        q, k, v, cache, history = self.project(x, state)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))                       # [B, H, T, D] each
        past = 0
        if cache is not None:
            past = cache[0].shape[2]
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        # query i (at time past + i) sees keys 0 .. past + i
        mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(past)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, d_model)), self.state_of(k, v, history)

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}"


class SlidingWindowAttentionLayer(CausalAttentionLayer):
    """Multi-head causal softmax attention over the last ``window`` steps only (``ops.sliding_window_attention``;
    memory grows with T x window), no positional encoding.

    ``forward(x [B, T, d_model], state (keys, values) each [B, m, H, D] or None) -> (y, (keys, values))``:
    the state holds the last ``window - 1`` steps' keys and values, all a later step can read
    (``short_conv``: and the convolution's history, as ``CausalAttentionLayer``).
    """

    def __init__(self, d_model: int, num_heads: int, window: int, short_conv: bool = False):
        super().__init__(d_model, num_heads, short_conv=short_conv)
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ValueError(f"window must be an int >= 1 (the steps each query reads, its own included), "
                             f"got {window!r}")
        self.window = window

    def forward(self, x: torch.Tensor, state=None):
        B, T, d_model = x.shape
        q, k, v, cache, history = self.project(x, state)                      # [B, T, H, D] each
        m = 0
        if cache is not None:
            m = cache[0].shape[1]
            q = torch.cat([torch.zeros_like(cache[0]), q], 1)   # the cached steps' outputs are dropped below
            k, v = torch.cat([cache[0], k], 1), torch.cat([cache[1], v], 1)
        y = sliding_window_attention(q, k, v, self.window)[:, m:]
        keep = min(self.window - 1, m + T)
        return self.out_proj(y.reshape(B, T, d_model)), self.state_of(k[:, m + T - keep:], v[:, m + T - keep:],
                                                                      history)

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, window={self.window}"
