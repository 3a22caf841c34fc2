"""Weights in compressed (DCT) space, against scipy's orthonormal DCT, the authors' selection rule
written here from its description, torch's LSTM and a float64 loop of the fast-weight DCT RNN."""
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.fft
import torch
import torch.nn as nn

from metafwp.nn.dct_layers import DCTLSTM, DCTLinear, FastDCTRNN
from metafwp.ops.dct import coefficients_to_weight, dct_2d, dct_matrix, idct_2d, kept_coefficients, \
    weight_to_coefficients


def authors_kept_set(out_features, in_features, sparsity):
    """Their rule (``get_sparse_config``, then the columns flipped): thr = int(out * in * (1 - s));
    the first diagonal offset d >= 0 whose upper triangle holds fewer than thr entries; if that is
    d = 0, lower d while the triangle holds at most thr."""
    def count(d):
        return len(np.triu_indices(out_features, d, in_features)[0])
    thr = int(out_features * in_features * (1 - sparsity))
    d = 0
    while d < in_features - 1 and count(d) >= thr:
        d += 1
    if d == 0:
        while d - 1 > -out_features and count(d - 1) <= thr:
            d -= 1
    rows, cols = np.triu_indices(out_features, d, in_features)
    return rows, in_features - 1 - cols


def test_the_dct_matrix_and_the_2d_transforms_equal_scipys_orthonormal_dct():
    for n in (1, 2, 7, 16):
        assert np.allclose(dct_matrix(n, torch.float64).numpy(), scipy.fft.dct(np.eye(n), norm="ortho", axis=0),
                           atol=1e-13)
    weight = torch.randn(2, 11, 9, dtype=torch.float64)
    assert np.allclose(dct_2d(weight).numpy(), scipy.fft.dctn(weight.numpy(), axes=(-2, -1), norm="ortho"), atol=1e-12)
    assert np.allclose(idct_2d(weight).numpy(), scipy.fft.idctn(weight.numpy(), axes=(-2, -1), norm="ortho"),
                       atol=1e-12)


@pytest.mark.parametrize("shape", [(11, 9), (9, 11), (16, 16), (1, 5), (5, 1)])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.8, 0.9, 0.99])
def test_the_kept_coefficients_follow_the_authors_rule(shape, sparsity):
    if int(shape[0] * shape[1] * (1 - sparsity)) < 1:
        with pytest.raises(ValueError, match="leaves int"):
            kept_coefficients(*shape, sparsity)
        return
    rows, cols = kept_coefficients(*shape, sparsity)
    expected_rows, expected_cols = authors_kept_set(*shape, sparsity)
    assert rows.tolist() == expected_rows.tolist() and cols.tolist() == expected_cols.tolist()
    assert len(set(zip(rows.tolist(), cols.tolist()))) == rows.numel()
    low_frequency = (rows + cols).max()  # a triangle cut by an anti-diagonal: every r + c up to the cut is kept
    assert rows.numel() == sum(1 for r in range(shape[0]) for c in range(shape[1]) if r + c <= low_frequency)


def test_at_zero_sparsity_the_round_trip_is_exact_and_sparser_weights_are_low_pass_projections():
    weight = torch.randn(11, 9, dtype=torch.float64)
    rows, cols = kept_coefficients(11, 9, 0.0)
    assert rows.numel() == 99
    assert torch.allclose(coefficients_to_weight(weight_to_coefficients(weight, rows, cols), rows, cols, (11, 9)),
                          weight, atol=1e-12)
    rows, cols = kept_coefficients(11, 9, 0.8)
    spectrum = scipy.fft.dctn(weight.numpy(), norm="ortho")
    mask = np.zeros_like(spectrum)
    mask[rows.numpy(), cols.numpy()] = 1
    projected = coefficients_to_weight(weight_to_coefficients(weight, rows, cols), rows, cols, (11, 9))
    assert np.allclose(projected.numpy(), scipy.fft.idctn(spectrum * mask, norm="ortho"), atol=1e-12)


def test_dct_linear_computes_its_idct_weight_and_passes_gradcheck():
    torch.manual_seed(0)
    layer = DCTLinear(9, 11, sparsity=0.8).double()
    x = torch.randn(3, 9, dtype=torch.float64, requires_grad=True)
    rows, cols = authors_kept_set(11, 9, 0.8)
    spectrum = np.zeros((11, 9))
    spectrum[rows, cols] = layer.weight.coefficients.detach().numpy()
    expected = x.detach().numpy() @ scipy.fft.idctn(spectrum, norm="ortho").T + layer.bias.detach().numpy()
    assert np.allclose(layer(x).detach().numpy(), expected, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x, c, b: x @ coefficients_to_weight(c, layer.weight.rows, layer.weight.cols,
                                                                                 (11, 9)).T + b,
                                    (x, layer.weight.coefficients, layer.bias))
    bound = 1 / 11 ** 0.5  # the authors' init: a low-pass filtered U(-1/sqrt(out), 1/sqrt(out)) matrix
    assert layer.weight().abs().max() < 2 * bound and layer.weight.coefficients.numel() == rows.size


