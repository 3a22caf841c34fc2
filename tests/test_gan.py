"""Image generation (task gan): the Fréchet distance against the Gaussian closed form and scipy's
matrix square root; the gradient penalty against closed forms; three training steps against the
hinge-loss and penalty equations written out here (the discriminator's gradients untouched by the
generator's step, the EMA's formula); latents drawn per
episode id; the convolutional baseline's size beside the painter's; the glyph split by drawer; bad
input refused before any work, with what to run to fix it."""
import copy
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from episodes import Glyphs
from episodes.labelled_images import image_split
from episodes.rng import EpisodeRNG
from metafwp.frechet import features_distance, frechet_distance, gaussian_fit
from metafwp.models.gan import ConvGenerator
from metafwp.models.painter import FastWeightPainter
from metafwp.tasks import LEARNER, TASKS
from metafwp.tasks.gan import STREAM_DISCRIMINATOR, STREAM_GENERATOR, gradient_penalty
from metafwp.train import load_config
from metafwp.train.__main__ import main as train_main
from tests.helpers import ROOT, tiny_classifier

RECIPE = ROOT / "recipes/gan_mnist5k_painter.yaml"
TINY_GAN = ["model.latent=4", "data.discriminator_width=4", "train.batch_size=6", "optim.lr=0.01",
            "train.progress=none", "train.threads=1"]
TINY_PAINTER = ["model.hidden=8", "model.steps=4"]


def test_the_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    generator = torch.Generator().manual_seed(0)
    mean_1, mean_2 = (torch.randn(5, generator=generator, dtype=torch.float64) for _ in range(2))
    var_1, var_2 = (torch.rand(5, generator=generator, dtype=torch.float64) + 0.1 for _ in range(2))
    expected = (mean_1 - mean_2).square().sum() + (var_1.sqrt() - var_2.sqrt()).square().sum()
    assert frechet_distance(mean_1, torch.diag(var_1), mean_2, torch.diag(var_2)) == pytest.approx(expected.item(),
                                                                                                    rel=1e-10)


def test_the_frechet_distance_matches_scipys_matrix_square_root():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    cov_1, cov_2 = a @ a.T + 0.1 * np.eye(6), b @ b.T   # full rank and full rank
    mean_1, mean_2 = rng.normal(size=6), rng.normal(size=6)
    expected = (np.sum((mean_1 - mean_2) ** 2) + np.trace(cov_1) + np.trace(cov_2)
                - 2 * np.trace(scipy.linalg.sqrtm(cov_1 @ cov_2)).real)
    ours = frechet_distance(*(torch.from_numpy(x) for x in (mean_1, cov_1, mean_2, cov_2)))
    assert ours == pytest.approx(expected, rel=1e-9)


