"""Bootstrapped self-improvement: the objective against the learner run by hand on the prefixes it
names (one pass over support + query, one over support + future + query), a detached teacher,
one backbone pass per frame, and the task through the trainer."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from episodes import BootstrapSampler, FewShotSampler, ImageClasses
from episodes.batch import concatenate_steps
from metafwp.losses import bootstrap_loss, state_distance, teacher_kl
from metafwp.models import SequenceLearner, feature_size
from metafwp.models.backbones import Conv4
from metafwp.tasks import BootstrapTask
from metafwp.train import ConfigError, load_config, train
from tests.helpers import TINY, TINY_SEQUENCE, accuracy_by_hand, learner_of

ROOT = Path(__file__).parents[1]
RECIPE = ROOT / "recipes/glyphs_bootstrap_10way1shot_srwm.yaml"
N_WAY, K, F_SHOTS, Q = 3, 2, 2, 1


def random_classes(num_classes: int = 6, per_class: int = 8) -> ImageClasses:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (num_classes * per_class, 1, 16, 16), dtype=torch.uint8, generator=generator)
    return ImageClasses(images, torch.arange(num_classes).repeat_interleave(per_class))


def learner(mixer: str) -> SequenceLearner:
    torch.manual_seed(0)
    backbone = Conv4(1, filters=4)
    return SequenceLearner(backbone, feature_size(backbone, (1, 16, 16)), N_WAY, N_WAY + 1, mixer=mixer, d_model=16,
                           num_layers=2, num_heads=2).eval()  # eval: batch norm with running statistics


def episodes(batch_size: int = 4):
    return BootstrapSampler(random_classes(), N_WAY, K, F_SHOTS, Q, seed=3).sample(range(batch_size))


def loss_by_hand(model, batch, weights, target="logits"):
    """The objective from two plain passes (support + query; support + future + query) and torch's
    own KL divergence with an explicitly detached teacher."""
    n_query = batch.query.num_steps
    student, support_state = model(concatenate_steps([batch.support, batch.query]))
    teacher, teacher_state = model(batch.sequence())
    student, teacher = student[:, -n_query:].flatten(0, 1), teacher[:, -n_query:].flatten(0, 1)
    targets = batch.query.targets.flatten()
    if target == "logits":
        pull = F.kl_div(F.log_softmax(student, -1), F.log_softmax(teacher, -1).detach(), log_target=True,
                        reduction="batchmean")
    else:
        _, support_state = model(batch.support)
        _, future_state = model(concatenate_steps([batch.support, batch.future]))
        flat = [(s, t) for layer_s, layer_t in zip(support_state, future_state)
                for s, t in zip(*((x,) if torch.is_tensor(x) else x for x in (layer_s, layer_t)))]
        pull = sum(((s - t.detach()) ** 2).mean() for s, t in flat)
    main, future = F.cross_entropy(student, targets), F.cross_entropy(teacher, targets)
    return weights[0] * main + weights[1] * future + weights[2] * pull, (main, future, pull)


@pytest.mark.parametrize("mixer", ["srwm", "delta", "lstm", "attention"])
def test_the_objective_equals_the_learner_run_by_hand_on_each_prefix(mixer):
    model, batch = learner(mixer), episodes()
    weights = (1.0, 0.5, 10.0)
    result = bootstrap_loss(model, batch, weights)
    expected, (main, future, pull) = loss_by_hand(model, batch, weights)
    for name, actual, reference in (("main", result.main, main), ("future", result.future, future),
                                    ("bootstrap", result.bootstrap, pull), ("loss", result.loss, expected)):
        assert actual.item() == pytest.approx(reference.item(), rel=1e-5, abs=1e-7), name
    assert result.bootstrap.item() > 0  # the two predictions differ: the term is not trivially 0
    params = [p for p in model.parameters()]
    grads = torch.autograd.grad(result.loss, params, allow_unused=True)
    reference_grads = torch.autograd.grad(expected, params, allow_unused=True)
    for p, g, r in zip(params, grads, reference_grads):
        assert (g is None) == (r is None)
        if g is not None:
            assert torch.allclose(g, r, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("mixer", ["srwm", "lstm"])
def test_the_state_target_matches_layer_states_with_the_later_one_detached(mixer):
    model, batch = learner(mixer), episodes()
    weights = (1.0, 1.0, 3.0)
    result = bootstrap_loss(model, batch, weights, target="state")
    expected, (_, _, pull) = loss_by_hand(model, batch, weights, target="state")
    assert result.bootstrap.item() == pytest.approx(pull.item(), rel=1e-5) and pull.item() > 0
    params = list(model.parameters())
    for g, r in zip(torch.autograd.grad(result.loss, params), torch.autograd.grad(expected, params)):
        assert torch.allclose(g, r, rtol=1e-4, atol=1e-7)


def test_the_teacher_branch_carries_no_gradient():
    student = torch.randn(6, 4, requires_grad=True)
    teacher = torch.randn(6, 4, requires_grad=True)
    kl = teacher_kl(student, teacher)
    expected = F.kl_div(F.log_softmax(student, -1), F.log_softmax(teacher, -1), log_target=True, reduction="none")
    assert torch.allclose(kl, expected.sum(-1), atol=1e-6)
    grad_student, grad_teacher = torch.autograd.grad(kl.sum(), [student, teacher], allow_unused=True)
    assert grad_teacher is None and grad_student.abs().sum() > 0
    states = [torch.randn(2, 3, requires_grad=True), (torch.randn(4), torch.randn(5))]
    later = [torch.randn(2, 3, requires_grad=True), (torch.randn(4), torch.randn(5))]
    assert torch.autograd.grad(state_distance(states, later), later[0], allow_unused=True) == (None,)


def test_the_support_is_read_once_and_every_frame_goes_through_the_backbone_once():
    model, batch = learner("srwm"), episodes()
    frames, layer_steps = [], []
    model.backbone.register_forward_hook(lambda module, args, output: frames.append(args[0].shape[0]))
    model.blocks[0].register_forward_hook(lambda module, args, output: layer_steps.append(args[0].shape[1]))
    bootstrap_loss(model, batch)
    per_episode = N_WAY * (K + F_SHOTS + Q)
    assert frames == [batch.batch_size * per_episode]
    assert sorted(layer_steps) == sorted([N_WAY * K, N_WAY * Q, N_WAY * F_SHOTS, N_WAY * Q])
    frames.clear(), layer_steps.clear()
    bootstrap_loss(model, batch, weights=(1, 0, 0))  # plain K-shot: the future is not read
    assert frames == [batch.batch_size * N_WAY * (K + Q)] and sorted(layer_steps) == [N_WAY * Q, N_WAY * K]


def test_bad_input_gets_one_clear_error():
    model, batch = learner("srwm"), episodes()
    with pytest.raises(TypeError, match="reads a BootstrapBatch .* got EpisodeBatch"):
        bootstrap_loss(model, batch.sequence())
    with pytest.raises(ValueError, match="three values >= 0"):
        bootstrap_loss(model, batch, weights=(1, -1, 10))
    with pytest.raises(ValueError, match="Unknown bootstrap target 'weights'"):
        bootstrap_loss(model, batch, target="weights")
    with pytest.raises(ValueError, match="changes size with the context"):
        bootstrap_loss(learner("attention"), batch, target="state")
    with pytest.raises(ValueError, match=r"k_shot \+ n_future \+ n_query = 4 \+ 4 \+ 1 = 9 is larger than a class"):
        BootstrapSampler(random_classes(), N_WAY, 4, 4, 1)
    with pytest.raises(ValueError, match="n_future must be an int >= 1"):
        BootstrapSampler(random_classes(), N_WAY, 1, 0, 1)


@pytest.mark.parametrize("override,message", [
    ("data.loss_weights=[1,-1,10]", "data.loss_weights: bootstrap weights are three values >= 0"),
    ("data.loss_weights=[0,0,0]", "not all 0"),
    ("data.feedback=delayed", "task=bootstrap reads synchronous episodes"),
    ("data.bootstrap_target=weights", "Unknown data.bootstrap_target 'weights'. Valid: logits, state"),
    ("data.test_k_shots=[0]", "data.test_k_shots must be shots >= 1"),
    ("data.n_future=0", "data.n_future must be >= 1"),
    ("model.kind=prototypical", "Unknown model.kind 'prototypical' for task bootstrap. Valid: sequence"),
])
def test_bad_settings_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        load_config(RECIPE, [override])


def test_state_target_refuses_attention_and_too_many_shots_are_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match="attention's key/value cache grows"):
        load_config(RECIPE, ["data.bootstrap_target=state", "model.mixer=attention"])
    config = load_config(RECIPE, ["data.n_future=19"])
    with pytest.raises(ConfigError, match=r"= 21 is larger than a class's examples"):
        BootstrapTask(config, progress=False)
    config = load_config(RECIPE, ["data.test_k_shots=[20]"])
    with pytest.raises(ConfigError, match=r"data.test_k_shots: K = 20 \+ n_query = 1 is larger"):
        BootstrapTask(config, progress=False)


def tiny_bootstrap(tmp_path, *overrides):
    return load_config(RECIPE, TINY + TINY_SEQUENCE + ["data.n_way=3", "train.steps=3", "eval.val_every=0",
                                                        f"train.out_dir={tmp_path}", *overrides])


def test_bootstrap_trains_and_tests_at_k_and_the_larger_k(tmp_path):
    config = tiny_bootstrap(tmp_path)
    run_dir = train(config)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) == {"srwm K=1", "srwm K=3", "pixel_nn K=1", "pixel_nn K=3"}
    assert {"future_loss", "bootstrap_loss", "future_accuracy"} <= set(metrics["history"][-1])
    assert (run_dir / "accuracy_by_support_shots.png").is_file()
    _, model = learner_of(run_dir)
    task = BootstrapTask(config, progress=False)
    for k in (1, 3):  # the test episodes are plain K-shot episodes, scored by hand
        batch = task.test_episodes()[f" K={k}"][0].sample(range(12))
        accuracy, _ = accuracy_by_hand(model, batch)
        assert metrics["test"][f"srwm K={k}"]["accuracy"] == pytest.approx(accuracy, abs=1e-4)
    plain = json.loads((train(tiny_bootstrap(tmp_path, "data.loss_weights=[1,0,0]", "train.name=plain"))
                        / "metrics.json").read_text())
    assert "future_loss" not in plain["history"][-1]
    # the same test episodes: the pixel baseline scores the same
    assert plain["test"]["pixel_nn K=3"]["accuracy"] == metrics["test"]["pixel_nn K=3"]["accuracy"]


def test_the_test_sets_are_plain_few_shot_episodes_at_each_k(tmp_path):
    config = tiny_bootstrap(tmp_path)
    task = BootstrapTask(config, progress=False)
    assert isinstance(task.train_sampler(), BootstrapSampler)
    for k in (1, 3):
        sampler, fields = task.test_episodes()[f" K={k}"]
        batch = sampler.sample(range(6))
        labelled = batch.feedback != batch.unknown_label
        assert fields == {"k_shot": k} and isinstance(sampler, FewShotSampler)
        for episode in range(6):  # k labelled examples of each class, then the queries
            counts = torch.bincount(batch.feedback[episode][labelled[episode]], minlength=config.data.n_way)
            assert counts.tolist() == [k] * config.data.n_way
            assert not labelled[episode, config.data.n_way * k:].any()
