"""The MQAR task: its tallies (Zoology's per-episode accuracy, accuracy by the distance back to the
queried pair) against a plain loop over episodes and queries; a tiny run of its recipe with every
hybrid variant tests what it says; bad settings refused at load."""
import json

import pytest
import torch

from metafwp.tasks import MQARTask
from metafwp.train import ConfigError, load_config, train
from tests.helpers import ROOT, accuracy_by_hand, learner_of

RECIPE = ROOT / "recipes/mqar_hqlt.yaml"
TINY = ["data.vocab_size=40", "data.length=16", "data.num_pairs=3", "data.dataset_size=50", "model.d_model=16",
        "model.num_heads=2", "model.window=4", "train.steps=3", "train.batch_size=8", "eval.val_every=0",
        "eval.episodes=24", "eval.batch_size=12"]


def distance_accuracy_by_hand(model, batch) -> dict[int, tuple[int, int]]:
    """``{distance: (right, queries)}``: each query's steps back to its key, found by reading the context."""
    counts = {}
    with torch.no_grad():
        for b in range(batch.batch_size):
            logits = model(batch[b])[0][0]
            tokens = batch.inputs[b].tolist()
            for p in torch.nonzero(batch.loss_mask[b]).flatten().tolist():
                key_position = next(i for i in range(0, p, 2) if tokens[i] == tokens[p])
                right, total = counts.get(p - key_position, (0, 0))
                counts[p - key_position] = (right + int(logits[p].argmax() == batch.targets[b, p]), total + 1)
    return counts


def test_the_tallies_are_zoologys_accuracy_and_the_distances_are_read_from_the_context():
    config = load_config(RECIPE, TINY)
    task = MQARTask(config, progress=False)
    torch.manual_seed(0)
    model = task.build_learner(config.model).eval()
    batch = task.make_sampler(seed=3).sample(range(12))
    with torch.no_grad():
        record = task.summarise(task.objective(model, batch).sums)
    assert record["accuracy"] == pytest.approx(accuracy_by_hand(model, batch)[0], abs=1e-9)
    counts = distance_accuracy_by_hand(model, batch)
    for name, value in record["by_distance"].items():
        low, high = (int(x) for x in name.split("-"))
        right = sum(r for d, (r, n) in counts.items() if low <= d <= high)
        total = sum(n for d, (r, n) in counts.items() if low <= d <= high)
        assert value == pytest.approx(100 * right / total)
    assert sum(n for _, n in counts.values()) == 12 * 3


@pytest.mark.parametrize("variant", ["synchronous", "delayed_stream", "delayed_chunk"])
def test_a_tiny_run_tests_what_it_reports(tmp_path, variant):
    run_dir = train(load_config(RECIPE, TINY + [f"model.hybrid_variant={variant}", f"train.out_dir={tmp_path}",
                                                "train.name=run", "train.progress=none"]))
    config, model = learner_of(run_dir)
    result = json.loads((run_dir / "metrics.json").read_text())["test"]["hqlt"]
    batch = MQARTask(config, progress=False).make_sampler(config.eval.seed).sample(range(24))
    assert result["accuracy"] == pytest.approx(accuracy_by_hand(model.eval(), batch)[0], abs=1e-6)
    assert (run_dir / "accuracy_by_distance.png").is_file()


@pytest.mark.parametrize("overrides,message", [
    (["data.length=63"], "length must be even"),
    (["data.num_pairs=17"], "17 pairs need 2 N \\+ 2 N = 68 positions, more than length=64"),
    (["data.vocab_size=64"], "vocab_size must be more than length=64"),
    (["data.dataset_size=0"], "dataset_size must be an int >= 1"),
])
def test_bad_settings_are_refused_at_load(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(RECIPE, overrides)
