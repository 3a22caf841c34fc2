import math

import pytest
import torch
from torch.utils.data import DataLoader

from episodes import (BootstrapSampler, ContinualSampler, EpisodeStream, FewShotSampler, ImageClasses,
                      MultiTaskStream, RegressionSampler)


def coded_classes(num_classes, per_class, size=2, code_offset=0, channels=1):
    """Images whose pixel [0, 0, 0] is the class id + code_offset: [N, channels, size, size]."""
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    images = torch.zeros(labels.numel(), channels, size, size, dtype=torch.uint8)
    images[:, :, 0, 0] = (labels + code_offset).to(torch.uint8)[:, None]
    images[:, :, -1, -1] = torch.arange(labels.numel(), dtype=torch.uint8)[:, None]
    return ImageClasses(images, labels)


# ---------------------------------------------------------------- regression

@pytest.mark.parametrize("family", ["linear", "sparse_linear", "relu_network", "sinusoid"])
def test_regression_targets_follow_the_task(family):
    sampler = RegressionSampler(family, 12, 4, dim=5, num_nonzero=2, hidden=7, seed=3)
    batch = sampler.sample(range(6))
    tasks, x = sampler.tasks(range(6)), sampler.inputs(range(6))
    assert batch.inputs.shape == (6, 16, 1 if family == "sinusoid" else 5) and batch.targets.shape == (6, 16, 1)
    for b in range(6):  # an explicit per-point evaluation, independent of the sampler's batched one
        for t in range(16):
            point = x[b, t]
            if family in ("linear", "sparse_linear"):
                expected = sum(float(w) * float(v) for w, v in zip(tasks["weights"][b], point))
            elif family == "relu_network":
                hidden = [max(0.0, float(row @ point)) for row in tasks["hidden_weights"][b]]
                expected = sum(a * h for a, h in zip(tasks["output_weights"][b].tolist(), hidden)) / math.sqrt(7)
            else:
                expected = float(tasks["amplitude"][b]) * math.sin(float(point[0]) - float(tasks["phase"][b]))
            assert abs(float(batch.targets[b, t, 0]) - expected) < 1e-5 * (1 + abs(expected))
    if family == "sparse_linear":
        assert torch.equal((tasks["weights"] != 0).sum(1), torch.full((6,), 2))
    if family == "sinusoid":
        amplitude, phase = sampler.tasks(range(2000)).values()
        assert 0.1 <= float(amplitude.min()) and float(amplitude.max()) <= 5.0 and float(amplitude.max()) > 4.9
        assert 0 <= float(phase.min()) and float(phase.max()) <= math.pi
        points = sampler.inputs(range(200))
        assert -5 <= float(points.min()) and float(points.max()) <= 5


def test_linear_task_is_recovered_by_least_squares_and_noise_has_its_std():
    clean = RegressionSampler("linear", 20, 0, dim=4, input_distribution="uniform", seed=1)
    batch, tasks = clean.sample(range(3)), clean.tasks(range(3))
    assert float(batch.inputs.abs().max()) <= 1.0
    solution = torch.linalg.lstsq(batch.inputs.double(), batch.targets.double()).solution[..., 0]
    torch.testing.assert_close(solution, tasks["weights"], rtol=1e-5, atol=1e-5)
    noisy = RegressionSampler("linear", 200, 0, dim=4, input_distribution="uniform", noise_std=0.5, seed=1).sample(range(50))
    residual = noisy.targets[..., 0].double() - (noisy.inputs.double() @ clean.tasks(range(50))["weights"][..., None])[..., 0]
    assert abs(float(residual.std()) - 0.5) < 0.02


def test_regression_feedback_forms_and_determinism():
    sync = RegressionSampler("linear", 3, 2, dim=2, seed=5).sample(range(4))
    assert torch.equal(sync.feedback[:, :3, 0], sync.targets[:, :3, 0]) and bool((sync.feedback[:, 3:, 0] == 0).all())
    assert sync.feedback[..., 1].tolist() == [[0, 0, 0, 1, 1]] * 4
    assert sync.loss_mask.tolist() == [[False] * 3 + [True] * 2] * 4
    late = RegressionSampler("linear", 5, dim=2, feedback="delayed", seed=5).sample(range(4))
    assert torch.equal(late.feedback[:, 1:, 0], late.targets[:, :-1, 0]) and bool((late.feedback[:, 0, 1] == 1).all())
    again = RegressionSampler("linear", 3, 2, dim=2, seed=5).sample(range(2, 3))
    assert torch.equal(again.inputs[0], sync.inputs[2])
    with pytest.raises(ValueError, match="Unknown family 'cubic'"):
        RegressionSampler("cubic", 3)
    with pytest.raises(ValueError, match="num_nonzero must be in \\[1, dim=4\\]"):
        RegressionSampler("sparse_linear", 3, dim=4, num_nonzero=5)


