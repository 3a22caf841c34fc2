"""Layers: exact state carry (one call == pieces with the state handed over, outputs and gradients),
feature maps, learning-rate activations, DeltaProduct layers, the SRWM layer's wrapping."""
import pytest
import torch

from metafwp.nn import BETA_ACTIVATIONS, FEATURE_MAPS, FastWeightLayer, SRWMLayer
from metafwp.ops import RULES, srwm
from tests.helpers import assert_close, run_in_pieces

LAYERS = [(rule, backend, 1) for rule in RULES for backend in ("reference", "chunk")]
LAYERS += [("delta", "chunk", 2), ("gated_delta", "reference", 3), ("mesa", "reference", 1), ("mesa", "chunk", 1)]


def params_and_input_grads(layer, x, y, state):
    gen = torch.Generator().manual_seed(1)
    loss = (y * torch.randn(y.shape, generator=gen, dtype=y.dtype)).sum() + \
        (state * torch.randn(state.shape, generator=gen, dtype=state.dtype)).sum()
    return torch.autograd.grad(loss, [x, *layer.parameters()])


@pytest.mark.parametrize("rule, backend, n", LAYERS, ids=[f"{r}-{b}-n{n}" for r, b, n in LAYERS])
def test_fast_weight_layer_state_carry_is_exact(rule, backend, n):
    torch.manual_seed(0)
    layer = FastWeightLayer(24, 3, rule=rule, backend=backend, chunk_size=4, num_householder=n).double()
    x = torch.randn(2, 23, 24, dtype=torch.float64, requires_grad=True)
    y_full, S_full = layer(x)
    y_pieces, S_pieces = run_in_pieces(layer, x, [1, 8, 17])
    assert_close("y", y_pieces, y_full, 1e-12)
    assert_close("state", S_pieces, S_full, 1e-12)
    for i, (a, e) in enumerate(zip(params_and_input_grads(layer, x, y_pieces, S_pieces),
                                   params_and_input_grads(layer, x, y_full, S_full))):
        assert_close(f"gradient {i}", a, e, 1e-11)


@pytest.mark.parametrize("rule", RULES)
def test_fast_weight_layer_backends_agree(rule):
    torch.manual_seed(0)
    layer = FastWeightLayer(16, 2, rule=rule).double()
    x = torch.randn(2, 40, 16, dtype=torch.float64)
    layer.backend = "reference"
    y_ref, S_ref = layer(x)
    layer.backend = "chunk"
    y_chunk, S_chunk = layer(x)
    assert_close("y", y_chunk, y_ref, 1e-12)
    assert_close("state", S_chunk, S_ref, 1e-12)


@pytest.mark.parametrize("input_norm", [False, True])
def test_srwm_layer_state_carry_is_exact(input_norm):
    torch.manual_seed(0)
    layer = SRWMLayer(32, 4, input_norm=input_norm).double()
    x = torch.randn(2, 13, 32, dtype=torch.float64, requires_grad=True)
    y_full, W_full = layer(x)
    y_pieces, W_pieces = run_in_pieces(layer, x, [1, 6])
    assert W_full.shape == (2, 4, 8, 28)
    assert_close("y", y_pieces, y_full, 1e-13)
    assert_close("W", W_pieces, W_full, 1e-13)
    for i, (a, e) in enumerate(zip(params_and_input_grads(layer, x, y_pieces, W_pieces),
                                   params_and_input_grads(layer, x, y_full, W_full))):
        assert_close(f"gradient {i}", a, e, 1e-12)


def test_srwm_layer_wrapping_and_init():
    """out = LayerNorm(x) + W_o y, the SRWM reading the raw input; W0 ~ N(0, 1/sqrt(D))."""
    torch.manual_seed(0)
    layer = SRWMLayer(64, 4).eval()
    x = torch.randn(3, 5, 64)
    out, _ = layer(x)
    y, _ = srwm(x.view(3, 5, 4, 16), layer.W0)
    expected = torch.nn.functional.layer_norm(x, (64,), layer.norm.weight, layer.norm.bias) + layer.out_proj(y.reshape(3, 5, 64))
    torch.testing.assert_close(out, expected)
    big = SRWMLayer(256, 4)  # 4 x 64 x 196 entries: the std is pinned to about 1%
    assert abs(big.W0.std().item() - 64 ** -0.5) < 0.01 and abs(big.W0.mean().item()) < 0.01


def test_srwm_layer_input_norm_reads_the_normalised_stream():
    """input_norm=True: n = LayerNorm(x), out = n + W_o SRWM(n); the output no longer depends on x's scale."""
    torch.manual_seed(0)
    layer = SRWMLayer(64, 4, input_norm=True).eval()
    with torch.no_grad():
        layer.norm.weight.uniform_(0.5, 1.5), layer.norm.bias.normal_()
    x = torch.randn(3, 5, 64)
    out, W = layer(x)
    normalised = torch.nn.functional.layer_norm(x, (64,), layer.norm.weight, layer.norm.bias)
    y, W_expected = srwm(normalised.view(3, 5, 4, 16), layer.W0, output_final_state=True)
    torch.testing.assert_close(out, normalised + layer.out_proj(y.reshape(3, 5, 64)))
    torch.testing.assert_close(W, W_expected)
    scaled, _ = layer(10 * x - 3)  # LayerNorm removes a scale and a shift of every step
    torch.testing.assert_close(scaled, out, rtol=1e-4, atol=1e-4)


def test_feature_maps():
    x = torch.randn(4, 7, 16)
    assert torch.equal(FEATURE_MAPS["identity"](x), x)
    torch.testing.assert_close(FEATURE_MAPS["silu_l2"](x).norm(dim=-1), torch.ones(4, 7))
    torch.testing.assert_close(FEATURE_MAPS["elu_sum_norm"](x).sum(-1), torch.ones(4, 7))
    assert (FEATURE_MAPS["elu_plus_one"](x) > 0).all()
    torch.testing.assert_close(FEATURE_MAPS["elu_plus_one"](torch.tensor([1.0, -1e9])), torch.tensor([2.0, 0.0]))


def test_beta_activations_and_defaults():
    x = torch.linspace(-20, 20, 101)
    assert BETA_ACTIVATIONS["sigmoid"](x).max() <= 1 and BETA_ACTIVATIONS["2sigmoid"](x).max() > 1.99
    assert FastWeightLayer(8, 2, rule="delta").feature_map_name == "silu_l2"
    assert FastWeightLayer(8, 2, rule="hebbian").feature_map_name == "elu_sum_norm"


@pytest.mark.parametrize("kwargs, message", [
    (dict(rule="lstm"), r"Unknown rule 'lstm'"),
    (dict(feature_map="relu"), r"Unknown feature_map 'relu'. Valid: identity"),
    (dict(beta_activation="tanh"), r"Unknown beta_activation 'tanh'"),
    (dict(rule="hebbian", num_householder=2), r"DeltaProduct needs rule 'delta' or 'gated_delta'"),
])
def test_fast_weight_layer_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FastWeightLayer(8, 2, **kwargs)


def test_layer_dimension_errors():
    with pytest.raises(ValueError, match="d_model=10 is not divisible by num_heads=3"):
        FastWeightLayer(10, 3)
    with pytest.raises(ValueError, match="d_model=10 is not divisible by num_heads=3"):
        SRWMLayer(10, 3)
