"""Irregularly sampled row sequences and the continuous-time FWP learner: the episodes hold the
digit's rows at the kept times with their time and gap channels, over a fixed disjoint split; the
learner's logits equal a float64 computation written here (scipy's natural spline, a plain rk4
loop, the readout's formula); a tiny run tests what it reports; bad settings are refused."""
import json

import numpy as np
import pytest
import scipy.interpolate
import torch
import torch.nn.functional as F

from episodes import MNIST5k
from episodes.irregular import SPLITS_FILE, IrregularRowsSampler
from metafwp.models.ct_fwp import ContinuousTimeFWP
from metafwp.models.neural_cde import NeuralCDE
from metafwp.train import ConfigError, load_config, train
from tests.helpers import ROOT, accuracy_by_hand, learner_of

RECIPE = ROOT / "recipes/irregular_rows_ct_fwp.yaml"


@pytest.fixture(scope="module")
def digits():
    return MNIST5k()


def test_the_split_is_fixed_and_disjoint():
    split = json.loads(SPLITS_FILE.read_text())
    sizes = {name: len(split[name]) for name in ("train", "val", "test")}
    assert sizes == {"train": 4000, "val": 500, "test": 500}
    assert len(set(split["train"]) | set(split["val"]) | set(split["test"])) == 5000


def test_episodes_hold_the_kept_rows_with_their_times(digits):
    sampler = IrregularRowsSampler(digits, "test", 0.5, seed=3)
    batch = sampler.sample(range(6))
    test_digits = json.loads(SPLITS_FILE.read_text())["test"]
    assert batch.inputs.shape == (6, 14, 30)
    for b in range(6):
        times = (batch.inputs[b, :, 0] * 27).round().long().tolist()
        assert times == sorted(set(times)) and len(times) == 14
        image = digits.images[test_digits[b], 0].float() / 255
        assert torch.equal(batch.inputs[b, :, 2:], image[times])
        gaps = [t - s for s, t in zip([-1] + times[:-1], times)]
        assert torch.allclose(batch.inputs[b, :, 1] * 27, torch.tensor(gaps, dtype=torch.float32))
        assert int(batch.targets[b, -1]) == int(digits.labels[test_digits[b]]) and batch.loss_mask[b].tolist() == \
            [False] * 13 + [True]
    again = IrregularRowsSampler(digits, "test", 0.5, seed=3).sample([4])
    assert torch.equal(again.inputs[0], batch.inputs[4])
    assert not torch.equal(batch.inputs[0, :, 0], batch.inputs[1, :, 0])      # rows dropped per episode


def scipy_path(inputs_b: torch.Tensor):
    """``(path(t, order), knots)`` of one sequence ``[L, 2 + F]`` in float64: scipy's natural spline
    through its observed rows (time and features) on the grid interval ``[g, g + 1]`` holding t (the
    one to the left at a grid point, the first at 0), held (slope 0) before the first and after the
    last observation."""
    knots = (inputs_b[:, 0] * 27).round().double().numpy()
    values = torch.cat([inputs_b[:, :1], inputs_b[:, 2:]], 1).double()
    spline = scipy.interpolate.CubicSpline(knots, values.numpy(), bc_type="natural")

    def path(t, order=0):
        g = min(max(int(np.ceil(t)) - 1, 0), 26)
        if knots[0] <= g < knots[-1]:
            return torch.tensor(spline(t, order))
        held = values[0 if g < knots[0] else -1].numpy()
        return torch.tensor(held if order == 0 else np.zeros_like(held))
    return path, knots


def rk4_from_zero(f, y, end: int):
    """``y`` at ``end`` from ``y`` at 0 by torchdiffeq's rk4 (Kutta's 3/8 rule) at step 1."""
    for t in range(end):
        k1 = f(t, y)
        k2 = f(t + 1 / 3, y + k1 / 3)
        k3 = f(t + 2 / 3, y + k2 - k1 / 3)
        k4 = f(t + 1.0, y + k1 - k2 + k3)
        y = y + (k1 + 3 * k2 + 3 * k3 + k4) / 8
    return y