def test_features_are_fitted_by_their_sample_mean_and_covariance():
    features = torch.randn(50, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    mean, cov = gaussian_fit(features)
    assert torch.allclose(mean, torch.from_numpy(features.numpy().mean(0)))
    assert torch.allclose(cov, torch.from_numpy(np.cov(features.numpy(), rowvar=False)))
    assert abs(features_distance(features, features)) < 1e-9
    assert features_distance(features + 3.0, features) == pytest.approx(4 * 9.0, rel=1e-9)  # |shift|^2, same cov


def test_the_gradient_penalty_of_a_linear_critic_is_its_closed_form():
    weights = torch.randn(1, 2, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    images = torch.randn(5, 1, 2, 3, dtype=torch.float64, requires_grad=True)
    scores = (images * weights).flatten(1).sum(1) + 0.5 * images.detach().sum()   # grad_x D(x) = weights
    assert gradient_penalty(scores, images).item() == pytest.approx((weights.norm() - 1).item() ** 2, rel=1e-12)
    quadratic = gradient_penalty(images.square().flatten(1).sum(1), images)        # grad = 2 x
    expected = ((2 * images.detach()).flatten(1).norm(dim=1) - 1).square().mean()
    assert quadratic.item() == pytest.approx(expected.item(), rel=1e-12) and quadratic.requires_grad


class Steps:
    """What ``training_step`` needs of the trainer: the models, autocast, an optimiser step and the
    run's step."""

    def __init__(self, models, optimizers):
        self.models, self.optimizers, self.run = models, optimizers, SimpleNamespace(step=0)

    def autocast(self):
        return torch.autocast("cpu", enabled=False)

    def step(self, loss, optimizer="learner", terms=None):
        loss.backward()
        self.optimizers[optimizer].step()
        self.optimizers[optimizer].zero_grad(set_to_none=True)


def adam(config, parameters):
    return torch.optim.Adam(parameters, lr=config.optim.lr, betas=tuple(config.optim.betas), eps=config.optim.eps)


@pytest.mark.parametrize("kind", ["painter", "conv_generator"])
def test_three_training_steps_follow_the_hinge_loss_the_penalty_and_the_ema(kind, tmp_path):
    size = ["model.width=8"] if kind == "conv_generator" else TINY_PAINTER
    config = load_config(RECIPE, [*TINY_GAN, f"model.kind={kind}", *size, f"train.out_dir={tmp_path}",
                                  f"data.classifier={tiny_classifier()}", "data.ema_decay=0.9",
                                  f"data.spectral_norm={kind == 'painter'}", "data.gradient_penalty=3",
                                  "data.penalty_every=2"])
    task = TASKS["gan"](config, progress=False)
    torch.manual_seed(0)
    models = task.build_models(config.model)
    ema, generator, discriminator = (copy.deepcopy(models[name]) for name in (LEARNER, "generator", "discriminator"))
    assert all(torch.equal(a, b) for a, b in zip(ema.parameters(), generator.parameters()))
    trainer = Steps(models, {name: adam(config, models[name].parameters()) for name in ("generator", "discriminator")})
    optimise_g, optimise_d = adam(config, generator.parameters()), adam(config, discriminator.parameters())
    for step in range(3):  # with the gradient penalty at steps 0 and 2 (every second)
        trainer.run.step = step
        batch = task.sampler.sample(torch.arange(6 * step, 6 * step + 6))
        task.training_step(trainer, batch)
        # the equations: x = 2 p / 255 - 1, latents per episode id from the run's seed
        x = (batch.inputs[:, 0].double() * 2 / 255 - 1).float().requires_grad_()
        z_d, z_g = (EpisodeRNG(config.train.seed).normal(batch.episode_ids, stream, (4,)).float()
                    for stream in (STREAM_DISCRIMINATOR, STREAM_GENERATOR))
        with torch.no_grad():
            fake = generator(z_d)
        scores = discriminator(torch.cat([x, fake]))   # one call: one power iteration of spectral norm
        loss_d = F.relu(1 - scores[:6]).mean() + F.relu(1 + scores[6:]).mean()
        if step % 2 == 0:
            grad, = torch.autograd.grad(scores[:6].sum(), x, create_graph=True)
            loss_d = loss_d + 3.0 * (grad.flatten(1).norm(dim=1) - 1).square().mean()
        optimise_d.zero_grad()
        loss_d.backward()
        optimise_d.step()
        loss_g = -discriminator(generator(z_g)).mean()
        optimise_g.zero_grad()
        grads_d = torch.autograd.grad(loss_g, list(generator.parameters()))
        for parameter, grad in zip(generator.parameters(), grads_d):
            parameter.grad = grad
        optimise_g.step()
        with torch.no_grad():
            for average, current in zip(ema.parameters(), generator.parameters()):
                average.copy_(0.9 * average + 0.1 * current)
        for name, reference in (("discriminator", discriminator), ("generator", generator), (LEARNER, ema)):
            for (key, ours), theirs in zip(models[name].state_dict().items(), reference.state_dict().values()):
                assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6), f"step {step + 1}: {name}.{key}"
        assert all(p.grad is None for p in models["discriminator"].parameters())   # nothing left for D's next step
        assert all(p.requires_grad for p in models["discriminator"].parameters())


def test_latents_are_drawn_per_episode_id(tmp_path):
    config = load_config(RECIPE, [*TINY_GAN, *TINY_PAINTER, f"data.classifier={tiny_classifier()}",
                                  f"train.out_dir={tmp_path}"])
    task = TASKS["gan"](config, progress=False)
    whole = task.latents(torch.arange(8), 3, STREAM_GENERATOR)
    assert torch.equal(task.latents(torch.tensor([5, 2]), 3, STREAM_GENERATOR), whole[[5, 2]])
    assert not torch.equal(task.latents(torch.arange(8), 3, STREAM_DISCRIMINATOR), whole)
    assert abs(whole.mean()) < 1 and whole.shape == (8, 4)


def test_the_convolutional_baseline_is_within_ten_percent_of_the_painter():
    def size(module):
        return sum(p.numel() for p in module.parameters())
    painter, baseline = size(FastWeightPainter()), size(ConvGenerator())
    assert painter == 359_737 and abs(baseline / painter - 1) < 0.1


def test_the_glyph_split_holds_drawers_0_15_16_17_and_18_19_of_every_class():
    glyphs = Glyphs("train", progress=False)
    splits = {name: image_split(glyphs, name) for name in ("train", "val", "test", "held_out")}
    drawers = {name: set((indices % 20).tolist()) for name, indices in splits.items()}
    assert drawers == {"train": set(range(16)), "val": {16, 17}, "test": {18, 19}, "held_out": set(range(16, 20))}
    for indices in splits.values():
        assert torch.equal(glyphs.labels[indices].bincount(), torch.full((glyphs.num_classes,), len(indices)
                                                                        // glyphs.num_classes))
    assert sorted(torch.cat([splits["train"], splits["held_out"]]).tolist()) == list(range(len(glyphs)))


@pytest.mark.parametrize("override,message", [
    ("data.classifier=null", "data.classifier is not set; train one with: python -m metafwp.train "
                             "recipes/mnist5k_mlp_classifier.yaml"),
    ("data.classifier=/no/such/run", "holds no trained run"),
    ("data.dataset=cifar10", "Unknown data.dataset 'cifar10'. Valid: mnist5k, glyphs \\(28 x 28 single-channel"),
    ("data.dataset=glyphs", "is a classification run on mnist5k, not a classification run on glyphs; train one "
                            "with: python -m metafwp.train recipes/glyphs_mlp_classifier.yaml"),
    ("model.steps=0", "model.steps must be >= 1"),
    ("model.program_scale=0", "model.program_scale must be > 0"),
    ("model.rule=anti_hebbian", "Unknown model.rule 'anti_hebbian'. Valid: delta, hebbian, oja"),
    ("data.ema_decay=1", r"data.ema_decay must be in \[0, 1\)"),
    ("data.penalty_every=0", "data.gradient_penalty must be finite and >= 0 and data.penalty_every >= 1"),
])
def test_bad_input_is_refused_before_any_work(override, message, tmp_path, capsys):
    import re
    overrides = [*TINY_GAN, *TINY_PAINTER, f"data.classifier={tiny_classifier()}", override,
                 f"train.out_dir={tmp_path}"]
    assert train_main([str(RECIPE), *overrides]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and re.search(message, error), error
    assert not any(tmp_path.iterdir())
