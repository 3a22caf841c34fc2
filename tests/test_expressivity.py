"""Expressivity: the formal-language strings and labels against plain Python, the task's tallies
against a loop over the trained learner, a short training run that learns parity, the study, and
the errors a user can cause."""
import json
import re
from pathlib import Path

import pytest
import torch

from episodes.formal import FormalLanguageSampler
from metafwp.tasks import ExpressivityTask
from metafwp.train import ConfigError, load_config, train
from tests.helpers import learner_of

ROOT = Path(__file__).parents[1]
RECIPE = ROOT / "recipes/expressivity_parity.yaml"
TINY = ["model.d_model=16", "model.num_heads=2", "train.batch_size=8", "train.log_every=1",
        "train.checkpoint_every=5", "train.progress=none", "eval.episodes=20", "eval.batch_size=8", "train.threads=1"]


@pytest.mark.parametrize("recipe,protocol,expected", [
    ("expressivity_parity", "bhattamishra", sum(0.5 ** n for n in range(2, 9)) / 7),
    ("expressivity_mod_add", "bhattamishra", sum((1 / 3) ** n for n in range(2, 9)) / 7),
    ("expressivity_anbn", "bhattamishra", sum(0.5 ** n for n in (2, 4, 6, 8)) / 4),
    ("expressivity_parity", "grazzi", 0.5)])
def test_chance_is_a_uniform_guess_at_every_step_scored_as_the_protocol_scores(recipe, protocol, expected):
    """Guesses drawn uniformly at every step of 20,000 training strings (2-8 steps, or 3-8 for grazzi):
    the share scored right (whole strings under bhattamishra, the last step under grazzi) matches chance."""
    config = load_config(ROOT / "recipes" / f"{recipe}.yaml", [f"data.protocol={protocol}", "data.train_length=8"])
    task = ExpressivityTask(config, progress=False)
    batch = task.train_episodes().sample(range(20_000))
    classes = config.data.modulus if config.data.language == "mod_add" else 2
    guesses = torch.randint(classes, batch.targets.shape, generator=torch.Generator().manual_seed(0))
    right = (guesses == batch.targets) | ~batch.loss_mask
    if protocol == "bhattamishra":
        scored = right.all(1)
    else:
        scored = right[torch.arange(len(right)), batch.loss_mask.sum(1) - 1]
    share = scored.double().mean().item()
    half_width = 4 * (expected * (1 - expected) / len(scored)) ** 0.5
    assert share == pytest.approx(expected, abs=half_width)
    assert ExpressivityTask.chance(config) == pytest.approx(100 * expected)


def strings(batch):
    """Each episode's string (its real steps) and targets as Python lists."""
    for i in range(batch.batch_size):
        length = int(batch.loss_mask[i].sum())
        assert batch.loss_mask[i, :length].all() and not batch.loss_mask[i, length:].any()
        yield batch.inputs[i, :length].tolist(), batch.targets[i, :length].tolist(), length


@pytest.mark.parametrize("language,modulus", [("parity", 2), ("mod_add", 2), ("mod_add", 5)])
def test_prefix_sums_match_plain_python(language, modulus):
    sampler = FormalLanguageSampler(language, 12, min_length=3, modulus=modulus, seed=4)
    batch = sampler.sample(range(200))
    assert batch.inputs.shape == (200, 12) and batch.inputs.dtype == torch.int64
    assert batch.feedback.shape == (200, 12, 0)
    lengths = set()
    for tokens, targets, length in strings(batch):
        lengths.add(length)
        assert targets == [sum(tokens[:t + 1]) % modulus for t in range(length)]
    assert lengths == set(range(3, 13))
    assert (batch.inputs[~batch.loss_mask] == -1).all() and batch.inputs[batch.loss_mask].min() >= 0  # -1: padding
    assert torch.equal(sampler.sample(range(5, 9)).inputs, batch.inputs[5:9])  # episode i is the same in any batch