# ---------------------------------------------------------------- bootstrapping

def test_bootstrap_parts_share_classes_and_never_share_examples():
    data = coded_classes(8, 10)
    sampler = BootstrapSampler(data, 4, 2, 3, n_query=1, seed=2)
    batch = sampler.sample(range(30))
    assert (batch.support.num_steps, batch.future.num_steps, batch.query.num_steps) == (8, 12, 4)
    for b in range(30):
        label_to_class = {}
        seen = set()
        for part in (batch.support, batch.future, batch.query):
            for frame, target in zip(part.inputs[b], part.targets[b]):
                assert label_to_class.setdefault(int(target), int(frame[0, 0, 0])) == int(frame[0, 0, 0])
                seen.add(int(frame[0, -1, -1]))
        assert len(seen) == 24  # 4 classes x (2 + 3 + 1) distinct examples
    assert bool((batch.query.feedback == 4).all()) and batch.query.loss_mask.all()
    assert not batch.support.loss_mask.any() and torch.equal(batch.future.feedback, batch.future.targets)
    assert bool((batch.query.shot == 3).all()) and int(batch.future.shot.max()) == 5 and int(batch.support.shot.max()) == 2


# ---------------------------------------------------------------- multi-task

def test_multitask_stream_segments_order_and_frames():
    small = FewShotSampler(coded_classes(6, 4, size=2, code_offset=0), 3, 2, feedback="delayed", frame_shape=(3, 4, 4))
    large = FewShotSampler(coded_classes(6, 4, size=4, code_offset=100, channels=3), 3, 3, feedback="delayed")
    stream = MultiTaskStream([small, large], seed=1)
    batch = stream.sample(range(200))
    assert batch.inputs.shape == (200, 6 + 9, 3, 4, 4)
    first_source = batch.segment[:, 0]
    assert 0.35 < float(first_source.float().mean()) < 0.65  # both orders occur
    for b in range(5):
        expected = [0] * 6 + [1] * 9 if int(first_source[b]) == 0 else [1] * 9 + [0] * 6
        assert batch.segment[b].tolist() == expected
    from_large = batch.segment == 1
    assert bool((batch.inputs[from_large][:, 0, 0, 0] >= 100).all())
    # each segment is its own delayed-feedback task, with its own shots and first unknown label
    for b in range(5):
        for source, length in ((0, 6), (1, 9)):
            steps = (batch.segment[b] == source).nonzero().flatten()
            assert int(batch.feedback[b, steps[0]]) == 3 and int(batch.shot[b, steps].max()) == length // 3


def test_multitask_trimming_pads_on_the_right():
    a = FewShotSampler(coded_classes(6, 6), 2, 4, feedback="delayed")
    b = FewShotSampler(coded_classes(6, 6, code_offset=50), 2, 5, feedback="delayed")
    batch = MultiTaskStream([a, b], min_segment_steps=3, seed=4).sample(range(100))
    lengths = (batch.segment >= 0).sum(1)
    assert batch.num_steps == int(lengths.max()) <= 18 and int(lengths.min()) >= 6
    assert len(set(lengths.tolist())) > 3
    for episode in range(100):
        n = int(lengths[episode])
        assert bool((batch.segment[episode, n:] == -1).all()) and not batch.loss_mask[episode, n:].any()
        assert bool((batch.segment[episode, :n] >= 0).all())
        assert int(batch.inputs[episode, n:].sum()) == 0


# ---------------------------------------------------------------- continual

