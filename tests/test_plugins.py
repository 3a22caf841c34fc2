"""What a user adds from their own file, with no edit of metafwp: a learner kind, a mixer and a task
(one registry entry each), named tallies that reach the log through the all-reduce of a two-process
run, and the trainer's hooks (an optimiser step per token, a state carried across batches, several
models and optimisers, a deferred test), each resumed bit for bit after an interruption.

Run as a script under torchrun, this file registers its toy task and kind and trains them."""
import copy
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from metafwp.evaluate import evaluate_run
from metafwp.models import LEARNER_KINDS, LearnerKind, register_learner_kind
from metafwp.models.kinds import ModelSection
from metafwp.nn import MIXERS, register_mixer
from metafwp.tasks import LEARNER, TASKS, RegressionTask
from metafwp.train import ConfigError, TrainingInterrupted, load_config, train
from metafwp.train.checkpoint import load_checkpoint
from tests.helpers import ROOT, assert_identical, error_by_hand, stop_after

TOY = ["data.dim=3", "data.num_support=5", "train.batch_size=4", "train.steps=4", "train.checkpoint_every=2",
       "train.log_every=1", "train.progress=none", "train.threads=1", "eval.episodes=12", "eval.batch_size=5",
       "eval.baselines=[]"]


# --- a learner kind: an MLP that predicts each step's target from its input alone ---

@dataclass
class PointwiseConfig(ModelSection):
    kind: str = "pointwise_mlp"
    hidden: int = 8


class PointwiseMLP(nn.Module):
    """``forward(batch) -> (outputs [B, T, Dy], None)``: ``Linear - tanh - Linear`` of each step's x."""

    def __init__(self, dx: int, hidden: int, dy: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dx, hidden), nn.Tanh(), nn.Linear(hidden, dy))

    def forward(self, batch, state=None):
        return self.net(batch.inputs), None


class PointwiseKind(LearnerKind):
    name, Config, inputs, targets = "pointwise_mlp", PointwiseConfig, ("vectors",), ("values",)

    @classmethod
    def build(cls, config, inputs):
        return PointwiseMLP(inputs.shape[0], config.hidden, inputs.num_outputs)


# --- a mixer: the running mean of the steps so far, then a linear map; it reads no option ---

class RunningMeanMixer(nn.Module):
    """``y_t = W mean(x_1 .. x_t)``; the state ``(sum [B, D], count)`` continues the sequence."""

    def __init__(self, d_model: int):
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x, state=None):
        total, count = (torch.zeros_like(x[:, 0]), 0) if state is None else state
        sums = total[:, None] + x.cumsum(1)
        counts = count + torch.arange(1, x.shape[1] + 1, dtype=x.dtype, device=x.device)[:, None]
        return self.proj(sums / counts), (sums[:, -1], count + x.shape[1])


# --- tasks: regression with a named tally, an optimiser step per token, a carried state, two optimisers ---

class EpisodeIdTally(RegressionTask):
    """Regression that also tallies the sum of its episode ids (known in advance for every step)."""
    name = "toy_episode_ids"

    def objective(self, model, batch):
        scores = super().objective(model, batch)
        scores.sums["episode_id_sum"] = batch.episode_ids.double().sum()
        return scores

    def summarise(self, sums):
        record = super().summarise({key: value for key, value in sums.items() if key != "episode_id_sum"})
        return dict(record, episode_id_sum=sums["episode_id_sum"].item())


class PerTokenSteps(RegressionTask):
    """An optimiser step after every step of the sequence (online learning), on that step's error."""
    name = "toy_per_token"

    def training_step(self, trainer, batch):
        model = trainer.models[LEARNER]
        for t in range(batch.num_steps):
            mask = batch.loss_mask[:, t]
            if mask.any():
                error = (model(batch)[0][:, t] - batch.targets[:, t]).square().sum(-1)
                trainer.step((error * mask).sum() / mask.sum())
        with torch.no_grad():
            return self.objective(model, batch)


class CarriedState(RegressionTask):
    """A state carried from batch to batch: it shifts the inputs, and each batch's outputs move it."""
    name = "toy_carried_state"

    def __init__(self, config, progress=True):
        super().__init__(config, progress)
        self.carry = torch.zeros(self.sampler.dim)

    def training_step(self, trainer, batch):
        batch.inputs = batch.inputs + self.carry
        scores = super().training_step(trainer, batch)
        with torch.no_grad():
            self.carry = 0.5 * self.carry + 0.1 * trainer.models[LEARNER](batch)[0].mean()
        return scores

    def state_dict(self):
        return {"carry": self.carry.clone()}

    def load_state_dict(self, state):
        self.carry = state["carry"].clone()


