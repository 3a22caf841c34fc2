"""The element-wise LSTM (e-LSTM; Irie, Gopalakrishnan & Schmidhuber 2024), whose recurrence is
diagonal, so that its real-time recurrent learning (RTRL) is exact at the cost of the forward pass.

With ``a^z_t = W_z x_t + b_z`` and ``a^f_t = W_f x_t + b_f`` computed outside the recurrence:

    z_t = tanh(a^z_t + w_z * c_{t-1}),   f_t = sigmoid(a^f_t + w_f * c_{t-1}),
    c_t = f_t * c_{t-1} + (1 - f_t) * z_t                               (element-wise, c_0 given)

RTRL carries ``S^theta_t = dc_t / dtheta`` forward. As ``c_t[i]`` depends only on row i of ``W_z``
and ``W_f``, every sensitivity has the size of its parameter times the batch:

    zf_t = (1 - f_t)(1 - z_t^2),   fz_t = (c_{t-1} - z_t) f_t (1 - f_t),
    g_t  = f_t + zf_t w_z + fz_t w_f                               (dc_t / dc_{t-1}, diagonal)
    S^{W_z}_t[i, j] = g_t[i] S^{W_z}_{t-1}[i, j] + zf_t[i] x_t[j]      (and W_f with fz_t)
    S^{w_z}_t = g_t S^{w_z}_{t-1} + zf_t c_{t-1},   S^{b_z}_t = g_t S^{b_z}_{t-1} + zf_t   (and f)

and a loss's gradient is ``sum_t sum_b dL/dc_t[b, i] S_t[b, i, ...]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def elstm(a_z: torch.Tensor, a_f: torch.Tensor, w_z: torch.Tensor, w_f: torch.Tensor,
          initial_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence over ``a_z, a_f [B, T, H]`` (the input projections), ``w_z, w_f [H]``, from
    ``initial_state [B, H]`` (Default: 0). Returns ``c [B, T, H]`` and the final ``c_T [B, H]``;
    differentiable by autograd (backpropagation through time)."""
    if a_z.shape != a_f.shape or a_z.dim() != 3:
        raise ValueError(f"a_z and a_f must be [B, T, H] of one shape, got {tuple(a_z.shape)} and {tuple(a_f.shape)}")
    c = a_z.new_zeros(a_z.shape[0], a_z.shape[2]) if initial_state is None else initial_state
    cells = []
    for t in range(a_z.shape[1]):
        c, _ = elstm_cell(a_z[:, t], a_f[:, t], w_z, w_f, c)
        cells.append(c)
    return torch.stack(cells, 1), c


def elstm_cell(a_z, a_f, w_z, w_f, c_prev) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """One step: ``c_t [B, H]`` and the gates ``(z_t, f_t)``."""
    z = torch.tanh(a_z + w_z * c_prev)
    f = torch.sigmoid(a_f + w_f * c_prev)
    return f * c_prev + (1 - f) * z, (z, f)


@dataclass
class ELSTMSensitivities:
    """``dc_t / dtheta`` of one e-LSTM layer for a batch: ``W_z, W_f [B, H, I]``, the others ``[B, H]``."""
    W_z: torch.Tensor
    W_f: torch.Tensor
    w_z: torch.Tensor
    w_f: torch.Tensor
    b_z: torch.Tensor
    b_f: torch.Tensor

    @classmethod
    def zeros(cls, batch: int, hidden: int, inputs: int, like: torch.Tensor) -> "ELSTMSensitivities":
        matrix, vector = like.new_zeros(batch, hidden, inputs), like.new_zeros(batch, hidden)
        return cls(matrix, matrix.clone(), vector, vector.clone(), vector.clone(), vector.clone())

    @torch.no_grad()
    def update(self, x, c_prev, z, f, w_z, w_f) -> None:
        """Advance by one step: ``x [B, I]`` the step's input, ``c_prev, z, f [B, H]`` its cell
        before and its gates, ``w_z, w_f [H]``."""
        zf = (1 - f) * (1 - z * z)
        fz = (c_prev - z) * f * (1 - f)
        g = f + zf * w_z + fz * w_f
        self.W_z = g[..., None] * self.W_z + zf[..., None] * x[:, None]
        self.W_f = g[..., None] * self.W_f + fz[..., None] * x[:, None]
        self.w_z = g * self.w_z + zf * c_prev
        self.w_f = g * self.w_f + fz * c_prev
        self.b_z = g * self.b_z + zf
        self.b_f = g * self.b_f + fz

    def gradients(self, delta: torch.Tensor) -> dict[str, torch.Tensor]:
        """The parameters' gradients from ``delta = dL/dc_t [B, H]``: summed over the batch."""
        return {"W_z": torch.einsum("bh,bhi->hi", delta, self.W_z), "W_f": torch.einsum("bh,bhi->hi", delta, self.W_f),
                "w_z": (delta * self.w_z).sum(0), "w_f": (delta * self.w_f).sum(0),
                "b_z": (delta * self.b_z).sum(0), "b_f": (delta * self.b_f).sum(0)}

    def numel(self) -> int:
        """Elements kept (independent of the sequence length)."""
        return sum(t.numel() for t in (self.W_z, self.W_f, self.w_z, self.w_f, self.b_z, self.b_f))
