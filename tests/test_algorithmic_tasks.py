"""The code-execution and ListOps tasks: their tallies against plain loops over programs and
positions (the authors' three numbers) and over expressions; tiny runs of their recipes test what
they report; bad settings refused at load."""
import json

import pytest
import torch

from episodes.code_execution import NO_OP
from metafwp.tasks import TASKS
from metafwp.train import ConfigError, load_config, train
from tests.helpers import ROOT, accuracy_by_hand, learner_of

CODE = ROOT / "recipes/code_execution_small_delta_rnn.yaml"
LISTOPS = ROOT / "recipes/listops_small_delta_rnn.yaml"
TINY = ["model.d_model=16", "train.steps=2", "train.batch_size=4", "eval.val_every=0",
        "eval.episodes=12", "eval.batch_size=6"]


def code_scores_by_hand(model, batch) -> dict:
    programs = noops = noop_right = prints = print_right = 0
    with torch.no_grad():
        for b in range(batch.batch_size):
            guesses = model(batch[b])[0][0].argmax(-1)
            whole = True
            for t in torch.nonzero(batch.loss_mask[b]).flatten().tolist():
                right, target = bool(guesses[t] == batch.targets[b, t]), int(batch.targets[b, t])
                whole &= right
                if target == NO_OP:
                    noops, noop_right = noops + 1, noop_right + right
                else:
                    prints, print_right = prints + 1, print_right + right
            programs += whole
    return {"accuracy": 100 * programs / batch.batch_size, "noop_accuracy": 100 * noop_right / noops,
            "print_accuracy": 100 * print_right / prints}


@pytest.mark.parametrize("mixer", ["delta_rnn", "lstm"])
def test_code_execution_reports_the_authors_three_numbers(tmp_path, mixer):
    run_dir = train(load_config(CODE, TINY + ["data.num_statements=6", "data.dataset_size=20", f"model.mixer={mixer}",
                                              f"train.out_dir={tmp_path}", "train.progress=none"]))
    config, model = learner_of(run_dir)
    result = json.loads((run_dir / "metrics.json").read_text())["test"][mixer]
    batch = TASKS["code_execution"](config, progress=False).make_sampler(config.eval.seed).sample(range(12))
    for name, value in code_scores_by_hand(model.eval(), batch).items():
        assert result[name] == pytest.approx(value, abs=1e-6), name


def test_code_execution_tallies_on_an_untrained_learner_whose_guesses_vary():
    config = load_config(CODE, TINY + ["data.num_statements=4"])
    task = TASKS["code_execution"](config, progress=False)
    torch.manual_seed(3)
    model = task.build_learner(config.model).eval()
    batch = task.make_sampler(seed=5).sample(range(16))
    with torch.no_grad():
        record = task.summarise(task.objective(model, batch).sums)
    expected = code_scores_by_hand(model, batch)
    for name, value in expected.items():
        assert record[name] == pytest.approx(value), name


def test_listops_scores_the_value_at_the_last_token(tmp_path):
    run_dir = train(load_config(LISTOPS, TINY + ["data.depth=3", f"train.out_dir={tmp_path}", "train.progress=none"]))
    config, model = learner_of(run_dir)
    result = json.loads((run_dir / "metrics.json").read_text())["test"]["delta_rnn"]
    batch = TASKS["listops"](config, progress=False).make_sampler(config.eval.seed).sample(range(12))
    assert (batch.loss_mask.sum(1) == 1).all()
    last = batch.loss_mask.float().argmax(1)
    assert torch.equal(last + 1, (batch.inputs >= 0).sum(1))   # the scored step is the last real token
    assert result["accuracy"] == pytest.approx(accuracy_by_hand(model.eval(), batch)[0], abs=1e-6)


@pytest.mark.parametrize("recipe,overrides,message", [
    (CODE, ["data.num_variables=0"], "num_variables must be an int in \\[1, 5\\]"),
    (CODE, ["data.num_variables=6"], "num_variables must be an int in \\[1, 5\\]"),
    (CODE, ["data.num_statements=1"], "num_statements must be an int >= 2"),
    (CODE, ["data.semantics=python"], "Unknown semantics 'python'"),
    (LISTOPS, ["data.depth=20"], "depth must be an int in \\[1, 19\\]"),
    (LISTOPS, ["data.depth=0"], "depth must be an int in \\[1, 19\\]"),
])
def test_bad_settings_are_refused_at_load(recipe, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(recipe, overrides)