def ct_fwp_by_hand(model, inputs):
    """The continuous-time FWP's logits at the last observation, in float64 from the equations."""
    field, H, d = model.field, model.field.num_heads, model.field.head_dim
    logits = []
    for b in range(inputs.shape[0]):
        path, knots = scipy_path(inputs[b])

        def f(t, W):
            u = field.slow_net(field.input_norm(field.input_proj(path(t, 1)))).view(H, d + 1)
            k, beta = torch.softmax(u[:, :d], -1), torch.sigmoid(u[:, d])
            v = torch.tanh(field.value_proj(path(t)).view(H, d))
            return beta[:, None, None] * (v[:, :, None] - W @ k[:, :, None]) * k[:, None, :]

        u = field.slow_net(field.input_norm(field.input_proj(path(0.0, 1)))).view(H, d + 1)
        W = torch.sigmoid(u[:, d])[:, None, None] * torch.tanh(field.value_proj(path(0.0)).view(H, d))[:, :, None] \
            * torch.softmax(u[:, :d], -1)[:, None, :]
        end = int(knots[-1])
        W = rk4_from_zero(f, W, end)
        q = torch.softmax(model.query_net(field.input_norm(field.input_proj(path(float(end), 1)))).view(H, d), -1)
        h = model.out_proj((W @ q[:, :, None]).flatten())
        h = h + model.ff[4](F.relu(model.ff[1](model.ff[0](h))))
        logits.append(model.head(h))
    return torch.stack(logits)


def neural_cde_by_hand(model, inputs):
    """The neural CDE's logits at the last observation, in float64: z(0) = zeta(X(0)),
    dz/dt = tanh(W2 relu(W1 z + b1) + b2) reshaped [hidden, channels] times dX/dt, head(z(T))."""
    first, second = model.field.net[0], model.field.net[2]
    hidden = model.initial.out_features
    logits = []
    for b in range(inputs.shape[0]):
        path, knots = scipy_path(inputs[b])

        def f(t, z):
            matrix = torch.tanh(second.weight @ torch.relu(first.weight @ z + first.bias) + second.bias)
            return matrix.view(hidden, -1) @ path(t, 1)

        z = rk4_from_zero(f, model.initial.weight @ path(0.0) + model.initial.bias, int(knots[-1]))
        logits.append(model.head.weight @ z + model.head.bias)
    return torch.stack(logits)


LEARNERS = {"ct_fwp": (lambda: ContinuousTimeFWP(29, 28, 10, hidden=8, num_heads=2, ff_dim=6, adjoint=False),
                       ct_fwp_by_hand),
            "neural_cde": (lambda: NeuralCDE(29, 28, 10, hidden=6, field_width=5, adjoint=False),
                           neural_cde_by_hand)}


@pytest.mark.parametrize("learner,drop_rate", [("ct_fwp", 0.0), ("ct_fwp", 0.3), ("neural_cde", 0.0),
                                               ("neural_cde", 0.5)])
def test_each_learner_is_its_equations(digits, learner, drop_rate):
    torch.manual_seed(0)
    build, equations = LEARNERS[learner]
    model = build().double().eval()
    batch = IrregularRowsSampler(digits, "val", drop_rate, seed=1).sample(range(3))
    batch.inputs = batch.inputs.double()
    with torch.no_grad():
        ours = model(batch)[0][:, -1]
        expected = equations(model, batch.inputs)
    assert torch.allclose(ours, expected, atol=1e-9), (ours - expected).abs().max()


def test_a_tiny_run_tests_what_it_reports(tmp_path):
    run_dir = train(load_config(RECIPE, ["model.hidden=8", "model.num_heads=2", "model.ff_dim=8", "train.steps=2",
                                         "train.batch_size=8", "eval.val_every=0", "eval.episodes=16",
                                         "eval.batch_size=8", f"train.out_dir={tmp_path}", "train.progress=none"]))
    config, model = learner_of(run_dir)
    result = json.loads((run_dir / "metrics.json").read_text())["test"]["ct_fwp"]
    batch = IrregularRowsSampler(MNIST5k(), "test", 0.3, seed=config.eval.seed).sample(range(16))
    assert result["accuracy"] == pytest.approx(accuracy_by_hand(model.eval(), batch)[0], abs=1e-6)


@pytest.mark.parametrize("overrides,message", [
    (["data.drop_rate=1.0"], "data.drop_rate must be in \\[0, 1\\)"),
    (["model.rule=hebb"], "model.cde=true is the authors' delta_cde"),
    (["model.rule=sgd", "model.cde=false"], "Unknown model.rule 'sgd'"),
    (["model.hidden=30"], "model.hidden=30 is not divisible by model.num_heads=4"),
    (["model.solver=rk5"], "Unknown model.solver 'rk5'. Valid: euler, midpoint"),
    (["model.kind=neural_cde", "model.solver=dopri"], "Unknown model.solver 'dopri'"),
])
def test_bad_settings_are_refused_at_load(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(RECIPE, overrides)


def test_more_test_episodes_than_digits_is_refused_when_the_config_loads():
    with pytest.raises(ConfigError, match=r"eval.episodes=501: the test split holds 500 digits, each read once"):
        load_config(RECIPE, ["eval.episodes=501"])
