"""Continual meta-learning: the ACL objective against the learner run by hand on the prefix each term
names, MNIST in torchvision's idx layout (fixtures written in the real format), Split-MNIST streams,
the forgetting matrix through the trainer, and the errors a user can cause."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from episodes import MNIST, ContinualSampler, FewShotSampler, Glyphs, ImageClasses, MNIST5k, split_mnist
from episodes.batch import concatenate_steps
from metafwp.errors import DataError
from metafwp.losses import continual_loss
from metafwp.models import SequenceLearner, feature_size
from metafwp.models.backbones import Conv4
from metafwp.tasks import ContinualTask
from metafwp.tasks.continual import check_label_space
from metafwp.train import ConfigError, load_config, train
from tests.helpers import TINY, TINY_SEQUENCE, assert_close, learner_of, write_mnist

ROOT = Path(__file__).parents[1]
RECIPE = ROOT / "recipes/glyphs_continual_domain_acl.yaml"


def random_classes(num_classes=6, per_class=6, side=16):
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (num_classes * per_class, 1, side, side), dtype=torch.uint8, generator=generator)
    return ImageClasses(images, torch.arange(num_classes).repeat_interleave(per_class))


def learner(mixer="srwm", num_outputs=2):
    torch.manual_seed(0)
    backbone = Conv4(1, filters=4, norm="instance")
    return SequenceLearner(backbone, feature_size(backbone, (1, 16, 16)), num_outputs, num_outputs + 1, mixer=mixer,
                           d_model=16, num_layers=2, num_heads=2)


def streams(num_tasks=3, class_incremental=False, batch_size=4):
    data = random_classes()
    samplers = [FewShotSampler(data, 2, 2, 1, seed=t) for t in range(num_tasks)]
    return ContinualSampler(samplers, class_incremental=class_incremental, seed=2).sample(range(batch_size))


def term_by_hand(model, batch, s, t):
    """Task s's query loss read after contexts 1 .. t, from one plain pass over them and the query."""
    query = batch.queries[s]
    logits, _ = model(concatenate_steps(batch.contexts[:t + 1] + [query]))
    logits = logits[:, -query.num_steps:]
    return F.cross_entropy(logits.flatten(0, 1), query.targets.flatten()), (logits.argmax(-1) == query.targets)


@pytest.mark.parametrize("mixer", ["srwm", "delta", "lstm"])
@pytest.mark.parametrize("backward", [True, False])
def test_each_term_is_the_learner_run_by_hand_on_its_prefix(mixer, backward):
    model, batch = learner(mixer), streams()
    result = continual_loss(model, batch, backward=backward, first_task_scale=2.0, read_earlier=True)
    expected, weights = [], []
    for t in range(3):
        for s in range(t + 1):
            term, hits = term_by_hand(model, batch, s, t)
            assert result.terms[s, t].item() == pytest.approx(term.item(), rel=1e-5), (s, t)
            assert torch.equal(result.correct[:, s, t], hits.float().sum(1))
            if s == t or backward:
                expected.append(term)
                weights.append(2.0 if s == t == 0 else 1.0)
    assert torch.isnan(result.terms[1, 0]) and torch.isnan(result.terms[2, 1])  # s > t is never read
    reference = sum(w * term for w, term in zip(weights, expected)) / len(expected)
    assert result.loss.item() == pytest.approx(reference.item(), rel=1e-5)
    params = list(model.parameters())
    for i, (g, r) in enumerate(zip(torch.autograd.grad(result.loss, params), torch.autograd.grad(reference, params))):
        assert_close(f"gradient {i}", g, r, rtol=1e-4)


