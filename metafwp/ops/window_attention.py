"""Sliding-window causal softmax attention: step t attends to the ``window`` steps ``t - window + 1
.. t``, the short-term memory of the hybrid quadratic-linear layers (Irie, Yau & Gershman 2025).

The queries are cut into blocks of W = min(window, T) steps; a block's keys are its own W steps and
the W before them, so each block is a W x 2W attention with a band mask: time and memory grow
with T W, never with T^2, when the window is small. With ``window >= T`` it is causal softmax
attention over the whole prefix.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def sliding_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int,
                             scale: float | None = None) -> torch.Tensor:
    """``softmax_{s in [t - window + 1, t]} (scale q_t . k_s) v_s`` for ``q, k, v [B, T, H, D]``
    (``v`` may have its own last dim); ``scale`` Default: ``D^-1/2``. Returns ``[B, T, H, Dv]``."""
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise ValueError(f"window must be an int >= 1 (the steps each query reads, its own included), got {window!r}")
    if q.dim() != 4 or k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"q, k must be [B, T, H, D] and v [B, T, H, Dv] alike, got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    B, T, H, D = q.shape
    scale = D ** -0.5 if scale is None else scale
    W = min(window, T)
    n = -(-T // W)

    def blocks(x, before):  # [B, T, H, d] -> [B, H, n, W, d], W zero steps in front when ``before``
        x = F.pad(x.transpose(1, 2), (0, 0, W if before else 0, n * W - T))
        return x.unflatten(2, (n + before, W))

    q_blocks = blocks(q, False)
    k_padded, v_padded = blocks(k, True), blocks(v, True)
    keys = torch.cat([k_padded[:, :, :-1], k_padded[:, :, 1:]], 3)      # [B, H, n, 2W, D]: previous block, own
    values = torch.cat([v_padded[:, :, :-1], v_padded[:, :, 1:]], 3)
    i, j = torch.arange(W, device=q.device)[:, None], torch.arange(2 * W, device=q.device)
    band = (j >= i + 1) & (j <= i + W)       # query i of a block (step start + i), key j (step start - W + j)
    real = torch.arange(n, device=q.device)[:, None, None] * W - W + j >= 0   # [n, 1, 2W]: no step before 0
    out = F.scaled_dot_product_attention(q_blocks, keys, values, attn_mask=band & real, scale=scale)
    return out.flatten(2, 3)[:, :, :T].transpose(1, 2)
