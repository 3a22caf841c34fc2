import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from episodes import EpisodeRNG, FewShotSampler, ImageClasses
from episodes.feedback import delayed, synchronous
from episodes.rng import mix32, mix32_int
from episodes.sampling import SORT_FACTOR, choose_distinct


def toy_classes(num_classes=12, per_class=(6, 9, 7)):
    """Classes of varied sizes whose pixels encode (class, example): [N, 1, 2, 2]."""
    counts = [per_class[c % len(per_class)] for c in range(num_classes)]
    labels = torch.repeat_interleave(torch.arange(num_classes), torch.tensor(counts))
    shuffled = torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(0))
    labels = labels[shuffled]  # members of a class are not contiguous
    images = torch.zeros(labels.numel(), 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = labels.to(torch.uint8)
    images[:, 0, 1, 1] = torch.arange(labels.numel(), dtype=torch.uint8)
    return ImageClasses(images, labels)


def chi_square_p_ok(observed, expected):
    """Chi-square statistic below its 99.9% quantile (Wilson-Hilferty approximation)."""
    statistic = float(((observed - expected) ** 2 / expected).sum())
    dof = observed.numel() - 1
    z = 3.09
    quantile = dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3
    return statistic < quantile


def test_mixer_matches_python_integers():
    values = [0, 1, 2, 0xFFFFFFFF, 0x80000000, 123456789, 0xDEADBEEF]
    got = mix32(torch.tensor(values, dtype=torch.int64)).tolist()
    assert got == [mix32_int(v) for v in values]
    assert len(set(mix32(torch.arange(100_000)).tolist())) == 100_000  # bijective: no collisions


def test_rng_uniform_moments_and_independence_of_streams():
    rng = EpisodeRNG(7)
    u = rng.uniform(torch.arange(2000), 1, (50,))
    assert abs(float(u.mean()) - 0.5) < 0.005 and abs(float(u.var()) - 1 / 12) < 0.002
    other = rng.uniform(torch.arange(2000), 2, (50,))
    assert abs(float(torch.corrcoef(torch.stack([u.flatten(), other.flatten()]))[0, 1])) < 0.01
    z = rng.normal(torch.arange(2000), 3, (50,))
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01
    assert not torch.equal(u, EpisodeRNG(8).uniform(torch.arange(2000), 1, (50,)))


@pytest.mark.parametrize("n_way, k_shot, n_query, feedback", [(5, 1, 1, "synchronous"), (3, 4, 2, "synchronous"),
                                                              (4, 6, 0, "delayed"), (12, 1, 5, "synchronous")])
def test_episodes_have_n_distinct_classes_and_k_distinct_examples_each(n_way, k_shot, n_query, feedback):
    data = toy_classes()
    sampler = FewShotSampler(data, n_way, k_shot, n_query, feedback=feedback, seed=3)
    classes, examples = sampler.indices(range(300))
    assert classes.shape == (300, n_way) and examples.shape == (300, n_way, k_shot + n_query)
    assert all(len(set(row.tolist())) == n_way for row in classes)
    assert torch.equal(data.labels[examples], classes[..., None].expand_as(examples))
    flat = examples.flatten(1)
    assert all(len(set(row.tolist())) == flat.shape[1] for row in flat)
    batch = sampler.sample(range(300))
    assert batch.inputs.shape == (300, sampler.num_steps, 1, 2, 2)
    # each step's frame is an image of the class its target names
    step_classes = batch.inputs[:, :, 0, 0, 0].long()
    assert torch.equal(step_classes, classes.gather(1, batch.targets))
    counts = torch.nn.functional.one_hot(batch.targets, n_way).sum(1)
    assert torch.equal(counts, torch.full_like(counts, k_shot + n_query))


def test_class_subset_restricts_the_classes():
    sampler = FewShotSampler(toy_classes(), 2, 3, 1, classes=[4, 9], seed=0)
    classes, _ = sampler.indices(range(50))
    assert set(classes.flatten().tolist()) == {4, 9}


def test_same_episode_for_any_batch_split_and_seed_changes_it():
    sampler = FewShotSampler(toy_classes(), 5, 2, 1, seed=11)
    whole = sampler.sample(range(40))
    parts = [sampler.sample(range(0, 7)), sampler.sample(range(7, 8)), sampler.sample(range(8, 40))]
    for field in ("inputs", "feedback", "targets", "loss_mask", "shot"):
        assert torch.equal(getattr(whole, field), torch.cat([getattr(p, field) for p in parts]))
    reversed_ids = sampler.sample(torch.arange(39, -1, -1))
    assert torch.equal(reversed_ids.inputs.flip(0), whole.inputs)
    other = FewShotSampler(toy_classes(), 5, 2, 1, seed=12).sample(range(40))
    assert not torch.equal(other.inputs, whole.inputs)
    from_generator = FewShotSampler(toy_classes(), 5, 2, 1, generator=torch.Generator().manual_seed(5))
    again = FewShotSampler(toy_classes(), 5, 2, 1, generator=torch.Generator().manual_seed(5))
    assert torch.equal(from_generator.sample(range(9)).inputs, again.sample(range(9)).inputs)


def test_label_permutations_and_class_choice_are_uniform():
    data = toy_classes(num_classes=4)
    sampler = FewShotSampler(data, 3, 1, seed=1)
    classes, _ = sampler.indices(range(24_000))
    # 4 * 3 * 2 = 24 ordered class triples, each with probability 1/24
    codes = classes[:, 0] * 16 + classes[:, 1] * 4 + classes[:, 2]
    observed = torch.bincount(codes, minlength=64)[[a * 16 + b * 4 + c for a, b, c in
                                                   itertools.permutations(range(4), 3)]].double()
    assert observed.sum() == 24_000 and chi_square_p_ok(observed, torch.full((24,), 1000.0))


def test_examples_within_a_class_are_uniform():
    data = toy_classes(num_classes=1, per_class=(6,))
    sampler = FewShotSampler(data, 1, 2, 1, seed=2)  # ordered (support, support, query) triples of 6
    _, examples = sampler.indices(range(12_000))
    rank = data.images[:, 0, 1, 1].long().argsort().argsort()  # example -> 0..5
    triple = rank[examples[:, 0]]
    # support order is free, query is distinct: 6 * 5 * 4 ordered triples equally likely
    codes = triple[:, 0] * 36 + triple[:, 1] * 6 + triple[:, 2]
    observed = torch.bincount(codes, minlength=216)[[a * 36 + b * 6 + c for a, b, c in
                                                     itertools.permutations(range(6), 3)]].double()
    assert observed.sum() == 12_000 and chi_square_p_ok(observed, torch.full((120,), 100.0))


@pytest.mark.parametrize("max_population", [5, 3 * SORT_FACTOR + 1], ids=["sort", "floyd"])
def test_choose_distinct_gives_uniform_ordered_subsets(max_population):
    """Both algorithms: every ordered triple of distinct values from [0, 5) equally likely (60 cells),
    and a population of 4 in the same call never yields the value 4."""
    rng, ids = EpisodeRNG(3), torch.arange(30_000)
    population = torch.tensor([5, 4]).expand(30_000, 2)
    chosen = choose_distinct(rng, ids, 7, population, 3, max_population=max_population)
    assert chosen.shape == (30_000, 2, 3) and int(chosen[:, 1].max()) == 3
    assert all(len(set(row)) == 3 for row in chosen.reshape(-1, 3).tolist()[:2000])
    codes = chosen[:, 0, 0] * 25 + chosen[:, 0, 1] * 5 + chosen[:, 0, 2]
    cells = [a * 25 + b * 5 + c for a, b, c in itertools.permutations(range(5), 3)]
    observed = torch.bincount(codes, minlength=125)[cells].double()
    assert observed.sum() == 30_000 and chi_square_p_ok(observed, torch.full((60,), 500.0))


@pytest.mark.parametrize("population", [5, 3 * SORT_FACTOR + 1], ids=["sort", "floyd"])
def test_choose_distinct_with_one_population_size_equals_the_tensor_form(population):
    """An int population (every element alike) draws exactly what the same sizes as a tensor draw."""
    rng, ids = EpisodeRNG(3), torch.arange(500)
    as_int = choose_distinct(rng, ids, 7, population, 3, shape=(2,))
    as_tensor = choose_distinct(rng, ids, 7, torch.full((500, 2), population), 3, max_population=population)
    assert as_int.shape == (500, 2, 3) and torch.equal(as_int, as_tensor)
    assert int(as_int.max()) < population and all(len(set(row)) == 3 for row in as_int.reshape(-1, 3).tolist())


def test_synchronous_encoding_step_by_step():
    targets = torch.tensor([[2, 0, 2, 1, 0, 1, 2, 0]])  # 6 support steps, then 2 queries
    feedback, loss_mask, shot = synchronous(targets, num_support=6, num_classes=3)
    assert feedback.tolist() == [[2, 0, 2, 1, 0, 1, 3, 3]]
    assert loss_mask.tolist() == [[False] * 6 + [True] * 2]
    assert shot.tolist() == [[1, 1, 2, 1, 2, 2, 3, 3]]


def test_delayed_encoding_step_by_step():
    targets = torch.tensor([[1, 1, 0, 2, 1, 0]])
    feedback, loss_mask, shot = delayed(targets, num_classes=3)
    assert feedback.tolist() == [[3, 1, 1, 0, 2, 1]]
    assert loss_mask.tolist() == [[True] * 6]
    assert shot.tolist() == [[1, 2, 1, 1, 3, 2]]


def test_regression_encodings_step_by_step():
    y = torch.tensor([[[0.5], [-1.0], [2.0]]])
    feedback, loss_mask, shot = synchronous(y, num_support=2)
    assert feedback.tolist() == [[[0.5, 0.0], [-1.0, 0.0], [0.0, 1.0]]]
    assert loss_mask.tolist() == [[False, False, True]] and shot.tolist() == [[1, 2, 3]]
    feedback, loss_mask, shot = delayed(y)
    assert feedback.tolist() == [[[0.0, 1.0], [0.5, 0.0], [-1.0, 0.0]]]
    assert loss_mask.tolist() == [[True] * 3] and shot.tolist() == [[1, 2, 3]]


def test_sampled_sequences_follow_the_encodings():
    sampler = FewShotSampler(toy_classes(), 3, 2, 2, seed=4)
    batch = sampler.sample(range(20))
    assert batch.num_classes == 3 and batch.unknown_label == 3
    assert torch.equal(batch.feedback[:, :6], batch.targets[:, :6])
    assert bool((batch.feedback[:, 6:] == 3).all()) and batch.loss_mask[:, 6:].all() and not batch.loss_mask[:, :6].any()
    assert bool((batch.shot[:, 6:] == 3).all())
    delayed_batch = FewShotSampler(toy_classes(), 3, 4, feedback="delayed", seed=4).sample(range(20))
    assert torch.equal(delayed_batch.feedback[:, 1:], delayed_batch.targets[:, :-1])
    assert bool((delayed_batch.feedback[:, 0] == 3).all())


def pattern_classes(channels: int) -> ImageClasses:
    """Four 8x8 classes of a known pattern: a diagonal ramp, scaled per class and channel."""
    ramp = torch.arange(8.0)[:, None] * 20 + torch.arange(8.0)[None, :] * 10          # 0 .. 210
    scales = torch.tensor([1.0, 0.5, 0.8, 0.3])[:, None, None, None] * torch.tensor([1.0, 0.6, 0.2])[:channels, None, None]
    images = (ramp * scales).round().to(torch.uint8)                                      # [4, C, 8, 8]
    return ImageClasses(images.repeat_interleave(2, 0), torch.arange(4).repeat_interleave(2))


def test_frame_conversion_to_three_channels_and_resize():
    """Grey 8x8 -> RGB 4x4 equals torch's antialiased bilinear resize, repeated on the channels;
    RGB -> grey is the channel mean; the sampler's conversion gives those frames."""
    grey = pattern_classes(1)
    sampler = FewShotSampler(grey, 2, 1, seed=0, frame_shape=(3, 4, 4))
    batch = sampler.sample(range(3))
    assert batch.inputs.shape == (3, 2, 3, 4, 4) and batch.inputs.dtype == torch.uint8 and sampler.frame_shape == (3, 4, 4)
    steps = sampler.ordered(batch.episode_ids, sampler.indices(batch.episode_ids)[1][..., :1], 10)[0]
    source = grey.images[steps].float().flatten(0, 1)                                     # [B T, 1, 8, 8]
    expected = F.interpolate(source, size=(4, 4), mode="bilinear", antialias=True, align_corners=False)
    expected = expected.round().clamp(0, 255).to(torch.uint8).view(3, 2, 1, 4, 4).expand(-1, -1, 3, -1, -1)
    assert torch.equal(batch.inputs, expected)
    colour = pattern_classes(3)
    to_grey = FewShotSampler(colour, 2, 1, seed=0, frame_shape=(1, 8, 8))
    frames = to_grey.sample(range(2)).inputs
    steps = to_grey.ordered(torch.arange(2), to_grey.indices(range(2))[1][..., :1], 10)[0]
    assert torch.equal(frames, colour.images[steps].float().mean(2, keepdim=True).round().to(torch.uint8))


def test_the_sampler_says_what_its_episodes_are():
    sampler = FewShotSampler(toy_classes(), 3, 2, 1, seed=5)
    assert (sampler.frame_shape, sampler.num_classes, sampler.num_shots) == ((1, 2, 2), 3, 4)
    assert int(sampler.sample(range(20)).shot.max()) == sampler.num_shots - 1
    delayed_sampler = FewShotSampler(toy_classes(), 3, 2, feedback="delayed", seed=5)
    assert delayed_sampler.num_shots == 3 and int(delayed_sampler.sample(range(20)).shot.max()) == 2
    same = FewShotSampler(toy_classes(), 3, 2, 1, seed=5)
    assert sampler.state_dict() == same.state_dict()
    assert sampler.state_dict()["seed"] == 5 and sampler.state_dict()["k_shot"] == 2
    for other in (FewShotSampler(toy_classes(), 3, 2, 1, seed=6), FewShotSampler(toy_classes(), 3, 2, 2, seed=5),
                  FewShotSampler(toy_classes(13), 3, 2, 1, seed=5)):
        assert other.state_dict() != sampler.state_dict()


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_way=13, k_shot=1), "n_way=13 is larger than the 12 classes"),
    (dict(n_way=2, k_shot=5, n_query=2), "k_shot \\+ n_query = 7 is larger than the 6 examples of class 'class0'"),
    (dict(n_way=2, k_shot=1, n_query=1, feedback="delayed"), "delayed feedback scores every step"),
    (dict(n_way=2, k_shot=1, feedback="async"), "Unknown feedback 'async'. Valid: synchronous, delayed"),
    (dict(n_way=0, k_shot=1), "n_way must be an int >= 1"),
    (dict(n_way=2, k_shot=1, classes=[0, 0]), "classes must be distinct ids"),
    (dict(n_way=2, k_shot=1, seed=-1), "seed must be a non-negative int"),
])
def test_sampler_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FewShotSampler(toy_classes(), **kwargs)
