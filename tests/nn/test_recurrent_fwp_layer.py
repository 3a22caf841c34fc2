"""RecurrentFWPLayer: exact state carry through the layer (outputs, states, every gradient), every
slow parameter trained, the recomputing backward, bad names."""
import pytest
import torch

from metafwp.nn import RecurrentFWPLayer
from metafwp.ops import RECURRENT_FWPS
from tests.helpers import assert_close, run_in_pieces


def loss_of(y, state):
    gen = torch.Generator().manual_seed(1)
    return sum((x * torch.randn(x.shape, generator=gen, dtype=x.dtype)).sum() for x in (y, *state))


@pytest.mark.parametrize("backend", ["reference", "chunk"])
@pytest.mark.parametrize("kind", RECURRENT_FWPS)
def test_state_carry_is_exact(kind, backend):
    torch.manual_seed(0)
    layer = RecurrentFWPLayer(24, 3, kind=kind, fast_layers=2, backend=backend).double()
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
    with pytest.raises(ValueError, match="mixer 'delta_rnn' takes none of beta_activation"):
        build_mixer("delta_rnn", 16, num_heads=2, beta_activation="2sigmoid")
