"""The copy task: its tallies against a plain loop; online RTRL through the task's training step
gives, summed over a sequence, exactly the gradients of backpropagation through time for the
e-LSTM and every layer above it, and one-token gradients to the layers below it (float64);
truncated BPTT cuts the graph at its windows; bad input."""
import contextlib

import pytest
import torch
import torch.nn.functional as F

from metafwp.tasks import LEARNER, CopyTask
from metafwp.train import ConfigError, load_config

TINY = ["task=copy", "model.mixer=elstm", "model.num_layers=1", "model.d_model=8", "data.length=5",
        "train.batch_size=6", "eval.episodes=6", "eval.batch_size=6"]


class SummingTrainer:
    """A trainer stand-in that sums each step's gradients (backward, then ``after_backward``) and
    never steps: the gradient of the sum of the per-token losses."""

    def __init__(self, model):
        self.models = {LEARNER: model}

    def autocast(self):
        return contextlib.nullcontext()

    def total(self, value):
        return value

    def step(self, loss, optimizer=LEARNER, terms=None, after_backward=None):
        (loss * terms).backward()  # each token's loss is a mean over its scored bits: back to their sum
        if after_backward is not None:
            after_backward()


def task_and_learner(*overrides):
    config = load_config(None, TINY + list(overrides))
    task = CopyTask(config, progress=False)
    torch.manual_seed(0)
    return task, task.build_learner(config.model).double()


def test_the_tallies_score_every_recalled_bit_and_whole_sequences():
    task, model = task_and_learner()
    batch = task.sampler.sample(range(6))
    scores = task.scores(model(batch)[0], batch)
    record = task.summarise(scores.sums)
    with torch.no_grad():
        guesses = model(batch)[0].argmax(-1)
    right = [(guesses[b] == batch.targets[b])[batch.loss_mask[b]] for b in range(6)]
    assert record["bit_accuracy"] == pytest.approx(100 * torch.cat(right).double().mean().item())
    assert record["accuracy"] == pytest.approx(100 * sum(bool(r.all()) for r in right) / 6)
    assert int(scores.sums["bits"]) == int(batch.loss_mask.sum())


def test_chance_is_the_share_of_patterns_a_coin_flipper_recalls_whole():
    task, _ = task_and_learner()
    batch = task.sampler.sample(range(20000))
    guesses = torch.randint(0, 2, batch.targets.shape, generator=torch.Generator().manual_seed(0))
    whole = ((guesses == batch.targets) | ~batch.loss_mask).all(1).double()
    half_width = 4 * whole.std().item() / len(whole) ** 0.5
    assert 100 * whole.mean().item() == pytest.approx(CopyTask.chance(task.config), abs=100 * half_width)
    assert CopyTask.chance(task.config) == pytest.approx(100 * sum(2.0 ** -s for s in range(1, 6)) / 5)


BELOW = ("input_proj.", "blocks.0.mixer_norm.")  # the embedding and the e-LSTM's input norm


def summed_loss_gradients(model, batch, span=None):
    """Gradients of the summed per-bit losses: through the whole sequence, or with the state cut
    from the graph after every ``span`` tokens."""
    span, state, total = span or batch.num_steps, None, 0
    for start in range(0, batch.num_steps, span):
        piece = batch.steps(start, start + span)
        out, state = model(piece, state)
        per_step = F.cross_entropy(out.flatten(0, 1), piece.targets.flatten(), reduction="none")
        total = total + (per_step.view_as(piece.loss_mask) * piece.loss_mask).sum()
        state = [tuple(s.detach() for s in layer) if isinstance(layer, tuple) else layer.detach() for layer in state]
    names = [name for name, _ in model.named_parameters()]
    return dict(zip(names, torch.autograd.grad(total, list(model.parameters()))))


def test_online_rtrl_summed_over_a_sequence_is_bptt_above_and_one_token_below_the_elstm():
    task, model = task_and_learner("data.update=rtrl")
    batch = task.sampler.sample(range(6))
    bptt, one_token = summed_loss_gradients(model, batch), summed_loss_gradients(model, batch, span=1)
    task.training_step(SummingTrainer(model), batch)
    for name, parameter in model.named_parameters():
        expected = one_token[name] if name.startswith(BELOW) else bptt[name]
        torch.testing.assert_close(parameter.grad, expected, rtol=1e-6, atol=1e-7, msg=name)  # the loss is float32
    assert not torch.allclose(bptt["input_proj.weight"], one_token["input_proj.weight"])  # the cut is real


def test_truncated_bptt_cuts_the_graph_at_each_window():
    """With windows of 2 tokens, the gradient is that of the windows' losses with the state held fixed
    between them: a hand loop with detached states."""
    task, model = task_and_learner("data.update=tbptt", "data.window=2", "model.mixer=lstm")
    batch = task.sampler.sample(range(6))
    expected = summed_loss_gradients(model, batch, span=2)
    task.training_step(SummingTrainer(model), batch)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, expected[name], rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.parametrize("overrides,message", [
    (["data.update=rtrl", "model.mixer=delta", "model.num_heads=2"], "data.update=rtrl needs an e-LSTM learner"),
    (["data.update=rtrl", "model.num_layers=2"], "trains one e-LSTM layer online; model has 2"),
    (["data.update=tbptt", "data.window=0"], "data.window must be >= 1"),
    (["data.length=0"], "data.length must be >= 1"),
    (["data.update=online"], "Unknown data.update 'online'. Valid: bptt, tbptt, rtrl"),
])
def test_bad_settings_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, TINY + overrides)
