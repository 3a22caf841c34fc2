"""The short convolution (float64): a loop over steps written from its weights; and the layers that
take it (attention, window attention, the fast-weight rules, mesa) against their equations written
here on the convolved projections, continued across calls exactly."""
import math

import pytest
import torch
import torch.nn.functional as F

from metafwp.models.kinds import SequenceConfig
from metafwp.nn import CausalAttentionLayer, FastWeightLayer, ShortConvolution, SlidingWindowAttentionLayer
from metafwp.train import ConfigError, load_config
from tests.helpers import ROOT, run_in_pieces


def convolved(conv: ShortConvolution, x: torch.Tensor) -> torch.Tensor:
    """``y_t = sum_i w_i x_{t - 3 + i}`` per channel, zeros before the first step: a loop over steps."""
    weight = conv.weight[:, 0]                                            # [C, 4]
    B, T, C = x.shape
    y = torch.zeros_like(x)
    for t in range(T):
        for i in range(4):
            if t - 3 + i >= 0:
                y[:, t] += weight[:, i] * x[:, t - 3 + i]
    return y


def test_the_convolution_is_its_loop_and_continues_across_calls():
    torch.manual_seed(0)
    conv = ShortConvolution(5).double()
    x = torch.randn(2, 9, 5, dtype=torch.float64)
    y, history = conv(x)
    assert torch.allclose(y, convolved(conv, x), atol=1e-13)
    assert torch.equal(history, x[:, -3:])
    pieces, _ = run_in_pieces(conv, x, [1, 2, 6])
    assert torch.allclose(pieces, y, atol=1e-13)


def attention_by_hand(layer, x, window=None):
    """Causal softmax attention (over the last ``window`` steps, or all) on the convolved q, k, v."""
    B, T, d = x.shape
    H = layer.num_heads
    q, k, v = convolved(layer.conv, layer.qkv_proj(x)).view(B, T, 3, H, d // H).unbind(2)
    out = torch.zeros(B, T, H, d // H, dtype=x.dtype)
    for t in range(T):
        first = 0 if window is None else max(0, t - window + 1)
        scores = torch.einsum("bhd,bshd->bhs", q[:, t], k[:, first:t + 1]) / math.sqrt(d // H)
        out[:, t] = torch.einsum("bhs,bshd->bhd", scores.softmax(-1), v[:, first:t + 1])
    return layer.out_proj(out.reshape(B, T, d))


def delta_by_hand(layer, x):
    """The delta rule on the convolved projections, a loop over steps: ``S += beta k (v - S^T k)^T``,
    ``o = S^T (q / sqrt(K))`` with ``silu_l2`` keys and queries."""
    B, T, d = x.shape
    H, K = layer.num_heads, layer.head_dim
    qkv = convolved(layer.conv, torch.cat([layer.q_proj(x), layer.k_proj(x), layer.v_proj(x)], -1))
    q, k, v = (t.view(B, T, H, K) for t in qkv.split(H * K, -1))
    q, k = F.normalize(F.silu(q), dim=-1), F.normalize(F.silu(k), dim=-1)
    beta = torch.sigmoid(layer.beta_proj(x))                              # [B, T, H]
    S = torch.zeros(B, H, K, K, dtype=x.dtype)
    out = []
    for t in range(T):
        error = v[:, t] - torch.einsum("bhkv,bhk->bhv", S, k[:, t])
        S = S + beta[:, t, :, None, None] * k[:, t, :, :, None] * error[:, :, None, :]
        out.append(torch.einsum("bhkv,bhk->bhv", S, q[:, t] / math.sqrt(K)))
    return layer.out_proj(torch.stack(out, 1).reshape(B, T, H * K)), S


@pytest.mark.parametrize("kind", ["attention", "window", "delta"])
def test_each_layer_reads_the_convolved_projections_and_continues_across_calls(kind):
    torch.manual_seed(1)
    x = torch.randn(2, 11, 8, dtype=torch.float64)
    if kind == "delta":
        layer = FastWeightLayer(8, 2, rule="delta", short_conv=True).double()
        expected, fast = delta_by_hand(layer, x)
    else:
        layer = (CausalAttentionLayer(8, 2, short_conv=True) if kind == "attention"
                 else SlidingWindowAttentionLayer(8, 2, 3, short_conv=True)).double()
        expected = attention_by_hand(layer, x, None if kind == "attention" else 3)
    y, state = layer(x)
    assert torch.allclose(y, expected, atol=1e-10), (y - expected).abs().max()
    if kind == "delta":
        assert torch.allclose(state[0], fast, atol=1e-10)
    pieces, piece_state = run_in_pieces(layer, x, [1, 4, 5])
    assert torch.allclose(pieces, y, atol=1e-10)
    for ours, whole in zip(piece_state, state):
        assert torch.allclose(ours, whole, atol=1e-10)


@pytest.mark.parametrize("rule", ["gated_delta", "hebbian", "mesa"])
def test_the_other_rules_continue_across_calls_with_it(rule):
    torch.manual_seed(2)
    layer = FastWeightLayer(8, 2, rule=rule, short_conv=True).double()
    x = torch.randn(2, 10, 8, dtype=torch.float64)
    y, state = layer(x)
    pieces, piece_state = run_in_pieces(layer, x, [3, 7])
    assert torch.allclose(pieces, y, atol=1e-10)
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(piece_state, state))


def test_the_option_is_read_by_the_mixers_that_take_it_and_refused_elsewhere():
    for mixer in ("attention", ["window_attention", "delta"], "mesa", "hqlt"):
        assert "short_conv" not in SequenceConfig(mixer=mixer, num_layers=len(mixer) if isinstance(mixer, list) else 1,
                                                  short_conv=True).unread_keys()
    with pytest.raises(ConfigError, match="model.short_conv is not read with model.kind=sequence, model.mixer=lstm"):
        load_config(ROOT / "recipes/expressivity_parity.yaml", ["model.mixer=lstm", "model.short_conv=true"])
