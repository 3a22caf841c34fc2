"""Sliding-window causal softmax attention: step t attends to the ``window`` steps ``t - window + 1
.. t``, the short-term memory of the hybrid quadratic-linear layers (Irie, Yau & Gershman 2025).

Each query reads its own window of keys, gathered as ``[B, T, W, H, D]`` (padding before the first
step is masked): memory grows with T W, never with T^2, when the window is small. With
``window >= T`` it is causal softmax attention over the whole prefix.
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
    padded_k = F.pad(k, (0, 0, 0, 0, W - 1, 0))          # [B, W - 1 + T, H, D]
    padded_v = F.pad(v, (0, 0, 0, 0, W - 1, 0))
    keys = padded_k.unfold(1, W, 1)                     # [B, T, H, D, W]: step t's window, oldest first
    values = padded_v.unfold(1, W, 1)
    scores = torch.einsum("bthd,bthdw->bthw", q, keys) * scale
    real = torch.arange(T, device=q.device)[:, None] - (W - 1) + torch.arange(W, device=q.device) >= 0  # [T, W]
    scores = scores.masked_fill(~real[None, :, None, :], float("-inf"))
    return torch.einsum("bthw,bthdw->bthd", scores.softmax(-1), values)
