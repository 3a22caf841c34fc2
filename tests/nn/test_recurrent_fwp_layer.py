"""RecurrentFWPLayer: exact state carry through the layer (outputs, states, every gradient), every
slow parameter trained, the feature maps and rates of each kind, the recomputing backward, bad names."""
import pytest
import torch
import torch.nn.functional as F

from metafwp.nn import RecurrentFWPLayer
from metafwp.ops import RECURRENT_FWPS, delta_delta, delta_lstm, delta_mlp, recurrent_delta
from metafwp.ops.recurrent_fwp import DeltaLSTMState
from tests.helpers import assert_close, run_in_pieces


def loss_of(y, state):
    gen = torch.Generator().manual_seed(1)
    return sum((x * torch.randn(x.shape, generator=gen, dtype=x.dtype)).sum() for x in (y, *state))


@pytest.mark.parametrize("backend", ["reference", "chunk"])
@pytest.mark.parametrize("kind", RECURRENT_FWPS)
def test_state_carry_is_exact(kind, backend):
    torch.manual_seed(0)
    rates = dict(beta_activation="2sigmoid", learned_initial_r=True) if kind in ("delta_rnn", "delta_lstm") else {}
    layer = RecurrentFWPLayer(24, 3, kind=kind, fast_layers=2, backend=backend, **rates).double()
    x = torch.randn(2, 21, 24, dtype=torch.float64, requires_grad=True)
    y_full, state_full = layer(x)
    y_pieces, state_pieces = run_in_pieces(layer, x, [1, 8, 17])
    assert_close("y", y_pieces, y_full, 1e-12)
    for name, a, e in zip(state_full._fields, state_pieces, state_full):
        assert_close(name, a, e, 1e-12)
    inputs = [x, *layer.parameters()]
    for i, (a, e) in enumerate(zip(torch.autograd.grad(loss_of(y_pieces, state_pieces), inputs),
                                   torch.autograd.grad(loss_of(y_full, state_full), inputs))):
        assert_close(f"gradient {i}", a, e, 1e-11)
        assert a.abs().sum() > 0, f"gradient {i} of {kind} is zero: a slow parameter is not used"


@pytest.mark.parametrize("beta_activation,learned_initial_r", [("sigmoid", False), ("2sigmoid", True)])
def test_the_delta_rnn_layer_maps_its_projections_as_the_authors(beta_activation, learned_initial_r):
    """The layer's output against a float64 loop written here: per head, the projection's pieces
    [q, k, v, beta, rk, rv, rbeta] (5d + 2), q and k through elu + 1 normalised to sum 1, the rates
    through a sigmoid (or twice it), R's key through a softmax; W and R (from zeros, or from the
    learned R_0) written by the delta rule, and y_t = R_t softmax(y_{t-1}) + W_t q_t."""
    torch.manual_seed(0)
    B, T, H, d = 2, 6, 2, 4
    layer = RecurrentFWPLayer(H * d, H, kind="delta_rnn", backend="reference", beta_activation=beta_activation,
                              learned_initial_r=learned_initial_r).double()
    x = torch.randn(B, T, H * d, dtype=torch.float64)
    q, k, v, beta, rk, rv, rbeta = layer.in_proj(x).view(B, T, H, -1).split([d, d, d, 1, d, d, 1], -1)
    scale = 2.0 if beta_activation == "2sigmoid" else 1.0

    outputs = torch.zeros(B, T, H, d, dtype=torch.float64)
    for b in range(B):
        for h in range(H):
            W, y = torch.zeros(d, d, dtype=torch.float64), torch.zeros(d)
            # the op stores R keys x values: the loop's R (values x keys) is its transpose
            R = layer.initial_r[h].T if learned_initial_r else torch.zeros(d, d, dtype=torch.float64)
            for t in range(T):
                key, r_key = elu_sum_one(k[b, t, h]), rk[b, t, h].softmax(0)
                W = W + scale * beta[b, t, h].sigmoid() * torch.outer(v[b, t, h] - W @ key, key)
                R = R + scale * rbeta[b, t, h].sigmoid() * torch.outer(rv[b, t, h] - R @ r_key, r_key)
                y = R @ y.double().softmax(0) + W @ elu_sum_one(q[b, t, h])
                outputs[b, t, h] = y
    expected = layer.out_proj(outputs.reshape(B, T, H * d))
    assert_close("y", layer(x)[0], expected, 1e-12)


