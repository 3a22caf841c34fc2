"""The e-LSTM as a sequence mixer, trained by backpropagation through time like every mixer, and its
exact real-time recurrent learning (``ELSTMRTRL``), which carries the recurrent parameters'
sensitivities forward instead: memory independent of the sequence length."""
from __future__ import annotations

import torch
import torch.nn as nn

from metafwp.ops.elstm import ELSTMSensitivities, elstm, elstm_cell

INIT_STD = 0.1  # the authors' N(0, 0.1) for every parameter


class ELSTMLayer(nn.Module):
    """``forward(x [B, T, d], c_0 [B, H] or None) -> (y [B, T, d], c_T [B, H])`` with H ``cells``
    (Default: d): the e-LSTM recurrence (``metafwp.ops.elstm``) on ``[a_z; a_f] = in_proj(x)``, then
    the authors' readout ``c_t * sigmoid(W_o [x_t; c_t] + b_o)`` (its output gate reads the current
    cell), mapped back to width d by ``out_proj`` when H != d. The authors train H = 2048 cells on
    one-hot inputs: many cells reading a narrow stream, which RTRL affords (its sensitivities
    grow with H x d).

    Parameters: ``in_proj`` (``[W_z; W_f]`` and ``[b_z; b_f]``), ``w_z``, ``w_f`` (the recurrent
    ones, which RTRL trains), ``out_gate`` (the readout) and ``out_proj`` (None when H = d). While
    ``rtrl`` holds an ``ELSTMRTRL``, ``forward`` takes one step at a time through it (T = 1) and
    returns its carried cell.
    """

    def __init__(self, d_model: int, cells: int | None = None):
        super().__init__()
        cells = d_model if cells is None else cells
        if cells < 1:
            raise ValueError(f"cells must be >= 1, got {cells}")
        self.hidden = cells
        self.in_proj = nn.Linear(d_model, 2 * cells)
        self.w_z = nn.Parameter(torch.empty(cells))
        self.w_f = nn.Parameter(torch.empty(cells))
        self.out_gate = nn.Linear(d_model + cells, cells)
        self.out_proj = nn.Linear(cells, d_model) if cells != d_model else None
        for parameter in self.parameters():
            nn.init.normal_(parameter, std=INIT_STD)
        self.rtrl: ELSTMRTRL | None = None

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None):
        if self.rtrl is not None:
            if x.shape[1] != 1:
                raise ValueError(f"an e-LSTM trained by RTRL reads one step at a time, got {x.shape[1]} steps")
            return self.rtrl.step(x[:, 0])[:, None], self.rtrl.c
        a_z, a_f = self.in_proj(x).chunk(2, -1)
        c, c_last = elstm(a_z, a_f, self.w_z, self.w_f, state)
        return self.readout(x, c), c_last

    def readout(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        y = c * torch.sigmoid(self.out_gate(torch.cat([x, c], -1)))
        return y if self.out_proj is None else self.out_proj(y)

    def recurrent_gradients(self, grads: dict[str, torch.Tensor]) -> dict[nn.Parameter, torch.Tensor]:
        """``ELSTMSensitivities.gradients`` mapped onto this layer's parameters."""
        return {self.in_proj.weight: torch.cat([grads["W_z"], grads["W_f"]]),
                self.in_proj.bias: torch.cat([grads["b_z"], grads["b_f"]]),
                self.w_z: grads["w_z"], self.w_f: grads["w_f"]}


class ELSTMRTRL:
    """Exact RTRL of an ``ELSTMLayer``'s recurrent parameters, one step at a time.

    ``step(x_t [B, d]) -> y_t [B, d]``: autograd reaches the readout and, one step back, ``x_t``
    (layers below get one-step truncated gradients), never the recurrent parameters; after the
    backward of a loss on ``y_t``, ``accumulate()`` adds their exact gradients,
    ``sum_b dL/dc_t * S_t``, to their ``.grad``. Accumulating over a sequence and stepping the
    optimiser once equals BPTT; stepping after every token is fully online RTRL (the sensitivities
    are carried on, as the authors). Memory: ``B (2 H I + 4 H)`` numbers, whatever the length.
    """

    def __init__(self, layer: ELSTMLayer, batch_size: int, initial_state: torch.Tensor | None = None):
        self.layer = layer
        weight = layer.in_proj.weight
        self.c = (weight.new_zeros(batch_size, layer.hidden) if initial_state is None
                  else initial_state.detach().clone())
        self.sensitivities = ELSTMSensitivities.zeros(batch_size, layer.hidden, weight.shape[1], weight)
        self.cell = None

    def step(self, x: torch.Tensor) -> torch.Tensor:
        layer, c_prev = self.layer, self.c
        a_z, a_f = torch.nn.functional.linear(x, layer.in_proj.weight.detach(),
                                              layer.in_proj.bias.detach()).chunk(2, -1)
        w_z, w_f = layer.w_z.detach(), layer.w_f.detach()
        c, (z, f) = elstm_cell(a_z, a_f, w_z, w_f, c_prev)
        self.sensitivities.update(x.detach(), c_prev, z.detach(), f.detach(), w_z, w_f)
        c = c.requires_grad_() if not c.requires_grad else c
        c.retain_grad()
        self.cell, self.c = c, c.detach()
        return layer.readout(x, c)

    def accumulate(self) -> None:
        """Add the recurrent parameters' RTRL gradients of the last step's backward to their ``.grad``."""
        if self.cell is None or self.cell.grad is None:
            return
        grads = self.sensitivities.gradients(self.cell.grad)
        for parameter, gradient in self.layer.recurrent_gradients(grads).items():
            parameter.grad = gradient.clone() if parameter.grad is None else parameter.grad + gradient
