"""The SRWM op against a per-sequence, per-block loop written here from the equations (docs/protocols.md section 2)."""
import pytest
import torch

from metafwp.ops import srwm, srwm_columns
from tests.helpers import assert_close, gradients


def srwm_from_equations(x, W0):
    """One sequence and head at a time, the four column blocks updated one by one."""
    B, T, H, D = x.shape
    ys = torch.zeros(B, T, H, D, dtype=x.dtype)
    finals = []
    for b in range(B):
        for h in range(H):
            W = W0[h] if W0.ndim == 3 else W0[b, h]
            for t in range(T):
                read = x[b, t, h] @ W
                y, q, k, rates = read[:D], read[D:2 * D].softmax(0), read[2 * D:3 * D].softmax(0), read[3 * D:].sigmoid()
                blocks = W.split([D, D, D, 4], dim=1)  # y | q | k | beta
                W = torch.cat([block + rates[i] * torch.outer(k, q @ block - k @ block)
                               for i, block in enumerate(blocks)], dim=1)
                ys = ys.index_put((torch.tensor(b), torch.tensor(t), torch.tensor(h)), y)
            finals.append(W)
    return ys, torch.stack(finals).view(B, H, D, srwm_columns(D))


@pytest.mark.parametrize("per_sequence", [False, True], ids=["shared-W0", "per-sequence-W0"])
@pytest.mark.parametrize("shape", [(2, 1, 2, 4), (2, 9, 3, 8), (1, 20, 2, 16)], ids=lambda s: "B{}-T{}-H{}-D{}".format(*s))
def test_srwm_matches_equations(shape, per_sequence):
    B, T, H, D = shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, H, D, generator=gen, dtype=torch.float64, requires_grad=True)
    W_shape = (B, H, D, srwm_columns(D)) if per_sequence else (H, D, srwm_columns(D))
    W0 = (torch.randn(W_shape, generator=gen, dtype=torch.float64) / D ** 0.5).requires_grad_()
    y, W = srwm(x, W0, output_final_state=True)
    y_ref, W_ref = srwm_from_equations(x, W0)
    assert W.shape == (B, H, D, srwm_columns(D))
    assert_close("y", y, y_ref, 1e-12)
    assert_close("final W", W, W_ref, 1e-12)
    dy, dW = torch.randn(y.shape, generator=gen, dtype=y.dtype), torch.randn(W.shape, generator=gen, dtype=W.dtype)
    for name, a, e in zip(["dx", "dW0"], gradients([(y, dy), (W, dW)], [x, W0]),
                          gradients([(y_ref, dy), (W_ref, dW)], [x, W0])):
        assert_close(name, a, e, 1e-11)


def test_srwm_reads_before_the_update():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 2, 4, generator=gen)
    W0 = torch.randn(2, 4, srwm_columns(4), generator=gen)
    y, W = srwm(x, W0, output_final_state=True)
    torch.testing.assert_close(y[:, 0], torch.einsum("bhd,hde->bhe", x[:, 0], W0[..., :4]))
    assert not torch.allclose(W, W0.expand_as(W))


def test_srwm_state_carry_is_exact():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 12, 2, 8, generator=gen, dtype=torch.float64)
    W0 = torch.randn(2, 8, srwm_columns(8), generator=gen, dtype=torch.float64)
    y, W = srwm(x, W0, output_final_state=True)
    y1, W1 = srwm(x[:, :5], W0, output_final_state=True)
    y2, W2 = srwm(x[:, 5:], W1, output_final_state=True)
    assert_close("y", torch.cat([y1, y2], 1), y, 1e-14)
    assert_close("W", W2, W, 1e-14)


def test_srwm_half_precision_keeps_float32_state():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 2, 8, generator=gen)
    W0 = torch.randn(2, 8, srwm_columns(8), generator=gen) / 8 ** 0.5
    y, W = srwm(x.bfloat16(), W0.bfloat16(), output_final_state=True)
    y_ref, _ = srwm(x.bfloat16().float(), W0.bfloat16().float(), output_final_state=True)
    assert y.dtype == torch.bfloat16 and W.dtype == torch.float32
    assert_close("y", y, y_ref, 1e-2)


def test_srwm_takes_a_float32_state_with_half_inputs():
    """Under bf16 autocast x arrives in bf16 while W0 (a parameter) and the carried state are float32."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 2, 4, generator=gen)
    W0 = torch.randn(2, 4, srwm_columns(4), generator=gen, requires_grad=True)
    y, W = srwm(x.bfloat16(), W0, output_final_state=True)
    y_ref, W_ref = srwm(x.bfloat16().float(), W0, output_final_state=True)
    assert y.dtype == torch.bfloat16 and W.dtype == torch.float32
    assert_close("y", y, y_ref, 1e-2)
    assert_close("W", W, W_ref, 1e-6)
    (grad,) = torch.autograd.grad(y.float().sum(), W0)
    assert grad.dtype == torch.float32
    y_next, _ = srwm(x.bfloat16(), W, output_final_state=True)
    assert y_next.dtype == torch.bfloat16