def test_without_acl_the_earlier_tasks_are_not_read_and_carry_no_gradient():
    model, batch = learner(), streams()
    reads = []
    model.blocks[0].register_forward_hook(lambda module, args, output: reads.append(args[0].shape[1]))
    result = continual_loss(model, batch, backward=False)
    assert len(reads) == 3 + 3 and torch.isnan(result.terms[0, 2])  # three contexts, three own queries
    reads.clear()
    continual_loss(model, batch, backward=True)
    assert len(reads) == 3 + 6
    with pytest.raises(TypeError, match="reads a ContinualBatch"):
        continual_loss(model, batch.contexts[0])


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_reads_torchvisions_idx_layout(tmp_path, compress):
    write_mnist(tmp_path, compress=compress)
    digits = MNIST(tmp_path, "test")
    assert digits.images.shape == (40, 1, 28, 28) and digits.class_names == [str(d) for d in range(10)]
    assert torch.equal(digits.images[:, 0, 0, 0], digits.labels.to(torch.uint8) * 10)  # each image keeps its label


def test_bad_mnist_files_get_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="torchvision.datasets.MNIST"):
        MNIST(tmp_path, "test")
    raw = write_mnist(tmp_path, compress=False)
    images = raw / "t10k-images-idx3-ubyte"
    good = images.read_bytes()
    images.write_bytes(good[:-5])
    with pytest.raises(ValueError, match="truncated or not MNIST"):
        MNIST(tmp_path, "test")
    images.write_bytes((2049).to_bytes(4, "big") + good[4:])
    with pytest.raises(ValueError, match="magic number 2049, expected 2051"):
        MNIST(tmp_path, "test")


def test_the_mnist_files_and_their_headers_are_checked_when_the_config_loads(tmp_path):
    settings = ["data.test_dataset=mnist", f"data.test_root={tmp_path}"]
    with pytest.raises(FileNotFoundError, match="MNIST file not found: .*t10k-images-idx3-ubyte"):
        load_config(RECIPE, settings)
    raw = write_mnist(tmp_path, compress=False)
    load_config(RECIPE, settings)
    labels = raw / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-1])
    with pytest.raises(DataError, match="data.test_root: .*t10k-labels-idx1-ubyte holds 47 bytes, but its header"):
        load_config(RECIPE, settings)
    images = raw / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:8] + (27).to_bytes(4, "big") + images.read_bytes()[12:])
    with pytest.raises(DataError, match="data.test_root: .*"):
        load_config(RECIPE, settings)


def test_split_mnist_streams_hold_the_five_digit_pairs(tmp_path):
    write_mnist(tmp_path, per_digit=6)
    digits = MNIST(tmp_path, "test")
    domain = split_mnist(digits, 2, 1, seed=0).sample(range(20))
    for t, (context, query) in enumerate(zip(domain.contexts, domain.queries)):
        shown = context.inputs[:, :, 0, 0, 0].div(10).long()
        assert set(shown.unique().tolist()) == {2 * t, 2 * t + 1}
        assert set(context.targets.unique().tolist()) == {0, 1} and bool((query.feedback == 2).all())
    classes = split_mnist(digits, 2, 1, class_incremental=True, seed=0)
    batch = classes.sample(range(20))
    assert classes.num_classes == 10 and set(batch.queries[4].targets.unique().tolist()) == {8, 9}
    assert bool((batch.queries[4].feedback == 10).all())
    with pytest.raises(ValueError, match="ten digit classes"):
        split_mnist(random_classes(), 2, 1)


def test_the_embedded_mnist_digits_are_real_digits():
    digits = MNIST5k()
    assert digits.class_counts.tolist() == [500] * 10 and digits.images.shape[1:] == (1, 28, 28)
    ones, zeros = digits.images[digits.labels == 1].float().mean(0), digits.images[digits.labels == 0].float().mean(0)
    assert ones[0, 14, 14] > 100 > zeros[0, 14, 14]  # a 1 has ink in the middle, a 0 a hole


