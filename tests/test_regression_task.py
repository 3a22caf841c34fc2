"""task: regression end to end: the objective's tallies by k against a hand loop, the baselines as
learners, the linear self-attention layer against the GD construction, study 1's comparison, runs
through the trainer and the evaluate CLI, and the errors a user can cause."""
import json

import pytest
import torch

from episodes import RegressionSampler
from metafwp.baselines.regression import least_squares
from metafwp.constructions import gd_plus_plus_predict, gd_predict
from metafwp.evaluate import main as evaluate_main
from metafwp.models import LinearSelfAttention
from metafwp.tasks.regression import (InContextBaseline, RegressionTask, compare_with_gradient_descent, error_at,
                                      one_step_gd_learning_rate)
from metafwp.train import ConfigError, load_config, train
from tests.helpers import ROOT, error_by_hand, learner_of

TINY_REGRESSION = ["task=regression", "model.mixer=delta", "data.dim=3", "data.num_support=6", "model.d_model=16", "model.num_heads=2",
                   "model.num_layers=1", "train.batch_size=8", "train.log_every=1", "train.checkpoint_every=2",
                   "train.progress=none", "eval.episodes=20", "eval.batch_size=7", "train.threads=1"]


def tiny_regression(tmp_path, *overrides, name="run"):
    return load_config(None, [*TINY_REGRESSION, f"train.out_dir={tmp_path}", f"train.name={name}", *overrides])


def construction_weights(dx: int, lr: float) -> LinearSelfAttention:
    """The linear self-attention layer with the slow weights of one GD step from W0 = 0 (its
    prediction is the target slot, so W_o adds ``+lr``)."""
    model = LinearSelfAttention(dx, 1)
    eye = torch.zeros(dx + 1, dx + 1)
    eye[:dx, :dx] = torch.eye(dx)
    target = torch.zeros(dx + 1, dx + 1)
    target[dx, dx] = 1.0
    with torch.no_grad():
        model.weights[0].copy_(torch.stack([eye, eye, target, lr * target]))
    return model


def test_objective_tallies_squared_error_by_k_as_a_hand_loop(tmp_path):
    config = tiny_regression(tmp_path, "data.feedback=delayed")
    task = RegressionTask(config, progress=False)
    batch = task.sampler.sample(range(5))
    model = InContextBaseline(least_squares, "delayed")
    scores = task.objective(model, batch)
    record = task.summarise(scores.sums)
    x, y = batch.inputs.double(), batch.targets.double()
    for k in range(6):
        if k == 0:
            predictions = torch.zeros(5, 1, 1, dtype=torch.float64)
        else:
            predictions = torch.stack([x[b, k] @ torch.linalg.pinv(x[b, :k]) @ y[b, :k] for b in range(5)])[:, None]
        errors = (predictions[:, 0, 0] - y[:, k, 0]).square() / 3  # one step at each k per episode
        assert record["by_examples"][k] == pytest.approx(errors.mean().item(), rel=1e-5, abs=1e-9)
        assert record["by_examples_ci95"][k] == pytest.approx(1.96 * errors.std().item() / 5 ** 0.5, rel=1e-4,
                                                              abs=1e-9)
    assert record["error"] == pytest.approx(sum(record["by_examples"].values()) / 6, rel=1e-6)
    assert record["loss"] == pytest.approx(3 * record["error"])
    assert scores.per_episode.mean().item() == pytest.approx(record["error"], rel=1e-6)


def test_synchronous_baseline_reads_the_support_only():
    sampler = RegressionSampler("linear", 4, 3, dim=3, seed=2)
    batch = sampler.sample(range(6))
    predictions, _ = InContextBaseline(least_squares, "synchronous")(batch)
    x, y = batch.inputs, batch.targets
    assert torch.allclose(predictions[:, 4:], least_squares(x[:, :4], y[:, :4], x[:, 4:]))
    assert (predictions[:, :4] == 0).all()