def test_anbn_labels_every_prefix_and_balances_the_strings():
    sampler = FormalLanguageSampler("anbn", 20, seed=1)
    batch = sampler.sample(range(2000))
    finals, counts_right, order_right = [], 0, 0
    for tokens, targets, length in strings(batch):
        assert length % 2 == 0
        word = "".join("ab"[t] for t in tokens)
        assert targets == [int(re.fullmatch(r"(a+)(b+)", word[:t + 1]) is not None
                               and word[:t + 1].count("a") == word[:t + 1].count("b")) for t in range(length)]
        finals.append(targets[-1])
        if not targets[-1]:
            counts_right += word.count("a") == length // 2
            order_right += re.fullmatch(r"a*b*", word) is not None
    negatives = finals.count(0)
    assert 0.46 < sum(finals) / len(finals) < 0.54
    assert 0.4 < counts_right / negatives < 0.6 and 0.4 < order_right / negatives < 0.6  # both kinds of negative


def test_bad_sampler_settings():
    with pytest.raises(ValueError, match="max_length must be an int >= 1 for parity, got 0"):
        FormalLanguageSampler("parity", 0)
    with pytest.raises(ValueError, match="modulus must be an int >= 2, got 1"):
        FormalLanguageSampler("mod_add", 8, modulus=1)
    with pytest.raises(ValueError, match="anbn strings have even length"):
        FormalLanguageSampler("anbn", 7, min_length=7)
    with pytest.raises(ValueError, match="Unknown language 'dyck'"):
        FormalLanguageSampler("dyck", 8)


@pytest.mark.parametrize("override,message", [
    ("data.train_length=0", "data.train_length must be >= 1, got 0"),
    ("data.test_length=8", "data.test_length=8 is shorter than data.train_length=16"),
    ("data.language=dyck", "Unknown data.language 'dyck'"),
    ("data.protocol=weiss", "Unknown data.protocol 'weiss'. Valid: prefix, bhattamishra, grazzi"),
    ("data.min_train_length=20", "data.min_train_length=20 is above data.train_length=16"),
    ("eval.baselines=[pixel_nn]", "task=expressivity has no baselines"),
    ("model.num_householder=0", "model.num_householder must be >= 1"),
])
def test_bad_settings_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(RECIPE, [override])


@pytest.mark.parametrize("protocol,lengths", [("grazzi", ["data.train_length=40", "data.test_length=40"]),
                                              ("bhattamishra", ["data.train_length=50", "data.test_length=30"])])
def test_a_literature_protocol_needs_test_lengths_beyond_training(protocol, lengths):
    message = f"does not exceed data.train_length=50: under the {protocol} protocol the test range must reach past"
    with pytest.raises(ConfigError, match=re.escape(message.replace("50", lengths[0].split("=")[1]))):
        load_config(RECIPE, [f"data.protocol={protocol}", *lengths])


@pytest.mark.parametrize("protocol,bins", [("prefix", [(16, 16), (64, 64)]), ("bhattamishra", [(2, 50), (51, 100)]),
                                           ("grazzi", [(3, 40), (40, 256)])])
def test_each_protocol_tests_its_papers_lengths(protocol, bins):
    overrides = [f"data.protocol={protocol}"] + ([] if protocol == "prefix" else ["data.train_length=null"])
    task = ExpressivityTask(load_config(RECIPE, overrides), progress=False)
    tests = task.test_episodes()
    assert [tuple(options["lengths"]) for _, options in tests.values()] == bins
    for (sampler, _), (low, high) in zip(tests.values(), bins):
        lengths = sampler.sample(range(2000)).loss_mask.sum(1)
        assert (lengths.min().item(), lengths.max().item()) == (low, high)
    train_lengths = task.train_episodes().sample(range(2000)).loss_mask.sum(1)
    assert train_lengths.max().item() == (16 if protocol == "prefix" else bins[0][1])
    assert train_lengths.min().item() == (1 if protocol == "prefix" else bins[0][0])