def test_dct_lstm_equals_torchs_lstm_with_its_materialised_weights():
    torch.manual_seed(1)
    lstm = DCTLSTM(5, 7, sparsity=0.5).double()
    peer = nn.LSTM(5, 7, batch_first=True).double()
    with torch.no_grad():
        peer.weight_ih_l0.copy_(torch.cat([w() for w in lstm.ih]))
        peer.weight_hh_l0.copy_(torch.cat([w() for w in lstm.hh]))
        peer.bias_ih_l0.copy_(lstm.bias)
        peer.bias_hh_l0.zero_()
    x = torch.randn(2, 6, 5, dtype=torch.float64)
    ours, (h, c) = lstm(x)
    theirs, (h_peer, c_peer) = peer(x)
    assert torch.allclose(ours, theirs, atol=1e-12) and torch.allclose(c, c_peer[0], atol=1e-12)
    first, state = lstm(x[:, :4])
    rest, _ = lstm(x[:, 4:], state)
    assert torch.allclose(torch.cat([first, rest], 1), ours, atol=1e-12)


def test_the_fast_dct_rnn_equals_its_equations_in_a_float64_loop():
    torch.manual_seed(2)
    B, T, n_in, H = 2, 5, 6, 8
    rnn = FastDCTRNN(n_in, H, sparsity_ih=0.5, sparsity_hh=0.7).double()
    with torch.no_grad():
        rnn.coef_scaler.uniform_(0.5, 1.5)
    x = torch.randn(B, T, n_in, dtype=torch.float64)
    coefficients = (rnn.slow(x)[0] * rnn.coef_scaler).detach().numpy()  # the slow LSTM's outputs, scaled
    ih, hh = authors_kept_set(H, n_in, 0.5), authors_kept_set(H, H, 0.7)
    h = np.zeros((B, H))
    expected = []
    for t in range(T):
        pre = np.zeros((B, H))
        for b in range(B):
            c_ih, c_hh = np.zeros((H, n_in)), np.zeros((H, H))
            c_ih[ih] = coefficients[b, t, :len(ih[0])]
            c_hh[hh] = coefficients[b, t, len(ih[0]):]
            pre[b] = scipy.fft.idctn(c_ih, norm="ortho") @ x[b, t].numpy() + scipy.fft.idctn(c_hh, norm="ortho") @ h[b]
        h = np.tanh(pre + rnn.bias.detach().numpy())
        expected.append(h)
    outputs, state = rnn(x)
    assert np.allclose(outputs.detach().numpy(), np.stack(expected, 1), atol=1e-12)
    first, carried = rnn(x[:, :2])
    rest, _ = rnn(x[:, 2:], carried)
    assert torch.allclose(torch.cat([first, rest], 1), outputs, atol=1e-12)
    outputs.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in rnn.parameters())


@pytest.mark.parametrize("call, message", [
    (lambda: kept_coefficients(4, 4, 1.0), r"sparsity must be in \[0, 1\), got 1.0"),
    (lambda: kept_coefficients(4, 4, -0.1), r"sparsity must be in \[0, 1\)"),
    (lambda: kept_coefficients(2, 2, 0.9), r"leaves int\(2 \* 2 \* \(1 - 0.9\)\) = 0 DCT coefficients"),
    (lambda: DCTLinear(0, 3, 0.5), "out_features, in_features >= 1"),
])
def test_bad_settings_raise_one_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("overrides, message", [
    (["model.mixer=dct_lstm", "model.dct_sparsity=1.0"], "model.dct_sparsity must be in [0, 1) (the fraction of DCT "
                                                         "coefficients dropped), got 1.0"),
    (["model.mixer=fast_dct_rnn", "model.d_model=2", "model.num_heads=1", "model.dct_sparsity=0.9"],
     "model.dct_sparsity=0.9 leaves no DCT coefficient of a 2 x 2 matrix"),
    (["model.mixer=delta", "model.dct_sparsity=0.3"], "model.dct_sparsity"),
])
def test_bad_dct_settings_are_one_config_error(overrides, message):
    from metafwp.train import ConfigError, load_config
    recipe = Path(__file__).parents[2] / "recipes" / "expressivity_parity.yaml"
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(recipe, overrides)
