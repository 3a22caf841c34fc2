"""LinearSelfAttention: the single linear self-attention (vanilla FWP) layer of von Oswald et al.
(2023), trained on regression tokens ``[x_t; y_t]`` with no softmax, no LayerNorm, no MLP."""
from __future__ import annotations

import torch
import torch.nn as nn

from episodes import EpisodeBatch
from metafwp.ops import fast_weight


class LinearSelfAttention(nn.Module):
    """A residual stream of tokens ``e_t = [x_t; y_t]`` (queries ``[x*; 0]``, width ``dx + dy``) through
    ``num_layers`` one-head vanilla FWP layers: ``e_t <- e_t + W_o S_t^T (W_q e_t)`` with
    ``S_t = sum_{i <= t, i labelled} (W_k e_i)(W_v e_i)^T``. Only labelled (support) tokens write;
    the prediction is the query token's final target slot.

    Args:
        dx, dy: input and target widths.
        num_layers: layers on the stream. Default: 1.
        tied: one set of weights applied ``num_layers`` times (a recurrent model, as in von Oswald
            et al.'s GD++ experiment). Default: False.
        init_std: the weights start as ``N(0, init_std^2)``. Default: 0.002 (their setting).

    ``forward(batch) -> (predictions [B, T, dy], None)`` for synchronous regression batches: the
    feedback's targets fill the target slots of labelled steps, zeros the queries'. By the
    causal read, a query after the support reads the state of the whole support.
    """

    def __init__(self, dx: int, dy: int, num_layers: int = 1, tied: bool = False, init_std: float = 0.002):
        super().__init__()
        self.dx, self.dy, self.num_layers, self.tied = dx, dy, num_layers, tied
        width = dx + dy
        self.weights = nn.ParameterList(nn.Parameter(init_std * torch.randn(4, width, width))
                                        for _ in range(1 if tied else num_layers))

    def layer_weights(self, layer: int) -> torch.Tensor:
        """``[4, D, D]``: W_q, W_k, W_v, W_o of layer ``layer``."""
        return self.weights[0 if self.tied else layer]

    def forward(self, batch: EpisodeBatch, state=None):
        if batch.num_classes is not None or batch.feedback.shape[-1] != self.dy + 1:
            raise ValueError(f"LinearSelfAttention reads regression batches with {self.dy}-dim targets")
        tokens = torch.cat([batch.inputs.float(), batch.feedback[..., :-1].float()], -1)
        writes = (batch.feedback[..., -1] == 0).to(tokens.dtype)[..., None]  # [B, T, 1]
        for layer in range(self.num_layers):
            W_q, W_k, W_v, W_o = self.layer_weights(layer)
            q, k, v = tokens @ W_q.T, (tokens @ W_k.T) * writes, tokens @ W_v.T
            read, _ = fast_weight(q[:, :, None], k[:, :, None], v[:, :, None], rule="hebbian", scale=1.0)
            tokens = tokens + read[:, :, 0] @ W_o.T
        return tokens[..., self.dx:], None

    def extra_repr(self) -> str:
        return f"dx={self.dx}, dy={self.dy}, num_layers={self.num_layers}, tied={self.tied}"
