"""MAML (metafwp.baselines.maml): the vmapped meta-gradient against higher's inner loop and a per-task
autograd loop, first order without second-derivative terms, the BatchNorm of batch statistics, a
linear model's adaptation against gradient descent in closed form, the learner in the trainer, and
the errors a user can cause."""
import json

import higher
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from metafwp.baselines.maml import (BatchStatisticsNorm, MAMLLearner, choose_strategy, maml_loss, maml_outputs,
                                    relu_mlp, use_batch_statistics)
from metafwp.baselines.regression import gradient_descent
from metafwp.models.backbones import Conv4
from metafwp.tasks import FewShotTask, RegressionTask
from metafwp.train import ConfigError, load_config, train
from tests.helpers import ROOT, accuracy_by_hand, error_by_hand, learner_of, tiny

TASKS, N_WAY = 3, 4
MAML_RECIPE = ROOT / "recipes/glyphs_5way1shot_maml.yaml"


def small_conv4() -> nn.Module:
    return use_batch_statistics(nn.Sequential(Conv4(1, 4, channels_last=False), nn.Linear(4, N_WAY))).double()


def small_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, N_WAY)).double()


def classification_tasks(input_shape, shots: int = 2, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x_support = torch.randn(TASKS, N_WAY * shots, *input_shape, generator=generator, dtype=torch.float64)
    x_query = torch.randn(TASKS, N_WAY * 3, *input_shape, generator=generator, dtype=torch.float64)
    labels = torch.arange(N_WAY).repeat_interleave
    return x_support, labels(shots).expand(TASKS, -1), x_query, labels(3).expand(TASKS, -1)


def meta_gradient(model, loss) -> list[torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


def loop_meta_gradient(model, tasks, inner_lr, inner_steps, create_graph):
    """Per-task autograd: SGD on each support with ``torch.autograd.grad``, the query losses' mean
    backpropagated; ``create_graph=False`` drops the second-derivative terms."""
    x_support, y_support, x_query, y_query = tasks
    names = [name for name, _ in model.named_parameters()]
    model.zero_grad()
    for t in range(x_support.shape[0]):
        params = list(model.parameters())
        for _ in range(inner_steps):
            loss = F.cross_entropy(functional_call(model, dict(zip(names, params)), (x_support[t],)), y_support[t])
            grads = torch.autograd.grad(loss, params, create_graph=create_graph)
            params = [p - inner_lr * g for p, g in zip(params, grads)]
        query_loss = F.cross_entropy(functional_call(model, dict(zip(names, params)), (x_query[t],)), y_query[t])
        (query_loss / x_support.shape[0]).backward()
    return [p.grad.clone() for p in model.parameters()]


def higher_meta_gradient(model, tasks, inner_lr, inner_steps, first_order):
    """higher's differentiable SGD, one task at a time; first order detaches the inner gradients."""
    x_support, y_support, x_query, y_query = tasks
    optimiser = torch.optim.SGD(model.parameters(), lr=inner_lr)
    detach = (lambda grads: [g.detach() for g in grads]) if first_order else None
    model.zero_grad()
    for t in range(x_support.shape[0]):
        with higher.innerloop_ctx(model, optimiser, copy_initial_weights=False) as (fast, differentiable):
            for _ in range(inner_steps):
                differentiable.step(F.cross_entropy(fast(x_support[t]), y_support[t]), grad_callback=detach)
            (F.cross_entropy(fast(x_query[t]), y_query[t]) / x_support.shape[0]).backward()
    return [p.grad.clone() for p in model.parameters()]


def assert_all_close(actual, expected, atol):
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert torch.allclose(a, e, rtol=0, atol=atol), f"parameter {i}: max difference {(a - e).abs().max():.2e}"


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("inner_steps", [1, 3])
@pytest.mark.parametrize("architecture", ["conv4", "mlp"])
def test_meta_gradient_equals_higher_and_a_per_task_loop(architecture, inner_steps, first_order, strategy):
    torch.manual_seed(0)
    model, shape = (small_conv4(), (1, 16, 16)) if architecture == "conv4" else (small_mlp(), (6,))
    tasks = classification_tasks(shape)
    ours = meta_gradient(model, maml_loss(model, *tasks, inner_lr=0.3, inner_steps=inner_steps,
                                          first_order=first_order, strategy=strategy))
    assert_all_close(ours, higher_meta_gradient(model, tasks, 0.3, inner_steps, first_order), atol=1e-6)
    assert_all_close(ours, loop_meta_gradient(model, tasks, 0.3, inner_steps, create_graph=not first_order), 1e-10)
    assert max(g.abs().max().item() for g in ours) > 1e-3  # the comparison has something to compare


def test_first_order_drops_exactly_the_second_derivative_terms():
    torch.manual_seed(1)
    model, tasks = small_mlp(), classification_tasks((6,))
    first = meta_gradient(model, maml_loss(model, *tasks, inner_lr=0.5, inner_steps=2, first_order=True))
    second = meta_gradient(model, maml_loss(model, *tasks, inner_lr=0.5, inner_steps=2))
    assert_all_close(first, loop_meta_gradient(model, tasks, 0.5, 2, create_graph=False), 1e-12)
    assert max((f - s).abs().max().item() for f, s in zip(first, second)) > 1e-3


def test_meta_loss_gradient_matches_finite_differences_through_batch_statistics():
    torch.manual_seed(2)
    model, tasks = small_conv4(), classification_tasks((1, 16, 16))
    weight = model[0].blocks[1].weight  # a BatchStatisticsNorm scale: second order through the norm
    analytic = meta_gradient(model, maml_loss(model, *tasks, inner_lr=0.4, inner_steps=2))[1][0]
    eps = 1e-6
    with torch.no_grad():
        weight[0] += eps
        plus = maml_loss(model, *tasks, inner_lr=0.4, inner_steps=2)
        weight[0] -= 2 * eps
        minus = maml_loss(model, *tasks, inner_lr=0.4, inner_steps=2)
        weight[0] += eps
    assert analytic.item() == pytest.approx(((plus - minus) / (2 * eps)).item(), rel=1e-6, abs=1e-9)


def test_batch_statistics_norm_is_torch_batchnorm_without_running_statistics():
    torch.manual_seed(3)
    torch_norm = nn.BatchNorm2d(5, eps=1e-3, track_running_stats=False).double()
    nn.init.normal_(torch_norm.weight)
    nn.init.normal_(torch_norm.bias)
    model = use_batch_statistics(nn.Sequential(torch_norm))
    assert isinstance(model[0], BatchStatisticsNorm) and model[0].weight is torch_norm.weight
    x = torch.randn(7, 5, 3, 4, dtype=torch.float64)
    assert torch.allclose(model(x), torch_norm(x), atol=1e-12)


def test_zero_inner_steps_is_the_unadapted_model():
    model, (x_support, y_support, x_query, _) = small_mlp(), classification_tasks((6,))
    outputs = maml_outputs(model, x_support, y_support, x_query, inner_lr=0.5, inner_steps=0)
    assert torch.allclose(outputs, model(x_query), atol=1e-12)


def test_linear_model_adapts_as_gradient_descent_in_closed_form():
    """MSE's gradient is twice that of the GD baseline's 1/2 squared error, so inner_lr a is gd_lr 2a."""
    generator = torch.Generator().manual_seed(4)
    x_support, x_query = torch.randn(5, 8, 3, generator=generator), torch.randn(5, 4, 3, generator=generator)
    y_support = x_support @ torch.randn(5, 3, 1, generator=generator)
    model = nn.Linear(3, 1, bias=False).double()
    nn.init.zeros_(model.weight)
    x_support, y_support, x_query = x_support.double(), y_support.double(), x_query.double()
    adapted = maml_outputs(model, x_support, y_support, x_query, inner_lr=0.1, inner_steps=4, loss_fn=F.mse_loss)
    expected = gradient_descent(x_support, y_support, x_query, gd_lr=0.2, steps=4)
    assert torch.allclose(adapted, expected, atol=1e-12)


def test_learner_scores_the_queries_of_episodes_after_test_time_adaptation(tmp_path):
    config = tiny(tmp_path, "model.inner_steps=1", "model.test_inner_steps=2", recipe=MAML_RECIPE)
    task = FewShotTask(config, progress=False)
    learner = task.build_learner(config.model)
    batch = task.sampler.sample(range(4))
    learner.eval()
    with torch.no_grad():
        outputs, _ = learner(batch)
    support = batch.feedback != batch.unknown_label
    x = batch.inputs.float() / 255
    x_support = x[support].view(4, -1, *x.shape[2:])
    x_query = x[~support].view(4, -1, *x.shape[2:])
    expected = maml_outputs(learner.network, x_support, batch.targets[support].view(4, -1), x_query,
                            inner_lr=config.model.inner_lr, inner_steps=2)
    assert torch.allclose(outputs[~support].view_as(expected), expected.detach(), atol=1e-6)
    assert (outputs[support] == 0).all()


def test_maml_trains_and_tests_through_the_trainer(tmp_path):
    config = tiny(tmp_path, "train.steps=4", recipe=MAML_RECIPE)
    run_dir = train(config)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) == {"maml", "pixel_nn"}
    _, model = learner_of(run_dir)
    task = FewShotTask(config, progress=False)
    batch = task.make_sampler(config.data.test_split, config.eval.seed).sample(range(12))
    accuracy, _ = accuracy_by_hand(model, batch)
    assert metrics["test"]["maml"]["accuracy"] == pytest.approx(accuracy, abs=1e-4)


def test_maml_regresses_sinusoids_through_the_trainer(tmp_path):
    config = load_config(ROOT / "recipes/regression_sinusoid_maml.yaml",
                         ["train.steps=3", "train.batch_size=4", "train.log_every=1", "train.progress=none",
                          "eval.episodes=10", "eval.batch_size=5", "train.threads=1", f"train.out_dir={tmp_path}"])
    task = RegressionTask(config, progress=False)
    learner = task.build_learner(config.model)
    assert [m.out_features for m in learner.network if isinstance(m, nn.Linear)] == [40, 40, 1]
    run_dir = train(config)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["maml"]["by_examples"].keys() == {"10"}
    _, model = learner_of(run_dir)  # each test task adapted and scored alone, in a plain loop
    assert metrics["test"]["maml"]["error"] == pytest.approx(error_by_hand(model, task), rel=1e-5)


def test_auto_takes_vmap_the_strategy_measured_fastest():
    wide = nn.Sequential(Conv4(1, 64), nn.Linear(64, 5))
    assert {choose_strategy(m, torch.device(d)) for m in (wide, small_mlp()) for d in ("cpu", "cuda")} == {"vmap"}


def test_errors_name_what_is_wrong():
    model, (x_support, y_support, x_query, y_query) = small_mlp(), classification_tasks((6,))
    with pytest.raises(ValueError, match="different numbers of tasks"):
        maml_loss(model, x_support, y_support, x_query[:2], y_query[:2], inner_lr=0.1, inner_steps=1)
    with pytest.raises(ValueError, match="different numbers of tasks"):
        maml_loss(model, x_support, y_support, x_query, y_query[:2], inner_lr=0.1, inner_steps=1)
    with pytest.raises(ValueError, match="inner_steps must be an int >= 0"):
        maml_loss(model, x_support, y_support, x_query, y_query, inner_lr=0.1, inner_steps=-1)
    with_running_statistics = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, N_WAY)).double()
    with pytest.raises(ValueError, match="use_batch_statistics"):
        maml_loss(with_running_statistics, x_support, y_support, x_query, y_query, inner_lr=0.1, inner_steps=1)
    with pytest.raises(ValueError, match="test_inner_steps must be an int >= 0"):
        MAMLLearner(relu_mlp([1, 4, 1]), inner_lr=0.1, inner_steps=1, test_inner_steps=-2)
    with pytest.raises(ValueError, match="Unknown MAML strategy 'pmap'. Valid: auto, vmap, loop"):
        maml_loss(model, x_support, y_support, x_query, y_query, inner_lr=0.1, inner_steps=1, strategy="pmap")


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="model.inner_steps must be >= 0"):
        tiny(tmp_path, "model.inner_steps=-1", recipe=MAML_RECIPE)
    with pytest.raises(ConfigError, match="model.inner_lr must be > 0"):
        tiny(tmp_path, "model.inner_lr=0", recipe=MAML_RECIPE)
    with pytest.raises(ConfigError, match="Unknown model.strategy 'fast'. Valid: auto, vmap, loop"):
        tiny(tmp_path, "model.strategy=fast", recipe=MAML_RECIPE)
    with pytest.raises(ConfigError, match="data.feedback=synchronous"):
        tiny(tmp_path, "data.feedback=delayed", recipe=MAML_RECIPE)
    with pytest.raises(ConfigError, match="model.mlp_hidden"):
        tiny(tmp_path, "model.mlp_hidden=[8]", recipe=MAML_RECIPE)
    with pytest.raises(ConfigError, match="model.inner_lr"):
        tiny(tmp_path, "model.inner_lr=0.1")
