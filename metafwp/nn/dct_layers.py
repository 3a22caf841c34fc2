"""Layers whose weights live in compressed (DCT) space (Irie & Schmidhuber, 2021): ``DCTLinear`` and
``DCTLSTM`` learn the kept low-frequency DCT coefficients of their matrices; ``FastDCTRNN`` is a fast
RNN whose coefficients a slow LSTM emits at every step (the slow net programs the fast weights in
the compressed space). The transform and the kept triangle are ``metafwp.ops.dct``."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from metafwp.ops.dct import coefficients_to_weight, dct_matrix, kept_coefficients, weight_to_coefficients


class DCTWeight(nn.Module):
    """A weight ``[out, in]`` parameterised by its kept DCT coefficients (``kept_coefficients``),
    initialised as the authors do: ``W_0 ~ U(-1 / sqrt(out), 1 / sqrt(out))`` low-pass filtered.
    Calling it returns the weight."""

    def __init__(self, out_features: int, in_features: int, sparsity: float):
        super().__init__()
        rows, cols = kept_coefficients(out_features, in_features, sparsity)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        self.shape, self.sparsity = (out_features, in_features), sparsity
        bound = 1.0 / math.sqrt(out_features)
        self.coefficients = nn.Parameter(weight_to_coefficients(torch.empty(self.shape).uniform_(-bound, bound),
                                                                rows, cols))

    def forward(self) -> torch.Tensor:
        return coefficients_to_weight(self.coefficients, self.rows, self.cols, self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, sparsity={self.sparsity}, coefficients={self.coefficients.numel()}"


class DCTLinear(nn.Module):
    """``y = W x + b`` with ``W`` a ``DCTWeight``; ``b ~ U(-1 / sqrt(out), 1 / sqrt(out))``.
    ``forward(x [..., in]) -> [..., out]``."""

    def __init__(self, in_features: int, out_features: int, sparsity: float, bias: bool = True):
        super().__init__()
        self.weight = DCTWeight(out_features, in_features, sparsity)
        bound = 1.0 / math.sqrt(out_features)
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.weight().T
        return y if self.bias is None else y + self.bias


class DCTLSTM(nn.Module):
    """An LSTM whose eight matrices (input, forget, cell and output gates, each ``ih`` and ``hh``) are
    ``DCTWeight``s with their own coefficients; biases ``U(-1 / sqrt(H), 1 / sqrt(H))``. Gates as
    ``torch.nn.LSTM``: ``i, f, g, o``.

    ``forward(x [B, T, in], state=None) -> (h [B, T, H], (h_T, c_T))``, state ``(h, c)`` each ``[B, H]``.
    """

    def __init__(self, input_size: int, hidden_size: int, sparsity: float):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.ih = nn.ModuleList(DCTWeight(hidden_size, input_size, sparsity) for _ in range(4))
        self.hh = nn.ModuleList(DCTWeight(hidden_size, hidden_size, sparsity) for _ in range(4))
        bound = 1.0 / math.sqrt(hidden_size)
        self.bias = nn.Parameter(torch.empty(4 * hidden_size).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, state=None):
        B, T, _ = x.shape
        W_ih = torch.cat([weight() for weight in self.ih])  # [4H, in]
        W_hh = torch.cat([weight() for weight in self.hh])  # [4H, H]
        h, c = state if state is not None else (x.new_zeros(B, self.hidden_size), x.new_zeros(B, self.hidden_size))
        gates_in = x @ W_ih.T + self.bias
        outputs = []
        for t in range(T):
            i, f, g, o = (gates_in[:, t] + h @ W_hh.T).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs, 1), (h, c)


class FastDCTRNN(nn.Module):
    """The fast-weight DCT RNN: a slow ``nn.LSTM(input, n_ih + n_hh)`` reads ``x_t``; its output,
    scaled elementwise by a learned ``coef_scaler`` (ones at start), is the coefficient vector of the
    two fast matrices at step t, and

        h_t = tanh(W_ih(t) x_t + W_hh(t) h_{t-1} + b),   W(t) = IDCT2(the coefficients in the kept triangle).

    ``W(t) x`` is computed as ``M_out^T C(t) (M_in x)``, never forming ``W(t)``. The slow LSTM's width
    is the number of kept coefficients n, so its parameters grow as ``4 n (n + in + 1)``.

    ``forward(x [B, T, in], state=None) -> (h [B, T, H], (h_T, (slow h, slow c)))``.
    """

    def __init__(self, input_size: int, hidden_size: int, sparsity_ih: float, sparsity_hh: float,
                 coef_scale: bool = True):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        for name, (out_features, in_features, sparsity) in {"ih": (hidden_size, input_size, sparsity_ih),
                                                           "hh": (hidden_size, hidden_size, sparsity_hh)}.items():
            rows, cols = kept_coefficients(out_features, in_features, sparsity)
            self.register_buffer(f"{name}_rows", rows, persistent=False)
            self.register_buffer(f"{name}_cols", cols, persistent=False)
        self.num_ih, self.num_hh = self.ih_rows.numel(), self.hh_rows.numel()
        self.slow = nn.LSTM(input_size, self.num_ih + self.num_hh, batch_first=True)
        self.coef_scaler = nn.Parameter(torch.ones(self.num_ih + self.num_hh)) if coef_scale else None
        bound = 1.0 / math.sqrt(hidden_size)
        self.bias = nn.Parameter(torch.empty(hidden_size).uniform_(-bound, bound))

    @staticmethod
    def coefficient_matrices(coefficients: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, out_features: int,
                             in_features: int) -> torch.Tensor:
        """``C [B, T, out, in]``, zero but for ``coefficients [B, T, n]`` in the kept triangle."""
        dense = coefficients.new_zeros(*coefficients.shape[:2], out_features, in_features)
        dense[:, :, rows, cols] = coefficients
        return dense

    def forward(self, x: torch.Tensor, state=None):
        B, T, _ = x.shape
        H = self.hidden_size
        h, slow_state = state if state is not None else (x.new_zeros(B, H), None)
        coefficients, slow_state = self.slow(x, slow_state)
        if self.coef_scaler is not None:
            coefficients = coefficients * self.coef_scaler
        M_in, M_hid = dct_matrix(self.input_size, x.dtype, x.device), dct_matrix(H, x.dtype, x.device)
        c_ih, c_hh = coefficients.split([self.num_ih, self.num_hh], -1)
        # W_ih(t) x_t + b for every step at once (it reads no earlier h); only W_hh(t) h_{t-1} runs step by step
        C_ih = self.coefficient_matrices(c_ih, self.ih_rows, self.ih_cols, H, self.input_size)
        driven = (C_ih @ (x @ M_in.T)[..., None])[..., 0] @ M_hid + self.bias
        C_hh = self.coefficient_matrices(c_hh, self.hh_rows, self.hh_cols, H, H)
        outputs = []
        for t in range(T):
            h = torch.tanh(driven[:, t] + (C_hh[:, t] @ (h @ M_hid.T)[..., None])[..., 0] @ M_hid)
            outputs.append(h)
        return torch.stack(outputs, 1), (h, slow_state)

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}, coefficients={self.num_ih}+{self.num_hh}"