class TwoOptimisers(RegressionTask):
    """A learner, a critic that learns the learner's error from the inputs (its own optimiser),
    and an exponential moving average of the learner (no optimiser)."""
    name = "toy_two_optimisers"

    def build_models(self, model_config):
        learner = self.build_learner(model_config)
        return {LEARNER: learner, "critic": nn.Linear(self.sampler.dim, 1),
                "ema": copy.deepcopy(learner).requires_grad_(False)}

    def optimised_parameters(self, models):
        return {LEARNER: list(models[LEARNER].parameters()), "critic": list(models["critic"].parameters())}

    def training_step(self, trainer, batch):
        outputs, _ = trainer.models[LEARNER](batch)
        error = (outputs - batch.targets).square().sum(-1)
        mask = batch.loss_mask.float()
        trainer.step((error * mask).sum() / mask.sum())
        guess = trainer.models["critic"](batch.inputs).squeeze(-1)
        trainer.step(((guess - error.detach()).square() * mask).sum() / mask.sum(), "critic")
        learner, ema = trainer.run.models[LEARNER], trainer.run.models["ema"]
        with torch.no_grad():
            for average, weight in zip(ema.parameters(), learner.parameters()):
                average.mul_(0.9).add_(0.1 * weight)
            return self.objective(learner, batch)


TOY_TASKS = (EpisodeIdTally, PerTokenSteps, CarriedState, TwoOptimisers)


def register_plugins() -> None:
    """One registry entry each: the toy kind, mixer and tasks."""
    register_learner_kind(PointwiseKind)
    register_mixer("running_mean", lambda d_model, dropout: RunningMeanMixer(d_model))
    TASKS.update({task.name: task for task in TOY_TASKS})


@pytest.fixture(autouse=True)
def plugins():
    """The plug-ins registered for one test, and taken out again after it."""
    register_plugins()
    yield
    LEARNER_KINDS.pop(PointwiseKind.name)
    MIXERS.pop("running_mean")
    for task in TOY_TASKS:
        TASKS.pop(task.name)


def toy(tmp_path, task, *overrides, name="run"):
    return load_config(None, [f"task={task}", *TOY, f"train.out_dir={tmp_path}", f"train.name={name}", *overrides])


def straight_and_resumed(tmp_path, monkeypatch, task, *overrides, stop_at=1):
    """The checkpoints of a straight run and of one stopped after ``stop_at`` steps and resumed."""
    straight = load_checkpoint(train(toy(tmp_path, task, *overrides, name="straight")) / "checkpoint.pt")
    with monkeypatch.context() as patch:
        stop_after(patch, stop_at)
        with pytest.raises(TrainingInterrupted):
            train(toy(tmp_path, task, *overrides, name="halves"))
    assert load_checkpoint(tmp_path / "halves" / "checkpoint.pt")["step"] == stop_at
    resumed = train(toy(tmp_path, task, *overrides, "train.resume=true", name="halves"))
    return straight, load_checkpoint(resumed / "checkpoint.pt")


def assert_same_training(resumed, straight):
    for key in ("model", "models", "optimizers", "schedulers", "task_state", "step"):
        assert_identical(key, resumed[key], straight[key])


def test_a_learner_kind_from_a_test_file_trains_resumes_and_evaluates(tmp_path, monkeypatch):
    straight, resumed = straight_and_resumed(tmp_path, monkeypatch, "regression", "model.kind=pointwise_mlp",
                                             "model.hidden=5")
    assert_same_training(resumed, straight)
    assert straight["model"]["net.0.weight"].shape == (5, 3)
    evaluation = evaluate_run(tmp_path / "halves", progress=False)
    config = load_config(tmp_path / "halves" / "config.yaml")
    task = TASKS["regression"](config, progress=False)
    model = task.build_learner(config.model)
    model.load_state_dict(resumed["model"])
    assert evaluation["results"]["pointwise_mlp"]["error"] == pytest.approx(error_by_hand(model, task), rel=1e-5)
    with pytest.raises(ConfigError, match="Unknown model.kind 'pointwise_mlp' for task few_shot. Valid: sequence"):
        load_config(None, ["model.kind=pointwise_mlp"])  # it reads vectors, not frames
    with pytest.raises(ConfigError, match="model.mixer is not read with model.kind=pointwise_mlp"):
        load_config(None, ["task=regression", "model.kind=pointwise_mlp", "model.mixer=delta"])


def test_a_mixer_from_a_test_file_stacks_with_others_and_the_table_checks_its_options(tmp_path, monkeypatch):
    layers = ["model.mixer=[running_mean,delta]", "model.num_layers=2", "model.d_model=16", "model.num_heads=2"]
    straight, resumed = straight_and_resumed(tmp_path, monkeypatch, "regression", *layers)
    assert_same_training(resumed, straight)
    assert "blocks.0.mixer.proj.weight" in straight["model"] and "blocks.1.mixer.q_proj.weight" in straight["model"]
    evaluation = evaluate_run(tmp_path / "halves", progress=False)
    assert set(evaluation["results"]) == {"running_mean+delta"}
    # the table says running_mean reads no option: num_heads is an error when no layer's mixer reads it
    with pytest.raises(ConfigError, match=r"model.num_heads is not read with .*model.mixer=running_mean"):
        load_config(None, ["task=regression", "model.mixer=running_mean", "model.num_heads=2"])
    with pytest.raises(ConfigError, match="model.mixer: 2 mixers .* for 3 layers"):
        load_config(None, ["task=regression", "model.mixer=[running_mean,delta]", "model.num_layers=3"])
    with pytest.raises(ConfigError, match="Unknown model.mixer 'gru'. Valid: srwm, lstm"):
        load_config(None, ["task=regression", "model.mixer=[running_mean,gru]"])