def test_linear_attention_with_constructed_weights_is_one_gd_step_and_the_comparison_says_so():
    sampler = RegressionSampler("linear", 10, 1, dim=4, input_distribution="uniform", input_range=1.0, seed=0)
    batch = sampler.sample(range(50))
    model = construction_weights(4, 0.3)
    x, y = batch.inputs.double(), batch.targets.double()
    expected = gd_predict(x[:, :10], y[:, :10], x[:, 10:], torch.zeros(1, 4, dtype=torch.float64), [0.3])
    assert torch.allclose(model(batch)[0][:, 10:].double(), expected, atol=1e-6)
    comparison = compare_with_gradient_descent(model, sampler, gd_lr=3.0, episodes=50, batch_size=20)  # 0.3 x N
    assert comparison["prediction_difference"] < 1e-6
    assert comparison["sensitivity_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert comparison["loss_learner"] == pytest.approx(comparison["loss_gd"], rel=1e-5)
    assert (comparison["gd_lr"], comparison["step_size"]) == (3.0, pytest.approx(0.3))
    other = compare_with_gradient_descent(model, sampler, gd_lr=1.0, episodes=50, batch_size=20)
    assert other["prediction_difference"] > 1e-2 and other["sensitivity_distance"] > 1e-2


def gd_plus_plus_weights(dx: int, gamma: float, lr: float, causal: bool) -> LinearSelfAttention:
    """Two layers: von Oswald et al.'s GD++ preconditioner (x part read, written and subtracted with
    -gamma), then one GD step from W0 = 0 (W_o adds ``+lr`` to the target slot)."""
    model = LinearSelfAttention(dx, 1, num_layers=2, causal=causal)
    x_part, target = torch.zeros(dx + 1, dx + 1), torch.zeros(dx + 1, dx + 1)
    x_part[:dx, :dx] = torch.eye(dx)
    target[dx, dx] = 1.0
    with torch.no_grad():
        model.weights[0].copy_(torch.stack([x_part, x_part, x_part, -gamma * x_part]))
        model.weights[1].copy_(torch.stack([x_part, x_part, target, lr * target]))
    return model


def test_the_non_causal_layers_compute_gd_plus_plus_and_its_gamma_reads_back():
    """Non-causal: every token's x becomes (I - gamma sum_i x_i x_i^T) x, then one GD step on the
    transformed support, against that closed form in float64; the causal stack differs (support
    tokens are preconditioned by their prefixes only); the readout returns gamma."""
    dx, gamma, lr, N = 4, 0.15, 0.3, 10
    sampler = RegressionSampler("linear", N, 1, dim=dx, input_distribution="uniform", input_range=1.0, seed=3)
    batch = sampler.sample(range(30))
    x, y = batch.inputs.double(), batch.targets.double()
    preconditioner = torch.eye(dx, dtype=torch.float64) - gamma * torch.einsum("bni,bnj->bij", x[:, :N], x[:, :N])
    x_new = torch.einsum("bij,btj->bti", preconditioner, x)
    expected = lr * torch.einsum("bn,bni,bi->b", y[:, :N, 0], x_new[:, :N], x_new[:, N])  # W = lr sum_i y_i x_i^T
    model = gd_plus_plus_weights(dx, gamma, lr, causal=False).double()
    assert torch.allclose(model(batch)[0][:, N, 0], expected, atol=1e-12)
    assert torch.allclose(model(batch)[0][:, N:], gd_plus_plus_predict(x[:, :N], y[:, :N], x[:, N:],
                                                                     torch.zeros(1, dx, dtype=torch.float64),
                                                                     [lr], gamma), atol=1e-12)
    causal = gd_plus_plus_weights(dx, gamma, lr, causal=True).double()
    assert (causal(batch)[0][:, N, 0] - expected).abs().max() > 1e-3
    assert model.gd_plus_plus_gamma(0) == (pytest.approx(gamma), pytest.approx(0.0, abs=1e-12))
    one_layer = construction_weights(dx, lr).double()
    one_layer.causal = False
    assert torch.allclose(one_layer(batch)[0][:, N:], construction_weights(dx, lr).double()(batch)[0][:, N:])


@pytest.mark.parametrize("causal", [True, False])
def test_linear_self_attention_equals_its_fast_weight_loop(causal):
    """Two untied layers with random weights against a float64 loop of the vanilla FWP: the support
    tokens write (W_k e_i)(W_v e_i)^T into S, token t reads W_o S^T W_q e_t from the writes up to t
    (causal) or from the whole support (non-causal)."""
    dx, N = 3, 6
    batch = RegressionSampler("linear", N, 2, dim=dx, seed=4).sample(range(5))
    model = LinearSelfAttention(dx, 1, num_layers=2, init_std=0.5, causal=causal).double()
    tokens = torch.cat([batch.inputs.double(), batch.feedback[..., :1].double()], -1)
    for layer in range(2):
        W_q, W_k, W_v, W_o = model.layer_weights(layer).detach()
        writes = [(W_k @ tokens[:, i, :, None]) @ (W_v @ tokens[:, i, :, None]).transpose(1, 2) for i in range(N)]
        new = tokens.clone()
        for t in range(N + 2):
            S = sum(writes[:t + 1] if causal else writes)
            new[:, t] += (W_o @ S.transpose(1, 2) @ W_q @ tokens[:, t, :, None])[..., 0]
        tokens = new
    assert torch.allclose(model(batch)[0], tokens[..., dx:], atol=1e-12)


def test_one_step_learning_rate_minimises_the_loss():
    sampler = RegressionSampler("linear", 10, 1, dim=10, input_distribution="uniform", input_range=1.0, seed=5)
    gd_lr = one_step_gd_learning_rate(sampler, episodes=4000, batch_size=1000)
    batch = sampler.sample(range(4000))
    x, y = batch.inputs.double(), batch.targets.double()
    def loss(rate):  # one step of gd_lr = rate: W = (rate / N) sum_i y_i x_i^T, N = 10
        W = rate / 10 * torch.einsum("bn,bnd->bd", y[:, :10, 0], x[:, :10])
        return 0.5 * (torch.einsum("bd,bd->b", W, x[:, 10]) - y[:, 10, 0]).square().mean().item()
    assert loss(gd_lr) < min(loss(0.97 * gd_lr), loss(1.03 * gd_lr))


def test_a_regression_run_tests_the_learner_and_the_baselines_and_evaluate_agrees(tmp_path, capsys):
    run_dir = train(tiny_regression(tmp_path, "train.steps=3", "data.feedback=delayed"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert list(metrics["test"]) == ["delta", "least_squares", "gd", "nearest_neighbours", "averaging"]
    assert sorted(map(int, metrics["test"]["delta"]["by_examples"])) == list(range(6))
    assert metrics["test"]["least_squares"]["by_examples"]["5"] < 1e-9  # k >= d: exact
    assert metrics["test"]["gd"]["gd_lr"] > 0
    for name in ("error_by_examples.png", "learning_curves.png", "config.yaml"):
        assert (run_dir / name).stat().st_size > 0
    config, model = learner_of(run_dir)
    expected = error_by_hand(model, RegressionTask(config, progress=False))  # a plain loop over the test episodes
    assert metrics["test"]["delta"]["error"] == pytest.approx(expected, rel=1e-5)
    assert evaluate_main([str(run_dir), "eval.baselines=[least_squares]"]) == 0
    evaluation = json.loads(next(run_dir.glob("evaluation_tasks_20ep_seed*.json")).read_text())
    assert evaluation["results"]["delta"]["error"] == pytest.approx(expected, rel=1e-5)
    assert evaluation["results"]["least_squares"]["error"] == pytest.approx(metrics["test"]["least_squares"]["error"])


def test_the_study_recipe_trains_linear_attention(tmp_path):
    recipe = ROOT / "recipes/regression_von_oswald_linear_attention.yaml"
    config = load_config(recipe, [f"train.out_dir={tmp_path}", "train.steps=2", "train.batch_size=16",
                                  "eval.episodes=10", "train.progress=none", "train.threads=1"])
    run_dir = train(config)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) == {"linear_attention", "gd", "least_squares"}
    assert list(metrics["test"]["linear_attention"]["by_examples"]) == ["10"]
    _, model = learner_of(run_dir)
    gamma, off_diagonal = model.gd_plus_plus_gamma(0)  # what its weights say, beside its test results
    assert metrics["test"]["linear_attention"]["gd_plus_plus_gamma"] == pytest.approx(gamma)
    assert metrics["test"]["linear_attention"]["gamma_off_diagonal"] == pytest.approx(off_diagonal)
    assert "gd_plus_plus_gamma" not in metrics["test"]["gd"]


def test_error_at_names_the_ks_a_result_holds(tmp_path):
    result = {"by_examples": {str(k): 1.0 - k / 10 for k in range(6)}}
    assert error_at(result, 4) == pytest.approx(0.6)
    with pytest.raises(ValueError, match=r"k = 9 is beyond the episode: this result holds k = 0 \.\. 5"):
        error_at(result, 9)


@pytest.mark.parametrize("overrides, message", [
    (["data.family=cubic"], "Unknown data.family 'cubic'. Valid: linear, sparse_linear"),
    (["data.num_support=0"], "need num_support >= 1"),
    (["model.backbone=conv4"], "model.backbone is not read with task=regression; remove it"),
    (["eval.baselines=[pixel_nn]"], "Unknown eval.baselines entry 'pixel_nn' for task regression"),
    (["model.kind=linear_attention", "data.feedback=delayed"], "set data.feedback=synchronous"),
    (["model.kind=linear_attention", "model.init_std=0"], "model.init_std > 0"),
    (["model.causal=false"], "model.causal"),
    (["data.gd_steps=0"], "data.gd_steps must be >= 1"),
    (["data.family=linear", "data.hidden=4"], "data.hidden is not read with data.family=linear"),
])
def test_bad_regression_settings_raise_one_clear_error(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        config = tiny_regression(tmp_path, *overrides)
        RegressionTask(config, progress=False)


def test_sampler_input_range_and_state():
    sampler = RegressionSampler("linear", 50, 0, dim=4, input_distribution="uniform", input_range=1.0, seed=1)
    x = sampler.sample(range(20)).inputs
    assert x.abs().max() <= 0.5 and x.abs().max() > 0.45
    assert sampler.state_dict() == RegressionSampler("linear", 50, 0, dim=4, input_distribution="uniform",
                                                     input_range=1.0, seed=1).state_dict()
    with pytest.raises(ValueError, match="input_range must be > 0"):
        RegressionSampler("linear", 5, input_range=0.0)
