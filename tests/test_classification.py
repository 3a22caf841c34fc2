"""Plain image classification: the episodes hold the split's images and labels; the MLP classifier
equals its layers written out in float64; the task's accuracy equals a loop over the test images;
the recipe's MLP learns the digits; bad settings are refused before any work."""
import json
import re

import pytest
import torch
import torch.nn.functional as F

from episodes import LabelledImagesSampler, MNIST5k
from episodes.irregular import SPLITS_FILE
from metafwp.train import ConfigError, load_config, train
from tests.helpers import ROOT, accuracy_by_hand, learner_of

RECIPE = ROOT / "recipes/mnist5k_mlp_classifier.yaml"


@pytest.fixture(scope="module")
def digits():
    return MNIST5k()


def test_episodes_are_the_splits_images_and_labels(digits):
    split = json.loads(SPLITS_FILE.read_text())
    test = LabelledImagesSampler(digits, "test", seed=1).sample(range(7))
    assert test.inputs.shape == (7, 1, 1, 28, 28) and test.inputs.dtype == torch.uint8
    assert torch.equal(test.inputs[:, 0], digits.images[split["test"][:7]])
    assert torch.equal(test.targets[:, 0], digits.labels[split["test"][:7]])
    assert (test.feedback == 10).all() and test.loss_mask.all() and test.num_classes == 10  # no label is shown
    train_sampler = LabelledImagesSampler(digits, "train", seed=1)
    batch = train_sampler.sample(range(300))
    training = digits.images[split["train"]].flatten(1)
    for image in batch.inputs[:, 0].flatten(1):  # every draw is a training image
        assert (training == image).all(1).any()
    assert torch.equal(train_sampler.sample(range(5, 9)).inputs, batch.inputs[5:9])  # episode i is fixed
    assert not torch.equal(LabelledImagesSampler(digits, "train", seed=2).sample(range(300)).inputs, batch.inputs)


def test_the_mlp_is_its_layers_written_out(tmp_path):
    config = load_config(RECIPE, [f"train.out_dir={tmp_path}", "model.hidden=[7,5]"])
    from metafwp.tasks import TASKS
    model = TASKS["classification"](config, progress=False).build_learner(config.model).double()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 7), (7, 5), (5, 10)]
    batch = LabelledImagesSampler(MNIST5k(), "val").sample(range(4))
    x = batch.inputs.double().flatten(2) / 255  # [B, 1, 784]
    for layer in linears[:-1]:
        x = (x @ layer.weight.T + layer.bias).clamp_min(0)
    expected = x @ linears[-1].weight.T + linears[-1].bias
    assert torch.allclose(model(batch)[0], expected, atol=1e-12)


def test_the_recipe_learns_the_digits_and_reports_what_a_loop_measures(tmp_path):
    config = load_config(RECIPE, ["train.steps=150", "eval.val_every=75", "eval.val_episodes=100",
                                  "eval.episodes=200", f"train.out_dir={tmp_path}", "train.progress=none",
                                  "train.threads=1"])
    run_dir = train(config)
    result = json.loads((run_dir / "metrics.json").read_text())["test"]["classifier"]
    _, model = learner_of(run_dir)
    batch = LabelledImagesSampler(MNIST5k(), "test", seed=config.eval.seed).sample(range(200))
    mean, ci95 = accuracy_by_hand(model, batch)
    assert result["accuracy"] == pytest.approx(mean) and result["ci95"] == pytest.approx(ci95, rel=1e-6)
    with torch.no_grad():
        loss = F.cross_entropy(model(batch)[0][:, 0], batch.targets[:, 0]).item()
    assert result["loss"] == pytest.approx(loss, rel=1e-5)
    assert result["accuracy"] > 80  # SGD with momentum, about 5 epochs of 4,000 digits
    assert (run_dir / "accuracy.png").is_file()


@pytest.mark.parametrize("overrides,message", [
    (["eval.episodes=501"], "eval.episodes=501: the test split holds 500 digits, each read once"),
    (["data.dataset=cifar10"], "Unknown data.dataset 'cifar10'. Valid: mnist5k"),
    (["model.network=vit"], "Unknown model.network 'vit'. Valid: mlp, backbone"),
    (["model.hidden=[800,0]"], "model.hidden widths must be >= 1, got [800, 0]"),
    (["model.network=backbone", "model.hidden=[8]"], "model.hidden is not read with model.kind=classifier, "
                                                     "model.network=backbone"),
    (["model.backbone=conv4"], "model.backbone is not read with model.kind=classifier, model.network=mlp"),
])
def test_bad_settings_are_refused_before_any_work(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config = load_config(RECIPE, overrides + [f"train.out_dir={tmp_path}"])
        train(config)
    assert not list(tmp_path.iterdir())