def test_continual_split_tasks_class_incremental():
    digits = coded_classes(10, 8)
    tasks = [FewShotSampler(digits, 2, 3, 2, classes=[2 * t, 2 * t + 1], seed=t) for t in range(5)]
    stream = ContinualSampler(tasks, class_incremental=True)
    batch = stream.sample(range(20))
    assert batch.num_tasks == 5 and stream.num_classes == 10
    for t in range(5):
        context, query = batch.contexts[t], batch.queries[t]
        assert context.num_steps == 6 and query.num_steps == 4
        assert context.num_classes == 10 and bool((query.feedback == 10).all()) and query.loss_mask.all()
        assert not context.loss_mask.any()
        for part in (context, query):
            digit = part.inputs[:, :, 0, 0, 0].long()
            assert bool(((digit // 2) == t).all())  # the task's own classes
            assert bool(((part.targets // 2) == t).all())  # labels shifted per task
            # the same digit keeps one label within an episode, across context and query
        both_digits = torch.cat([context.inputs[:, :, 0, 0, 0], query.inputs[:, :, 0, 0, 0]], 1).long()
        both_targets = torch.cat([context.targets, query.targets], 1)
        for b in range(20):
            pairs = set(zip(both_digits[b].tolist(), both_targets[b].tolist()))
            assert len(pairs) == 2


def test_continual_shuffled_task_order():
    omni = FewShotSampler(coded_classes(6, 5), 3, 2, 1, frame_shape=(1, 2, 2))
    mini = FewShotSampler(coded_classes(6, 5, code_offset=100), 3, 2, 1)
    batch = ContinualSampler([omni, mini], shuffle=True, seed=3).sample(range(100))
    assert set(map(tuple, batch.task_ids.tolist())) == {(0, 1), (1, 0)}
    for t in range(2):
        from_mini = batch.contexts[t].inputs[:, :, 0, 0, 0] >= 100
        assert torch.equal(from_mini, (batch.task_ids[:, t] == 1)[:, None].expand_as(from_mini))
        assert torch.equal(batch.contexts[t].segment[:, 0], batch.task_ids[:, t])
    with pytest.raises(ValueError, match="must be synchronous with n_query >= 1"):
        ContinualSampler([FewShotSampler(coded_classes(6, 5), 3, 2)])


# ---------------------------------------------------------------- DataLoader

def test_stream_is_identical_for_any_worker_count_and_ranks_are_disjoint():
    sampler = FewShotSampler(coded_classes(10, 6), 3, 2, 1, seed=9)
    reference = [b.inputs for b in EpisodeStream(sampler, 4, num_batches=6, rank=0, world_size=1)]
    for workers in (0, 2):
        loader = DataLoader(EpisodeStream(sampler, 4, num_batches=6, rank=0, world_size=1), batch_size=None,
                            num_workers=workers)
        got = [b.inputs for b in loader]
        assert len(got) == 6 and all(torch.equal(x, y) for x, y in zip(got, reference))
    ranks = [[b.episode_ids for b in EpisodeStream(sampler, 4, num_batches=3, rank=r, world_size=2)] for r in range(2)]
    ids = torch.cat([torch.cat(r) for r in ranks])
    assert ids.unique().numel() == 24 and set(ids.tolist()) == set(range(24))
    resumed = list(EpisodeStream(sampler, 4, num_batches=2, start=4, rank=0, world_size=1))
    assert torch.equal(resumed[0].inputs, reference[4]) and torch.equal(resumed[1].inputs, reference[5])


def test_on_device_dataset_samples_on_its_device():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = coded_classes(10, 6).to(device)
    batch = FewShotSampler(data, 3, 2, 1, seed=1).sample(range(8))
    assert batch.inputs.device.type == device and batch.targets.device.type == device
    on_cpu = FewShotSampler(coded_classes(10, 6), 3, 2, 1, seed=1).sample(range(8))
    assert torch.equal(batch.inputs.cpu(), on_cpu.inputs) and torch.equal(batch.feedback.cpu(), on_cpu.feedback)


def test_plot_episode_draws_every_step(tmp_path):
    from episodes.plot import plot_episode

    batch = FewShotSampler(coded_classes(6, 4, size=8), 3, 2, 1, seed=0).sample(range(2))
    figure = plot_episode(batch, 1, tmp_path / "episode.png")
    assert (tmp_path / "episode.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert len(titles) == 9 and titles[6].startswith("t6 fb ?")
    with pytest.raises(ValueError, match="draws image episodes"):
        plot_episode(RegressionSampler("linear", 3, dim=2).sample(range(1)))