@pytest.mark.parametrize("protocol", ["prefix", "bhattamishra", "grazzi"])
def test_each_protocol_supervises_and_scores_what_its_paper_does(protocol):
    """The loss and the headline against plain per-string loops: grazzi supervises and scores only the
    last step; bhattamishra counts a string right only if every step is; prefix scores the last step."""
    torch.manual_seed(0)
    config = load_config(RECIPE, TINY + [f"data.protocol={protocol}", "data.train_length=8", "data.test_length=12",
                                         "data.min_train_length=2"])
    task = ExpressivityTask(config, progress=False)
    model = task.build_learner(config.model).double()
    batch = task.train_episodes().sample(range(40))
    scores = task.objective(model, batch)
    outputs = model(batch)[0].detach()
    losses, verdicts = [], []
    for i in range(40):
        length = int(batch.loss_mask[i].sum())
        log_p = torch.log_softmax(outputs[i, :length], -1)
        step_losses = [-log_p[t, batch.targets[i, t]].item() for t in range(length)]
        right = [outputs[i, t].argmax().item() == batch.targets[i, t].item() for t in range(length)]
        losses += step_losses[-1:] if protocol == "grazzi" else step_losses
        verdicts.append(all(right) if protocol == "bhattamishra" else right[-1])
    assert scores.loss.item() == pytest.approx(sum(losses) / len(losses), rel=1e-6)  # fp32 CE
    assert scores.per_episode.tolist() == [float(v) for v in verdicts]
    assert task.summarise(scores.sums)["accuracy"] == pytest.approx(100 * sum(verdicts) / 40)


def test_a_modulus_below_two_is_a_config_error():
    with pytest.raises(ConfigError, match="data.modulus must be >= 2, got 1"):
        load_config(ROOT / "recipes/expressivity_mod_add.yaml", ["data.modulus=1"])


def test_trains_tests_at_both_lengths_and_the_tallies_match_a_loop(tmp_path):
    config = load_config(RECIPE, TINY + ["train.steps=6", "data.train_length=6", f"train.out_dir={tmp_path}",
                                         "model.mixer=delta_rnn"])
    run_dir = train(config)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) == {"delta_rnn@6", "delta_rnn@24"}
    assert (run_dir / "accuracy_by_position.png").is_file()
    _, model = learner_of(run_dir)
    task = ExpressivityTask(config, progress=False)
    for length in (6, 24):
        batch = task.make_sampler(length, length, config.eval.seed).sample(range(20))
        with torch.no_grad():
            predictions = model(batch)[0].argmax(-1)
        right = predictions == batch.targets
        result = metrics["test"][f"delta_rnn@{length}"]
        assert result["accuracy"] == pytest.approx(100 * right[:, -1].double().mean().item())
        assert result["step_accuracy"] == pytest.approx(100 * right.double().mean().item())
        assert result["by_position"] == pytest.approx((100 * right.double().mean(0)).tolist())


def test_delta_with_negative_eigenvalues_learns_parity(tmp_path):
    """300 steps of the recipe (DeltaNet, beta in (0, 2)) fit parity on the training lengths."""
    config = load_config(RECIPE, ["train.steps=300", "train.progress=none", "train.threads=1", "eval.episodes=200",
                                  f"train.out_dir={tmp_path}"])
    result = json.loads((train(config) / "metrics.json").read_text())["test"]["delta@16"]
    assert result["accuracy"] > 95


@pytest.mark.parametrize("value", ["0.0", "inf"])
def test_a_mesa_lambda_that_is_not_positive_and_finite_is_refused(value):
    with pytest.raises(ConfigError, match=re.escape("model.mesa_lambda must be finite and > 0 (the ridge term of the "
                                                    f"mesa rule), got {float(value)}")):
        load_config(RECIPE, ["model.mixer=mesa", f"model.mesa_lambda={value}"])
    from metafwp.nn import FastWeightLayer
    with pytest.raises(ValueError, match="mesa_lambda must be finite and > 0, got -1"):
        FastWeightLayer(16, 2, rule="mesa", mesa_lambda=-1)
