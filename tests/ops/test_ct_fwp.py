"""Continuous-time learning rules against independent references (float64): each vector field
against its formula written here per head; one Euler step of size 1 on constant inputs equals
metafwp's discrete delta rule; the delta field on constant inputs integrates to its closed form;
the natural cubic spline against scipy's and its defining properties; adjoint gradients against
backpropagation through the solver, converging as the step halves, in memory that does not grow
with the number of steps; bad input."""
import numpy as np
import pytest
import scipy.interpolate
import torch

from metafwp.ops import (LearningRuleField, NaturalCubicSpline, fast_weight, rule_field, solve_ode,
                         write_term)
from tests.helpers import assert_close


def raw(B=2, H=3, d=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(B, H, d, d, generator=gen, dtype=torch.float64)
    k, v = (torch.randn(B, H, d, generator=gen, dtype=torch.float64) for _ in range(2))
    return W, k, v, torch.randn(B, H, generator=gen, dtype=torch.float64)


def softmax(x):
    e = [np.exp(float(a)) for a in x]
    return torch.tensor([a / sum(e) for a in e], dtype=torch.float64)


def sigmoid(x):
    return 1 / (1 + np.exp(-float(x)))


@pytest.mark.parametrize("rule", ["hebb", "oja", "delta"])
def test_each_field_is_its_formula(rule):
    W, k, v, b = raw()
    ours = rule_field(rule, W, k, v, b)
    for n in range(2):
        for h in range(3):
            w, value, beta = W[n, h], torch.tanh(v[n, h]), sigmoid(b[n, h])
            if rule == "hebb":
                expected = beta * torch.outer(value, softmax(k[n, h]))
            elif rule == "oja":
                expected = torch.outer(value, beta * softmax(k[n, h] - w.T @ value))
            else:
                key = softmax(k[n, h])
                expected = beta * torch.outer(value - w @ key, key)
            assert_close(f"{rule} head {h}", ours[n, h], expected, 1e-13)
    assert_close("write term", write_term(k, v, b), rule_field("hebb", W, k, v, b), 0)


def test_one_euler_step_of_the_delta_field_is_the_discrete_delta_rule():
    W, k, v, b = raw()
    key, value, beta = torch.softmax(k, -1), torch.tanh(v), torch.sigmoid(b)
    inputs = [t.unsqueeze(1) for t in (key, key, value)]   # [B, 1, H, d]: one step
    _, discrete = fast_weight(*inputs, rule="delta", beta=beta[:, None], initial_state=W.transpose(-1, -2),
                              output_final_state=True, backend="reference")
    stepped = solve_ode(lambda t, w: rule_field("delta", w, k, v, b), W, torch.tensor([0.0, 1.0]).double(),
                        method="euler")[-1]
    assert_close("Euler step = discrete delta", stepped, discrete.transpose(-1, -2), 1e-13)


def test_the_delta_field_on_constant_inputs_integrates_to_its_closed_form():
    W, k, v, b = raw()
    times = torch.linspace(0, 3, 4, dtype=torch.float64)
    solved = solve_ode(lambda t, w: rule_field("delta", w, k, v, b), W, times, step_size=0.01)
    key, value, beta = torch.softmax(k, -1), torch.tanh(v), torch.sigmoid(b)
    norm = (key * key).sum(-1)                                                    # |k~|^2
    for t, W_t in zip(times, solved):
        # d/dt (W k~) = beta |k~|^2 (v~ - W k~): the error decays as exp(-beta |k~|^2 t), along k~
        factor = ((1 - torch.exp(-beta * norm * t)) / norm)[..., None, None]
        expected = W + factor * (value - (W @ key[..., None])[..., 0])[..., :, None] * key[..., None, :]
        assert_close(f"t={float(t)}", W_t, expected, 1e-9)


def observations(B=2, T=9, C=3, seed=0, drop=0.3):
    gen = torch.Generator().manual_seed(seed)
    times = torch.cumsum(0.5 + torch.rand(T, generator=gen, dtype=torch.float64), 0)
    values = torch.randn(B, T, C, generator=gen, dtype=torch.float64)
    missing = torch.rand(B, T, C, generator=gen) < drop
    missing[:, min(3, T - 1)] = False
    return times, values.masked_fill(missing, float("nan"))


def test_the_spline_is_scipys_natural_spline_through_the_observations_held_at_the_ends():
    times, values = observations()
    spline = NaturalCubicSpline(times, values)
    for n in range(2):
        for c in range(3):
            seen = torch.isfinite(values[n, :, c])
            knots, y = times[seen].numpy(), values[n, seen, c].numpy()
            oracle = scipy.interpolate.CubicSpline(knots, y, bc_type="natural")
            for t in np.linspace(float(times[0]), float(times[-1]), 41):
                inside = knots[0] <= t <= knots[-1]
                expected = oracle(t) if inside else (y[0] if t < knots[0] else y[-1])
                slope = oracle(t, 1) if inside else 0.0
                assert spline.evaluate(t)[n, c].item() == pytest.approx(float(expected), abs=1e-11)
                if not np.isclose(t, knots).any():
                    assert spline.derivative(t)[n, c].item() == pytest.approx(float(slope), abs=1e-10)
            assert oracle(knots[0], 2) == pytest.approx(0, abs=1e-12)  # the oracle is natural, as ours is
    observed = torch.isfinite(values)
    at_knots = torch.stack([spline.evaluate(t) for t in times], 1)
    assert torch.allclose(at_knots[observed], values[observed], atol=1e-12)
    step = 1e-6
    for t in (float(times[2]) + 0.1, float(times[6]) - 0.2):
        finite_difference = (spline.evaluate(t + step) - spline.evaluate(t - step)) / (2 * step)
        assert torch.allclose(spline.derivative(t), finite_difference, atol=1e-7)


def second_derivative_at(spline, t, step=1e-4):
    return (spline.evaluate(t + step) - 2 * spline.evaluate(t) + spline.evaluate(t - step)) / step**2


def test_the_spline_has_no_curvature_at_its_ends():
    times, values = observations(drop=0.0)
    spline = NaturalCubicSpline(times, values)
    assert spline.coefficients[2, :, 0].abs().max() < 1e-12          # c = f''/2 at the first knot
    last = spline.coefficients[:, :, -1]
    h = float(times[-1] - times[-2])
    assert (2 * last[2] + 6 * last[3] * h).abs().max() < 1e-10       # f'' at the last knot


def field_and_path(cde, seed=0, T=6):
    """A field on a spline path observed at t = 0, 1, .., T - 1: the solver's steps (0.2, 0.1, ...)
    never straddle a knot, where the path's third derivative jumps and rk4 would lose its order."""
    torch.manual_seed(seed)
    field = LearningRuleField(3, 8, 2, rule="delta", cde=cde).double()
    _, values = observations(T=T, drop=0.0, seed=seed)
    times = torch.arange(T, dtype=torch.float64)
    return field.read(NaturalCubicSpline(times, values)), times


@pytest.mark.parametrize("cde", [False, True])
def test_adjoint_gradients_converge_to_backpropagation_through_the_solver(cde):
    field, times = field_and_path(cde, T=4)
    target = torch.randn(2, 32, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    parameters = tuple(field.parameters())

    def gradients(step, adjoint):
        W = solve_ode(field, field.initial(times[0]), times, step_size=step, adjoint=adjoint,
                  parameters=parameters, rtol=1e-12, atol=1e-12)
        return torch.cat([g.flatten() for g in torch.autograd.grad((W[-1] * target).sum(), parameters)])

    gaps = []
    for step in (0.2, 0.1):
        direct, adjoint = gradients(step, False), gradients(step, True)
        gaps.append(((adjoint - direct).norm() / direct.norm()).item())
    assert gaps[0] < 1e-4 and gaps[1] < gaps[0] / 8, gaps


def saved_elements(function) -> int:
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        function()
    return total


def test_the_adjoint_keeps_the_same_memory_however_many_steps():
    field, times = field_and_path(True, T=3)
    parameters = tuple(field.parameters())
    W0 = field.initial(times[0]).detach()

    def solve(step, adjoint):
        return lambda: solve_ode(field, W0, times, step_size=step, adjoint=adjoint, parameters=parameters)

    assert saved_elements(solve(0.25, True)) == saved_elements(solve(0.05, True))
    assert saved_elements(solve(0.05, False)) > 4 * saved_elements(solve(0.25, False))


def test_bad_input():
    with pytest.raises(ValueError, match="Unknown continuous-time rule 'lms'"):
        LearningRuleField(3, 8, 2, rule="lms")
    with pytest.raises(ValueError, match="the CDE form is the authors' delta_cde"):
        LearningRuleField(3, 8, 2, rule="hebb", cde=True)
    with pytest.raises(ValueError, match="times must increase strictly"):
        NaturalCubicSpline(torch.tensor([0.0, 1.0, 1.0]), torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match="adjoint=True needs the tensors the field reads"):
        solve_ode(lambda t, w: w, torch.zeros(2), torch.tensor([0.0, 1.0]), adjoint=True)
    with pytest.raises(ValueError, match="Unknown ODE solver 'rk45'. Valid: euler"):
        solve_ode(lambda t, w: w, torch.zeros(2), torch.tensor([0.0, 1.0]), method="rk45")
    with pytest.raises(ValueError, match="step_size must be > 0"):
        solve_ode(lambda t, w: w, torch.zeros(2), torch.tensor([0.0, 1.0]), step_size=0.0)
    with pytest.raises(ValueError, match="times must be a strictly increasing"):
        solve_ode(lambda t, w: w, torch.zeros(2), torch.tensor([0.0, 1.0, 0.5]))
    values = torch.zeros(2, 3, 2)
    values[1] = float("nan")
    with pytest.raises(ValueError, match="sequence 1 of the batch has no observed point"):
        NaturalCubicSpline(torch.tensor([0.0, 1.0, 2.0]), values)
