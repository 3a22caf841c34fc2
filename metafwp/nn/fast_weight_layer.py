"""FastWeightLayer: multi-head fast-weight mixer for every Table-1 rule, DeltaProduct and the mesa rule."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from metafwp.nn.short_conv import ShortConvolution
from metafwp.ops import RULES, delta_product, fast_weight, mesa


def elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    return F.elu(x) + 1.0


def elu_sum_norm(x: torch.Tensor) -> torch.Tensor:
    """elu + 1, then divided by its sum over the head dim (the IDSIA DeltaNet code's map)."""
    x = F.elu(x) + 1.0
    return x / x.sum(-1, keepdim=True)


def silu_l2(x: torch.Tensor) -> torch.Tensor:
    """SiLU then L2-normalise over the head dim (the recommendation of Irie & Gershman 2025, section 3.4)."""
    return F.normalize(F.silu(x), dim=-1)


FEATURE_MAPS = {"identity": lambda x: x, "elu_plus_one": elu_plus_one, "elu_sum_norm": elu_sum_norm,
                "silu_l2": silu_l2}
BETA_ACTIVATIONS = {"sigmoid": torch.sigmoid, "2sigmoid": lambda x: 2.0 * torch.sigmoid(x)}
DECAY_RULES = ("decay", "gla", "gated_delta")
LAYER_RULES = RULES + ("mesa",)


def default_feature_map(rule: str) -> str:
    """silu_l2 for the error-correcting rules (delta, gated_delta, oja, mesa), elu_sum_norm for the others."""
    return "silu_l2" if rule in ("delta", "gated_delta", "oja", "mesa") else "elu_sum_norm"


class FastWeightLayer(nn.Module):
    """Projections to q, k, v, a learning rate beta (and a log-decay for the decaying rules), the
    fast-weight recurrence per head, and an output projection. The mesa rule has no learning rate:
    its fast weights solve the ridge regression of all keys and values so far (``ops.mesa``).

    Args:
        d_model: input and output width.
        num_heads: H; head_dim defaults to d_model // num_heads.
        rule: one of ``metafwp.ops.RULES`` or ``mesa``. Default: ``delta``.
        feature_map: applied to q and k: identity, elu_plus_one, elu_sum_norm or silu_l2.
            Default: silu_l2 for delta/gated_delta/oja/mesa, elu_sum_norm otherwise.
        beta_activation: ``sigmoid`` (b in (0, 1)) or ``2sigmoid`` (b in (0, 2): negative
            eigenvalues; Irie & Gershman 2025, sections 3.4 and 3.6). Default: sigmoid.
        head_dim: K = V per head. Default: d_model // num_heads.
        num_householder: n > 1 makes the delta rule a DeltaProduct with n micro-steps per token
            (rule ``delta`` or ``gated_delta`` only). Default: 1.
        mesa_lambda: the mesa rule's ridge lambda > 0. Default: 1.
        backend, chunk_size: passed to the op. Default: auto, the op's default chunk size.
        short_conv: the projections q, k, v pass a causal depthwise convolution of 4 steps
            (``ShortConvolution``) before the feature map. Default: False.

    ``forward(x [B, T, d_model], state [B, H, K, V] ([B, H, K, K + V] for mesa) or None) ->
    (y [B, T, d_model], state)``: the returned state continues the sequence exactly in a later call;
    with ``short_conv`` it is ``(fast weights, the convolution's history [B, 3, channels])``.
    """

    def __init__(self, d_model: int, num_heads: int, rule: str = "delta", feature_map: str | None = None,
                 beta_activation: str = "sigmoid", head_dim: int | None = None, num_householder: int = 1,
                 mesa_lambda: float = 1.0, backend: str = "auto", chunk_size: int | None = None,
                 short_conv: bool = False):
        super().__init__()
        if rule not in LAYER_RULES:
            raise ValueError(f"Unknown rule {rule!r}. Valid: {', '.join(LAYER_RULES)}")
        if rule == "mesa" and not 0 < mesa_lambda < math.inf:
            raise ValueError(f"mesa_lambda must be finite and > 0, got {mesa_lambda}")
        feature_map = feature_map or default_feature_map(rule)
        if feature_map not in FEATURE_MAPS:
            raise ValueError(f"Unknown feature_map {feature_map!r}. Valid: {', '.join(FEATURE_MAPS)}")
        if beta_activation not in BETA_ACTIVATIONS:
            raise ValueError(f"Unknown beta_activation {beta_activation!r}. Valid: {', '.join(BETA_ACTIVATIONS)}")
        if head_dim is None:
            if d_model % num_heads:
                raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}; pass head_dim")
            head_dim = d_model // num_heads
        if num_householder < 1 or (num_householder > 1 and rule not in ("delta", "gated_delta")):
            raise ValueError(f"num_householder={num_householder}: DeltaProduct needs rule 'delta' or "
                             f"'gated_delta' and n >= 1, got rule {rule!r}")
        self.rule, self.num_heads, self.head_dim, self.num_householder = rule, num_heads, head_dim, num_householder
        self.feature_map_name, self.beta_activation_name = feature_map, beta_activation
        self.backend, self.chunk_size, self.mesa_lambda = backend, chunk_size, mesa_lambda
        H, K, n = num_heads, head_dim, num_householder
        self.q_proj = nn.Linear(d_model, H * K, bias=False)
        self.k_proj = nn.Linear(d_model, H * n * K, bias=False)
        self.v_proj = nn.Linear(d_model, H * n * K, bias=False)
        if rule != "mesa":
            self.beta_proj = nn.Linear(d_model, H * n)
        if rule in DECAY_RULES:
            self.decay_proj = nn.Linear(d_model, H * K if rule == "gla" else H)
        self.out_proj = nn.Linear(H * K, d_model, bias=False)
        self.conv = ShortConvolution(H * K + 2 * H * n * K) if short_conv else None

    @torch.no_grad()
    def match_keys_to_queries(self) -> None:
        """Start the key projection equal to the query projection (each micro-step's keys for
        DeltaProduct), so that a later query of a similar input reads what a step wrote from the
        first update on. This shortens the plateau before in-context learning starts."""
        H, K, n = self.num_heads, self.head_dim, self.num_householder
        query = self.q_proj.weight.view(H, 1, K, -1)
        self.k_proj.weight.view(H, n, K, -1).copy_(query.expand(H, n, K, query.shape[-1]))

    def forward(self, x: torch.Tensor, state=None):
        B, T, _ = x.shape
        H, K, n = self.num_heads, self.head_dim, self.num_householder
        phi = FEATURE_MAPS[self.feature_map_name]
        q, k, v, history = self.q_proj(x), self.k_proj(x), self.v_proj(x), None
        if self.conv is not None:
            state, history = (None, None) if state is None else state
            qkv, history = self.conv(torch.cat([q, k, v], -1), history)
            q, k, v = qkv.split([H * K, H * n * K, H * n * K], -1)
        q, k, v = phi(q.view(B, T, H, K)), phi(k.view(B, T, H, n, K)), v.view(B, T, H, n, K)
        if self.rule == "mesa":
            o, state = mesa(q, k.squeeze(3), v.squeeze(3), lam=self.mesa_lambda, initial_state=state,
                            output_final_state=True, backend=self.backend, chunk_size=self.chunk_size)
            return self.out_proj(o.reshape(B, T, H * K)), self.state_of(state, history)
        beta = BETA_ACTIVATIONS[self.beta_activation_name](self.beta_proj(x).view(B, T, H, n))
        g = None
        if self.rule in DECAY_RULES:
            g = F.logsigmoid(self.decay_proj(x)).view(B, T, H, -1)
            g = g if self.rule == "gla" else g.squeeze(-1)
        options = dict(initial_state=state, output_final_state=True, backend=self.backend,
                       chunk_size=self.chunk_size)
        if n > 1:
            o, state = delta_product(q, k, v, beta, g=g, **options)
        else:
            o, state = fast_weight(q, k.squeeze(3), v.squeeze(3), rule=self.rule, beta=beta.squeeze(3), g=g,
                                   **options)
        return self.out_proj(o.reshape(B, T, H * K)), self.state_of(state, history)

    def state_of(self, fast: torch.Tensor, history: torch.Tensor | None):
        return fast if self.conv is None else (fast, history)

    def extra_repr(self) -> str:
        rate = f"lambda={self.mesa_lambda}" if self.rule == "mesa" else f"beta={self.beta_activation_name}"
        return (f"rule={self.rule}, heads={self.num_heads}, head_dim={self.head_dim}, "
                f"feature_map={self.feature_map_name}, {rate}, num_householder={self.num_householder}")