def test_an_optimiser_step_per_token_equals_sgd_by_hand(tmp_path):
    config = toy(tmp_path, "toy_per_token", "model.kind=pointwise_mlp", "optim.optimizer=sgd", "optim.lr=0.05")
    run = train(config)
    task = TASKS["toy_per_token"](config, progress=False)
    torch.manual_seed(config.train.seed)
    model = task.build_learner(config.model)
    B = config.train.batch_size
    for step in range(config.train.steps):
        batch = task.train_sampler().sample(range(step * B, (step + 1) * B))
        for t in range(batch.num_steps):
            mask = batch.loss_mask[:, t]
            if not mask.any():
                continue
            error = (model(batch)[0][:, t] - batch.targets[:, t]).square().sum(-1)
            grads = torch.autograd.grad((error * mask).sum() / mask.sum(), list(model.parameters()))
            with torch.no_grad():
                for weight, grad in zip(model.parameters(), grads):
                    weight -= 0.05 * grad
    trained = load_checkpoint(run / "checkpoint.pt")["model"]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(trained[key], value, rtol=1e-6, atol=1e-7)


def test_a_carried_state_is_saved_and_resumed_bit_for_bit(tmp_path, monkeypatch):
    straight, resumed = straight_and_resumed(tmp_path, monkeypatch, "toy_carried_state", "model.kind=pointwise_mlp")
    assert straight["task_state"][0]["carry"].abs().min() > 0  # the state moved
    assert_same_training(resumed, straight)


def test_two_models_two_optimisers_and_an_ema_copy_resume_bit_for_bit(tmp_path, monkeypatch):
    straight, resumed = straight_and_resumed(tmp_path, monkeypatch, "toy_two_optimisers", "model.kind=pointwise_mlp",
                                             "optim.optimizer=sgd", "optim.momentum=0.9", "optim.weight_decay=0.01",
                                             stop_at=3)
    assert set(straight["optimizers"]) == {LEARNER, "critic"} and set(straight["models"]) == {"critic", "ema"}
    assert straight["optimizers"]["critic"]["state"][0]["momentum_buffer"].abs().sum() > 0
    assert_same_training(resumed, straight)


def test_sgd_settings_are_checked_and_adam_keys_are_not_read_with_it():
    with pytest.raises(ConfigError, match="optim.betas is not read with optim.optimizer=sgd"):
        load_config(None, ["optim.optimizer=sgd", "optim.betas=[0.9,0.99]"])
    with pytest.raises(ConfigError, match="optim.momentum is not read with optim.optimizer=adam"):
        load_config(None, ["optim.momentum=0.9"])
    with pytest.raises(ConfigError, match="Unknown optim.optimizer 'rmsprop'. Valid: adam, sgd"):
        load_config(None, ["optim.optimizer=rmsprop"])


def test_a_deferred_test_runs_later_with_evaluate(tmp_path):
    run = train(toy(tmp_path, "regression", "model.kind=pointwise_mlp", "train.test=false", "train.steps=2"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"] is None and metrics["tested"] is None and len(metrics["history"]) == 2
    assert not (run / "error_by_examples.png").exists()
    evaluation = evaluate_run(run, progress=False)
    config = load_config(run / "config.yaml")
    task = TASKS["regression"](config, progress=False)
    model = task.build_learner(config.model)
    model.load_state_dict(load_checkpoint(run / "checkpoint.pt")["model"])
    assert evaluation["results"]["pointwise_mlp"]["error"] == pytest.approx(error_by_hand(model, task), rel=1e-5)


def test_a_named_tally_reaches_the_log_through_a_two_process_run(tmp_path):
    recipe = tmp_path / "toy.yaml"
    recipe.write_text("task: toy_episode_ids\nmodel:\n  kind: pointwise_mlp\n")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "tests.test_plugins", str(recipe), *TOY, "train.steps=3", "train.device=cpu",
               f"train.out_dir={tmp_path}", "train.name=ddp"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    history = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["history"]
    B = 4  # episodes j B .. (j + 1) B - 1 at step j, half on each rank: the sum holds both halves
    assert [record["episode_id_sum"] for record in history] == [sum(range(j * B, (j + 1) * B)) for j in range(3)]
    events = EventAccumulator(str(tmp_path / "ddp" / "tensorboard"))
    events.Reload()
    assert [event.value for event in events.Scalars("train/episode_id_sum")] == [6.0, 22.0, 38.0]


if __name__ == "__main__":  # under torchrun, by the two-process test: the toy task and kind, then the trainer
    from metafwp.train.__main__ import main

    register_plugins()
    sys.exit(main(sys.argv[1:]))
