"""The e-LSTM against a loop written from its equations, and its exact RTRL against backpropagation
through time (float64): every recurrent parameter's gradient at T = 1, 7, 70, the authors' gradient
test, the layer's RTRL steps (readout and one-step input gradients by autograd), and memory that
does not grow with T."""
import pytest
import torch

from metafwp.nn import MIXERS, ELSTMLayer, ELSTMRTRL, build_mixer
from metafwp.ops import ELSTMSensitivities, elstm
from tests.helpers import assert_close


def elstm_by_hand(x, W_z, W_f, b_z, b_f, w_z, w_f, W_o, b_o, c0):
    """One sequence at a time: z, f, c from the equations, then y = c * sigmoid(W_o [x; c] + b_o)."""
    ys, cs = [], []
    for b in range(x.shape[0]):
        c, y_seq, c_seq = c0[b], [], []
        for t in range(x.shape[1]):
            z = torch.tanh(W_z @ x[b, t] + b_z + w_z * c)
            f = torch.sigmoid(W_f @ x[b, t] + b_f + w_f * c)
            c = f * c + (1 - f) * z
            y_seq.append(c * torch.sigmoid(W_o @ torch.cat([x[b, t], c]) + b_o))
            c_seq.append(c)
        ys.append(torch.stack(y_seq))
        cs.append(torch.stack(c_seq))
    return torch.stack(ys), torch.stack(cs)


@pytest.mark.parametrize("cells", [None, 11])
def test_the_layer_is_the_equations(cells):
    """With H = d cells the readout is the stream; with H != d it is mapped back by ``out_proj``."""
    torch.manual_seed(0)
    layer = ELSTMLayer(6, cells).double()
    H = cells or 6
    x, c0 = torch.randn(3, 9, 6, dtype=torch.float64), torch.randn(3, H, dtype=torch.float64)
    W_z, W_f = layer.in_proj.weight.chunk(2)
    b_z, b_f = layer.in_proj.bias.chunk(2)
    expected, cells = elstm_by_hand(x, W_z, W_f, b_z, b_f, layer.w_z, layer.w_f, layer.out_gate.weight,
                                    layer.out_gate.bias, c0)
    if layer.out_proj is not None:
        expected = expected @ layer.out_proj.weight.T + layer.out_proj.bias
    y, c_last = layer(x, c0)
    assert_close("y", y, expected, 1e-13)
    assert_close("c_T", c_last, cells[:, -1], 1e-13)
    pieces = torch.cat([layer(x[:, :4], c0)[0], layer(x[:, 4:], layer(x[:, :4], c0)[1])[0]], 1)
    assert_close("y in two calls", pieces, y, 1e-14)
    assert "elstm" in MIXERS and isinstance(build_mixer("elstm", 6), ELSTMLayer)


def test_the_authors_gradient_test_passes():
    """I = 3, H = 5, T = 70, B = 10, parameters U(0, 1), c_0 = 0.5, loss 10 sum_t sum c_t: the RTRL
    gradients equal autograd's within 1e-4 relative per entry (here to float64 precision)."""
    gen = torch.Generator().manual_seed(0)
    I, H, T, B = 3, 5, 70, 10
    params = {name: torch.rand(*shape, generator=gen, dtype=torch.float64, requires_grad=True)
              for name, shape in (("W_z", (H, I)), ("W_f", (H, I)), ("w_z", (H,)), ("w_f", (H,)), ("b_z", (H,)),
                                  ("b_f", (H,)))}
    x = torch.rand(B, T, I, generator=gen, dtype=torch.float64)
    c0 = torch.full((B, H), 0.5, dtype=torch.float64)
    a_z, a_f = x @ params["W_z"].T + params["b_z"], x @ params["W_f"].T + params["b_f"]
    c, _ = elstm(a_z, a_f, params["w_z"], params["w_f"], c0)
    bptt = torch.autograd.grad(10 * c.sum(), list(params.values()))
    sensitivities = ELSTMSensitivities.zeros(B, H, I, x)
    rtrl = {name: torch.zeros_like(p) for name, p in params.items()}
    c_prev = c0
    with torch.no_grad():
        for t in range(T):
            z = torch.tanh(a_z[:, t] + params["w_z"] * c_prev)
            f = torch.sigmoid(a_f[:, t] + params["w_f"] * c_prev)
            sensitivities.update(x[:, t], c_prev, z, f, params["w_z"], params["w_f"])
            c_prev = f * c_prev + (1 - f) * z
            for name, gradient in sensitivities.gradients(torch.full((B, H), 10.0, dtype=torch.float64)).items():
                rtrl[name] += gradient
    for (name, ours), theirs in zip(rtrl.items(), bptt):
        assert ((ours - theirs).abs() / theirs.abs().clamp_min(1e-12)).max() < 1e-10, name


def rtrl_and_bptt(T: int, seed: int = 0, cells: int | None = None):
    """The gradients of ``sum_t loss_t(y_t)`` on one e-LSTM layer (width 5, ``cells``), by BPTT and by RTRL steps."""
    torch.manual_seed(seed)
    layer = ELSTMLayer(5, cells).double()
    x = torch.randn(4, T, 5, dtype=torch.float64)
    targets = torch.randn(4, T, 5, dtype=torch.float64)
    y, _ = layer(x)
    bptt = torch.autograd.grad((y - targets).square().sum(), list(layer.parameters()))
    learner = ELSTMRTRL(layer, batch_size=4)
    for t in range(T):
        (learner.step(x[:, t]) - targets[:, t]).square().sum().backward()
        learner.accumulate()
    return layer, bptt, learner


@pytest.mark.parametrize("T,cells", [(1, None), (7, None), (70, None), (7, 12)])
def test_rtrl_over_a_sequence_equals_backpropagation_through_time(T, cells):
    layer, bptt, _ = rtrl_and_bptt(T, cells=cells)
    for (name, parameter), expected in zip(layer.named_parameters(), bptt):
        assert_close(name, parameter.grad, expected, 1e-11)


def test_rtrl_memory_does_not_grow_with_the_sequence():
    kept = {T: rtrl_and_bptt(T, cells=12)[2].sensitivities.numel() for T in (50, 500)}
    assert kept[50] == kept[500] == 4 * (2 * 12 * 5 + 4 * 12)                  # B (2 H I + 4 H)


def test_rtrl_gives_the_inputs_one_step_of_gradient():
    """Layers below an RTRL layer get dL_t/dx_t through the step alone (truncated)."""
    torch.manual_seed(1)
    layer = ELSTMLayer(4).double()
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    learner = ELSTMRTRL(layer, batch_size=2)
    for t in range(3):
        learner.step(x[:, t]).sum().backward()
    c_prev = torch.zeros(2, 4, dtype=torch.float64)  # the step at t = 2 by hand, the state held constant
    with torch.no_grad():
        for t in range(2):
            a_z, a_f = layer.in_proj(x[:, t]).chunk(2, -1)
            z, f = torch.tanh(a_z + layer.w_z * c_prev), torch.sigmoid(a_f + layer.w_f * c_prev)
            c_prev = f * c_prev + (1 - f) * z
    x2 = x[:, 2].detach().requires_grad_()
    a_z, a_f = layer.in_proj(x2).chunk(2, -1)
    z, f = torch.tanh(a_z + layer.w_z * c_prev), torch.sigmoid(a_f + layer.w_f * c_prev)
    c = f * c_prev + (1 - f) * z
    (expected,) = torch.autograd.grad(layer.readout(x2, c).sum(), x2)
    assert_close("dL_2/dx_2", x.grad[:, 2], expected, 1e-12)