def test_the_delta_lstm_layer_takes_the_rate_map_and_a_learned_initial_r():
    """delta_lstm with rates in (0, 2) and R_0 learned equals its op fed twice the sigmoid and an
    initial state whose R is R_0 for every sequence (W, h, c zeros); R_0 gets a gradient."""
    torch.manual_seed(0)
    B, T, H, d = 2, 5, 2, 4
    layer = RecurrentFWPLayer(H * d, H, kind="delta_lstm", backend="reference", beta_activation="2sigmoid",
                              learned_initial_r=True).double()
    x = torch.randn(B, T, H * d, dtype=torch.float64)
    q, k, v, beta, rk, rv, rbeta = layer.in_proj(x).view(B, T, H, -1).split([3 * d] * 3 + [3] + [3 * d] * 2 + [3], -1)
    gates = [t.unflatten(-1, (3, d)) for t in (q, k, v, rk, rv)]
    zeros = torch.zeros(B, H, d, dtype=torch.float64)
    start = DeltaLSTMState(torch.zeros(B, H, 3, d, d, dtype=torch.float64),
                           layer.initial_r.expand(B, H, 3, d, d), zeros, zeros)
    y, _ = delta_lstm(elu_sum_one(gates[0]), elu_sum_one(gates[1]), gates[2], 2 * beta.sigmoid(),
                      gates[3].softmax(-1), gates[4], 2 * rbeta.sigmoid(), initial_state=start)
    output = layer(x)[0]
    assert_close("y", output, layer.out_proj(y.reshape(B, T, H * d)), 1e-12)
    (gradient,) = torch.autograd.grad(output.square().sum(), [layer.initial_r])
    assert gradient.abs().sum() > 0


def elu_sum_one(t):
    """elu + 1, normalised to sum 1 over the last dim."""
    return (F.elu(t) + 1) / (F.elu(t) + 1).sum(-1, keepdim=True)


@pytest.mark.parametrize("kind", ["delta_lstm", "recurrent_delta", "delta_mlp", "delta_delta"])
def test_each_layer_feeds_its_op_the_authors_maps(kind):
    """Per head, the projection's pieces in the op's order, with keys and queries of matrices
    written from the input through elu + 1 normalised to sum 1, R's keys through a softmax, rates
    through a sigmoid, values as projected (the Delta MLP's query raw, the recurrent Delta's maps
    inside its op); the ops themselves are checked against their equations in tests/ops."""
    torch.manual_seed(0)
    B, T, H, d, n, hidden = 2, 5, 2, 4, 2, 6
    layer = RecurrentFWPLayer(H * d, H, kind=kind, fast_layers=n, fast_hidden=hidden, backend="reference").double()
    x = torch.randn(B, T, H * d, dtype=torch.float64)
    pieces = layer.in_proj(x).view(B, T, H, -1)
    if kind == "delta_lstm":  # [q, k, v, beta, rk, rv, rbeta], three gates each
        q, k, v, beta, rk, rv, rbeta = pieces.split([3 * d, 3 * d, 3 * d, 3, 3 * d, 3 * d, 3], -1)
        gates = [t.unflatten(-1, (3, d)) for t in (q, k, v, rk, rv)]
        y, _ = delta_lstm(elu_sum_one(gates[0]), elu_sum_one(gates[1]), gates[2], beta.sigmoid(),
                          gates[3].softmax(-1), gates[4], rbeta.sigmoid())
    elif kind == "recurrent_delta":
        q, k, v, beta = pieces.split([d, d, d, 1], -1)
        y, _ = recurrent_delta(q, k, v, beta[..., 0], layer.recurrent)
    elif kind == "delta_mlp":
        q, k1, v1, beta1, k2, v2, beta2 = pieces.split([d, n * d, n * hidden, n, n * hidden, n * d, n], -1)
        y, _ = delta_mlp(q, elu_sum_one(k1.unflatten(-1, (n, d))), v1.unflatten(-1, (n, hidden)), beta1.sigmoid(),
                         elu_sum_one(k2.unflatten(-1, (n, hidden))), v2.unflatten(-1, (n, d)), beta2.sigmoid())
    else:
        q, k, v, beta = pieces.split([d, d, 3 * d + 1, 1], -1)
        y, _ = delta_delta(elu_sum_one(q), elu_sum_one(k), v, beta[..., 0].sigmoid())
    assert_close("y", layer(x)[0], layer.out_proj(y.reshape(B, T, H * d)), 1e-12)


