"""RecurrentFWPLayer: the slow net of a recurrent fast weight programmer (Irie et al. 2021) around
its op in ``metafwp.ops``."""
from __future__ import annotations

import torch
import torch.nn as nn

from metafwp.nn.fast_weight_layer import BETA_ACTIVATIONS
from metafwp.ops import RECURRENT_FWPS, delta_delta, delta_lstm, delta_mlp, delta_rnn, recurrent_delta
from metafwp.ops.common import compute_dtype
from metafwp.ops.recurrent_fwp import GATES, DeltaLSTMState, DeltaRNNState, sum_normalised_elu

RATE_KINDS = ("delta_rnn", "delta_lstm")  # the kinds that take beta_activation and learned_initial_r
LOOP_KINDS = ("delta_rnn", "delta_lstm", "recurrent_delta")  # the kinds with a time loop: compile_loop


class RecurrentFWPLayer(nn.Module):
    """One linear projection of the input to every per-head quantity the fast net needs, the maps
    of the authors' code, the op, and an output projection.

    Args:
        d_model: input and output width.
        num_heads: H; each head has ``d = d_model // num_heads``.
        kind: one of ``metafwp.ops.RECURRENT_FWPS``:
            ``delta_rnn`` (q, k, v, beta of W; key, value, beta of R: 5d + 2 per head),
            ``delta_lstm`` (the same per gate: 3 (5d + 2)), ``recurrent_delta`` (q, k, v, beta: 3d + 1,
            and the slow recurrent weights [H, d, 3d + 1] drawn from N(0, 1/d)), ``delta_mlp``
            (q and, per fast layer, W1's key/value/beta and W2's: d + n (2d + 2F + 2)),
            ``delta_delta`` (q, k, beta and the 3d + 1 wide value of the matrix that writes W).
        fast_hidden: F, the hidden width of delta_mlp's fast MLP. Default: 2d.
        fast_layers: n, delta_mlp's fast layers. Default: 1.
        beta_activation: delta_rnn and delta_lstm: the map of every fast matrix's learning rate,
            ``sigmoid`` (in (0, 1), the authors') or ``2sigmoid`` (in (0, 2): the transition
            ``I - b k k^T`` can have negative eigenvalues). Default: sigmoid.
        learned_initial_r: delta_rnn and delta_lstm: R starts from a slow learned matrix R_0
            ([H, d, d] per gate, drawn from N(0, 1/d)) instead of zeros, as the SRWM's W_0.
            Default: False.
        backend: of the ops (their delta-rule parts and the Triton kernels of the loops). Default: auto.
        recompute: C > 0 makes the time loops keep their state every C steps only (the ops'
            ``recompute``). Default: None.
        compile_loop: delta_rnn, delta_lstm, recurrent_delta: their time loop compiled by
            ``torch.compile`` (the ops' ``compile_loop``). Default: False.

    Maps: keys and queries of matrices written from the input ``elu + 1`` then sum-normalised, R's
    keys softmax, learning rates sigmoid, values as projected (the authors' choices).

    ``forward(x [B, T, d_model], state or None) -> (y [B, T, d_model], state)`` with the op's state
    NamedTuple, which continues the sequence exactly in a later call.
    """

    def __init__(self, d_model: int, num_heads: int, kind: str = "delta_rnn", fast_hidden: int | None = None,
                 fast_layers: int = 1, beta_activation: str = "sigmoid", learned_initial_r: bool = False,
                 backend: str = "auto", recompute: int | None = None, compile_loop: bool = False):
        super().__init__()
        if kind not in RECURRENT_FWPS:
            raise ValueError(f"Unknown recurrent FWP {kind!r}. Valid: {', '.join(RECURRENT_FWPS)}")
        if beta_activation not in BETA_ACTIVATIONS:
            raise ValueError(f"Unknown beta_activation {beta_activation!r}. Valid: {', '.join(BETA_ACTIVATIONS)}")
        if compile_loop and kind not in LOOP_KINDS:
            raise ValueError(f"compile_loop is an option of {', '.join(LOOP_KINDS)} (their time loops), not of {kind}")
        if kind not in RATE_KINDS and (beta_activation != "sigmoid" or learned_initial_r):
            raise ValueError(f"beta_activation and learned_initial_r are options of {' and '.join(RATE_KINDS)}, "
                             f"not of {kind}")
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        d = d_model // num_heads
        self.kind, self.num_heads, self.head_dim = kind, num_heads, d
        self.fast_hidden, self.fast_layers = fast_hidden or 2 * d, fast_layers
        self.backend, self.recompute, self.compile_loop = backend, recompute, compile_loop
        self.beta_activation = beta_activation
        self.parts = self.part_widths()
        self.in_proj = nn.Linear(d_model, num_heads * sum(self.parts), bias=True)
        if kind == "recurrent_delta":
            self.recurrent = nn.Parameter(torch.randn(num_heads, d, 3 * d + 1) / d ** 0.5)
        self.initial_r = None
        if learned_initial_r:
            gates = (GATES,) if kind == "delta_lstm" else ()
            self.initial_r = nn.Parameter(torch.randn(num_heads, *gates, d, d) / d ** 0.5)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def part_widths(self) -> list[int]:
        """Widths of the per-head pieces ``in_proj`` makes, in the order the op takes them."""
        d, F, n = self.head_dim, self.fast_hidden, self.fast_layers
        return {"delta_rnn": [d, d, d, 1, d, d, 1],
                "delta_lstm": [GATES * d, GATES * d, GATES * d, GATES, GATES * d, GATES * d, GATES],
                "recurrent_delta": [d, d, d, 1],
                "delta_mlp": [d, n * d, n * F, n, n * F, n * d, n],
                "delta_delta": [d, d, 3 * d + 1, 1]}[self.kind]

    def forward(self, x: torch.Tensor, state=None):
        B, T, d_model = x.shape
        H, d, n = self.num_heads, self.head_dim, self.fast_layers
        parts = list(self.in_proj(x).view(B, T, H, -1).split(self.parts, -1))
        options = dict(initial_state=state, output_final_state=True)
        if self.kind in ("delta_rnn", "delta_lstm"):
            if self.kind == "delta_lstm":  # [B, T, H, 3, d] per gate
                parts = [p if i in (3, 6) else p.unflatten(-1, (GATES, d)) for i, p in enumerate(parts)]
            q, k, v, beta, rk, rv, rbeta = parts
            op = delta_rnn if self.kind == "delta_rnn" else delta_lstm
            squeeze = (lambda b: b.squeeze(-1)) if self.kind == "delta_rnn" else (lambda b: b)
            rate = BETA_ACTIVATIONS[self.beta_activation]
            if state is None and self.initial_r is not None:
                options["initial_state"] = self.learned_initial_state(B, x)
            y, state = op(sum_normalised_elu(q), sum_normalised_elu(k), v, rate(squeeze(beta)), rk.softmax(-1), rv,
                          rate(squeeze(rbeta)), backend=self.backend, recompute=self.recompute,
                          compile_loop=self.compile_loop, **options)
        elif self.kind == "recurrent_delta":
            q, k, v, beta = parts
            y, state = recurrent_delta(q, k, v, beta.squeeze(-1), self.recurrent, backend=self.backend,
                                       recompute=self.recompute, compile_loop=self.compile_loop, **options)
        elif self.kind == "delta_mlp":
            q, k1, v1, beta1, k2, v2, beta2 = (p.unflatten(-1, (n, -1)) if i else p for i, p in enumerate(parts))
            y, state = delta_mlp(q, sum_normalised_elu(k1), v1, beta1.squeeze(-1).sigmoid(), sum_normalised_elu(k2),
                                 v2, beta2.squeeze(-1).sigmoid(), backend=self.backend, **options)
        else:
            q, k, v, beta = parts
            y, state = delta_delta(sum_normalised_elu(q), sum_normalised_elu(k), v, beta.squeeze(-1).sigmoid(),
                                   backend=self.backend, **options)
        return self.out_proj(y.reshape(B, T, d_model)), state

    def learned_initial_state(self, batch_size: int, x: torch.Tensor):
        """The state a sequence starts from with a learned R_0: R = R_0 for every sequence, the rest zeros."""
        R = self.initial_r.to(compute_dtype(x.dtype)).expand(batch_size, *self.initial_r.shape)
        zeros = lambda *shape: R.new_zeros(batch_size, self.num_heads, *shape)  # noqa: E731
        d = self.head_dim
        if self.kind == "delta_rnn":
            return DeltaRNNState(zeros(d, d), R, zeros(d))
        return DeltaLSTMState(zeros(GATES, d, d), R, zeros(d), zeros(d))

    def extra_repr(self) -> str:
        extra = f", fast_hidden={self.fast_hidden}, fast_layers={self.fast_layers}" if self.kind == "delta_mlp" else ""
        if self.kind in RATE_KINDS:
            extra = f", beta={self.beta_activation}, learned_initial_r={self.initial_r is not None}"
        return f"kind={self.kind}, heads={self.num_heads}, head_dim={self.head_dim}{extra}"
