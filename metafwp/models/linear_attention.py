"""LinearSelfAttention: the single linear self-attention (vanilla FWP) layer of von Oswald et al.
(2023), trained on regression tokens ``[x_t; y_t]`` with no softmax, no LayerNorm, no MLP."""
from __future__ import annotations

import torch
import torch.nn as nn

from episodes import EpisodeBatch


class LinearSelfAttention(nn.Module):
    """A residual stream of tokens ``e_t = [x_t; y_t]`` (queries ``[x*; 0]``, width ``dx + dy``) through
    ``num_layers`` one-head vanilla FWP layers: ``e_t <- e_t + W_o S_t^T (W_q e_t)`` with
    ``S_t = sum_{i <= t, i labelled} (W_k e_i)(W_v e_i)^T`` (causal) or ``S = sum_{i labelled} ...``
    (non-causal: every token, support and query, reads the whole support, as von Oswald et al.'s
    layer). Only labelled (support) tokens write; the prediction is the query token's final target
    slot. With two or more layers the two forms are different algorithms: a support token's slot
    after layer 1 holds its residual under its own prefix (causal) or under the whole support.

    Args:
        dx, dy: input and target widths.
        num_layers: layers on the stream. Default: 1.
        tied: one set of weights applied ``num_layers`` times (a recurrent model, as in von Oswald
            et al.'s GD++ experiment). Default: False.
        init_std: the weights start as ``N(0, init_std^2)``. Default: 0.002 (their setting).
        causal: token t reads the support up to t (the FWP as it runs); False: the whole support.
            Default: True.

    ``forward(batch) -> (predictions [B, T, dy], None)`` for synchronous regression batches: the
    feedback's targets fill the target slots of labelled steps, zeros the queries'. In both forms a
    query after the support reads the state of the whole support.
    """

    def __init__(self, dx: int, dy: int, num_layers: int = 1, tied: bool = False, init_std: float = 0.002,
                 causal: bool = True):
        super().__init__()
        self.dx, self.dy, self.num_layers, self.tied, self.causal = dx, dy, num_layers, tied, causal
        width = dx + dy
        self.weights = nn.ParameterList(nn.Parameter(init_std * torch.randn(4, width, width))
                                        for _ in range(1 if tied else num_layers))

    def layer_weights(self, layer: int) -> torch.Tensor:
        """``[4, D, D]``: W_q, W_k, W_v, W_o of layer ``layer``."""
        return self.weights[0 if self.tied else layer]

    def forward(self, batch: EpisodeBatch, state=None):
        if batch.num_classes is not None or batch.feedback.shape[-1] != self.dy + 1:
            raise ValueError(f"LinearSelfAttention reads regression batches with {self.dy}-dim targets")
        dtype = self.weights[0].dtype
        tokens = torch.cat([batch.inputs.to(dtype), batch.feedback[..., :-1].to(dtype)], -1)
        writes = (batch.feedback[..., -1] == 0).to(tokens.dtype)[..., None]  # [B, T, 1]
        for layer in range(self.num_layers):
            W_q, W_k, W_v, W_o = self.layer_weights(layer)
            if self.causal:  # the Hebbian FWP's read S_t^T q_t in its attention form: sum_{i <= t} (k_i . q_t) v_i
                q, k, v = tokens @ W_q.T, (tokens @ W_k.T) * writes, tokens @ W_v.T
                tokens = tokens + ((q @ k.transpose(1, 2)).tril() @ v) @ W_o.T
            else:  # W_o S^T W_q e with S = sum_i (W_k e_i)(W_v e_i)^T, through the support's Gram matrix [B, D, D]
                gram = (tokens * writes).transpose(1, 2) @ tokens
                tokens = tokens + tokens @ (W_q.T @ W_k @ gram @ (W_v.T @ W_o.T))
        return tokens[..., self.dx:], None

    def gd_plus_plus_gamma(self, layer: int = 0) -> tuple[float, float]:
        """The preconditioner a layer applies to the inputs, read in von Oswald et al.'s form
        ``x <- (I - gamma X X^T) x`` (``X X^T = sum_i x_i x_i^T`` over the support): the x-x blocks
        ``A = (W_o W_v)_xx`` and ``B = (W_k^T W_q)_xx`` give ``x_j <- x_j + A (sum_i x_i x_i^T) B x_j``,
        so for ``A = a I``, ``B = b I`` gamma is ``-a b``. Returns ``(gamma, off_diagonal)``, gamma
        from the mean diagonals and the larger ratio of off-diagonal to diagonal norm of A and B
        (near 0: scaled identities, the GD++ form)."""
        W_q, W_k, W_v, W_o = self.layer_weights(layer).detach().double()
        blocks = [(W_o @ W_v)[:self.dx, :self.dx], (W_k.T @ W_q)[:self.dx, :self.dx]]
        gamma = -(blocks[0].diagonal().mean() * blocks[1].diagonal().mean()).item()
        off_diagonal = max(((m - torch.diag(m.diagonal())).norm() / m.diagonal().norm()).item() for m in blocks)
        return gamma, off_diagonal

    def extra_repr(self) -> str:
        return f"dx={self.dx}, dy={self.dy}, num_layers={self.num_layers}, tied={self.tied}, causal={self.causal}"