def test_streams_whose_labels_the_learner_cannot_hold_are_refused(tmp_path):
    data = random_classes()
    mixed = ContinualSampler([FewShotSampler(data, 2, 2, 1), FewShotSampler(data, 3, 2, 1)])
    with pytest.raises(ConfigError, match="stream of 2 tasks of 2/3 ways needs 3 labels, but the learner has 2"):
        check_label_space(mixed, 2, "test")
    with pytest.raises(ConfigError, match=r"class-incremental stream of 5 tasks of 2 ways needs 10 labels, but "
                                          r"the learner has 6 outputs \(data.num_tasks=3 x data.n_way=2\)"):
        tiny_continual(tmp_path, "data.class_incremental=true", "data.num_tasks=3")  # when the config loads
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("override,message", [
    ("data.train_sources=[mnist]", "Unknown data.train_sources entry 'mnist'"),
    ("data.test_dataset=emnist", "Unknown data.test_dataset 'emnist'. Valid: mnist5k, mnist"),
    ("data.num_tasks=0", "data.num_tasks must be >= 1"),
    ("data.val_splits=null", "eval.val_every=200 needs data.val_splits"),
    ("data.val_splits=[background]", "data.val_splits[0]=background shares classes with the training split"),
    ("eval.baselines=[pixel_nn]", "task=continual has no baselines to run"),
    ("data.roots=[a,b]", "data.roots gives 2 values for 1 data.train_sources"),
])
def test_bad_settings_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(RECIPE, [override])


def tiny_continual(tmp_path, *overrides):
    return load_config(RECIPE, TINY + TINY_SEQUENCE + ["data.num_tasks=3", "data.k_shot=2", "data.test_k_shot=3",
                                                        "train.steps=3", "eval.val_every=0",
                                                        f"train.out_dir={tmp_path}",
                                                        *overrides])


def test_continual_validates_on_streams_of_held_out_classes_and_tests_the_best(tmp_path):
    config = tiny_continual(tmp_path, "data.train_splits=[train]", "data.val_splits=[val]", "eval.val_every=1",
                            "eval.val_episodes=6", "train.name=validated")
    run_dir = train(config)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    accuracies = [record["accuracy"] for record in metrics["validation"]]
    assert len(accuracies) == 3 and metrics["best"]["step"] == 1 + accuracies.index(max(accuracies))
    assert metrics["tested"] == f"best.pt (step {metrics['best']['step']})"
    task = ContinualTask(config, progress=False)
    val_classes = set(Glyphs("val", progress=False).class_names)
    for sampler in task.val_sampler.samplers:  # every validation task draws from the val blocks only
        assert {sampler.dataset.class_names[int(c)] for c in sampler.class_ids} <= val_classes


def test_continual_trains_and_tests_the_forgetting_matrix(tmp_path):
    config = tiny_continual(tmp_path, "data.num_tasks=5")
    run_dir = train(config)
    result = json.loads((run_dir / "metrics.json").read_text())["test"]["srwm"]
    mean = result["forgetting"]["mean"]
    assert len(mean) == 5 and mean[1][0] is None and all(v is not None for v in mean[0])
    assert result["accuracy"] == pytest.approx(result["final_average"])
    assert result["final_average"] == pytest.approx(np.mean([row[-1] for row in mean]))
    assert (run_dir / "forgetting.png").is_file()
    _, model = learner_of(run_dir)
    task = ContinualTask(config, progress=False)
    batch = task.make_test_stream(config.eval.seed).sample(range(12))
    with torch.no_grad():  # task 1 after all five, by hand
        query = batch.queries[0]
        logits, _ = model(concatenate_steps(batch.contexts + [query]))
        hits = (logits[:, -query.num_steps:].argmax(-1) == query.targets).double().mean(1)
    assert mean[0][4] == pytest.approx(100 * hits.mean().item(), abs=1e-4)
    assert result["forgetting"]["ci95"][0][4] == pytest.approx(100 * 1.96 * hits.std().item() / np.sqrt(12), abs=1e-4)