@pytest.mark.parametrize("kind", ["delta_rnn", "recurrent_delta"])
def test_recomputing_layer_matches(kind):
    torch.manual_seed(0)
    layer = RecurrentFWPLayer(16, 2, kind=kind).double()
    x = torch.randn(2, 19, 16, dtype=torch.float64)
    y, _ = layer(x)
    layer.recompute = 5
    y_recomputed, _ = layer(x)
    assert_close("y", y_recomputed, y, 1e-14)
    grads = torch.autograd.grad(layer(x)[0].square().sum(), list(layer.parameters()))
    layer.recompute = None
    for a, e in zip(grads, torch.autograd.grad(layer(x)[0].square().sum(), list(layer.parameters()))):
        assert_close("gradient", a, e, 1e-12)


def test_bad_kind_and_options():
    with pytest.raises(ValueError, match="Unknown recurrent FWP 'delta_gru'. Valid: delta_rnn"):
        RecurrentFWPLayer(16, 2, kind="delta_gru")
    from metafwp.nn import build_mixer
    with pytest.raises(ValueError, match="mixer 'recurrent_delta' takes none of beta_activation"):
        build_mixer("recurrent_delta", 16, num_heads=2, beta_activation="2sigmoid")
    with pytest.raises(ValueError, match="beta_activation and learned_initial_r are options of delta_rnn and "
                                         "delta_lstm, not of delta_mlp"):
        RecurrentFWPLayer(16, 2, kind="delta_mlp", learned_initial_r=True)
    with pytest.raises(ValueError, match="Unknown beta_activation 'relu'. Valid: sigmoid, 2sigmoid"):
        RecurrentFWPLayer(16, 2, kind="delta_rnn", beta_activation="relu")
    with pytest.raises(ValueError, match="compile_loop is an option of delta_rnn, delta_lstm, recurrent_delta "
                                         r"\(their time loops\), not of delta_delta"):
        RecurrentFWPLayer(16, 2, kind="delta_delta", compile_loop=True)


def test_a_rate_option_the_mixer_cannot_take_is_a_config_error():
    from metafwp.train import ConfigError, load_config
    from tests.helpers import ROOT
    with pytest.raises(ConfigError, match="model.learned_initial_r is not read with model.kind=sequence, "
                                          "model.mixer=delta_mlp; remove it"):
        load_config(ROOT / "recipes/regression_linear.yaml", ["model.mixer=delta_mlp", "model.learned_initial_r=true"])
    config = load_config(ROOT / "recipes/expressivity_parity.yaml", ["model.mixer=delta_lstm",
                                                                     "model.learned_initial_r=true"])
    assert (config.model.beta_activation, config.model.learned_initial_r) == ("2sigmoid", True)  # the recipe's rates
