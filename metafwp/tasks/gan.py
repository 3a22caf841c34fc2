"""Image generation by a GAN (``task: gan``): a generator (``model.kind=painter``, the fast weight
painter, or ``conv_generator``, the convolutional baseline) against a discriminator on the embedded
28 x 28 images (``data.dataset``: the digits or the glyphs), trained on the training images of the
shipped split (4,000 digits; glyph drawers 0-15) and tested on the held-out ones (1,000 digits;
glyph drawers 16-19). Images are pixels p mapped to 2 p / 255 - 1.

One training step on B real images x, with latents z, z' ~ N(0, I) drawn per episode id from the
run's seed (a batch split over ranks, or a resumed run, draws the same):

    discriminator:  L_D = mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))   (one Adam step of D)
    generator:      L_G = -mean(D(G(z')))                                  (one Adam step of G)
    EMA:            G_ema <- d G_ema + (1 - d) G                            (d = data.ema_decay)

(the hinge loss; the painter authors' code writes it with D's sign flipped, which is the same game).
The EMA generator is the run's learner: validated, tested and saved in ``best.pt``.

The metric is the Fréchet distance between features of generated and real images, read from the
layer before the output of a classifier trained on the same dataset's training images by the
classification task (``data.classifier``: its run folder; ``recipes/mnist5k_mlp_classifier.yaml``
or ``recipes/glyphs_mlp_classifier.yaml``). Validation: ``eval.val_episodes`` images generated from
latents at ``eval.val_seed`` against the training images, so no held-out image is read before the
test. Test: ``eval.episodes`` images from latents at ``eval.seed`` against the held-out images,
beside the floor (as many training images, drawn at ``eval.seed``, against the held-out ones) and
the ceiling (the generator at its initial weights). These distances are not Inception FIDs.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from episodes.labelled_images import IMAGE_DATASETS, LabelledImagesSampler, split_images
from episodes.rng import EpisodeRNG
from metafwp.errors import ConfigError
from metafwp.frechet import features_distance
from metafwp.models import LearnerInputs
from metafwp.models.gan import Discriminator
from metafwp.plots import plot_frechet_bars, plot_image_grid, plot_painting
from metafwp.tasks.base import LEARNER, GeneratorData, Scores, SplitTask
from metafwp.tasks.classification import load_images

STREAM_DISCRIMINATOR, STREAM_GENERATOR, STREAM_EVAL, STREAM_FLOOR = 90, 91, 92, 93
BOOTSTRAPS = 20      # resamples of the generated features behind a distance's ci95
GRID = 64            # images in the sample grids (tensorboard and figures)
FLOOR, CEILING = "training images", "untrained"


@dataclass
class GANData(GeneratorData):
    """``dataset``: ``mnist5k`` or ``glyphs``; ``classifier``: the run folder of a classification run
    on that dataset (its ``best.pt`` gives the Fréchet features); ``ema_decay``: the generator EMA's
    d; ``discriminator_width``: the first convolution's channels; ``spectral_norm``: on every layer
    of the discriminator; ``gradient_penalty``: the weight of ``(|grad_x D(x)| - 1)^2`` on the real
    images, added to the discriminator's loss every ``penalty_every`` steps (the authors': 10 and 4;
    0 turns it off)."""
    dataset: str = "mnist5k"
    classifier: Optional[str] = None
    ema_decay: float = 0.995
    discriminator_width: int = 64
    spectral_norm: bool = False
    gradient_penalty: float = 10.0
    penalty_every: int = 4
    num_workers: int = 0

    def check(self) -> None:
        if self.dataset not in IMAGE_DATASETS:
            raise ConfigError(f"Unknown data.dataset {self.dataset!r}. Valid: {', '.join(IMAGE_DATASETS)} (28 x 28 "
                              f"single-channel images)")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"data.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.discriminator_width < 1:
            raise ConfigError(f"data.discriminator_width must be >= 1, got {self.discriminator_width}")
        if not 0 <= self.gradient_penalty < math.inf or self.penalty_every < 1:
            raise ConfigError(f"data.gradient_penalty must be finite and >= 0 and data.penalty_every >= 1, got "
                              f"{self.gradient_penalty} and {self.penalty_every}")


CLASSIFIER_RECIPES = {"mnist5k": "recipes/mnist5k_mlp_classifier.yaml", "glyphs": "recipes/glyphs_mlp_classifier.yaml"}


def classifier_folder(data: GANData) -> Path:
    """``data.classifier`` as a trained classification run on ``data.dataset``, or a ConfigError that
    says how to train one."""
    train_it = (f"train one with: python -m metafwp.train {CLASSIFIER_RECIPES[data.dataset]} "
                f"train.out_dir=runs train.name={data.dataset}_classifier, then set "
                f"data.classifier=runs/{data.dataset}_classifier")
    if data.classifier is None:
        raise ConfigError(f"task=gan measures Fréchet distances on a classifier's features: data.classifier is not "
                          f"set; {train_it}")
    folder = Path(data.classifier).expanduser()
    if not (folder / "config.yaml").is_file() or not any((folder / name).is_file()
                                                         for name in ("best.pt", "checkpoint.pt")):
        raise ConfigError(f"data.classifier={data.classifier} holds no trained run (config.yaml and best.pt); "
                          f"{train_it}")
    from metafwp.train.config import load_config  # the trainer imports the tasks: read runs lazily

    config = load_config(folder / "config.yaml")
    if config.task != "classification" or config.data.dataset != data.dataset:
        raise ConfigError(f"data.classifier={data.classifier} is a {config.task} run on "
                          f"{getattr(config.data, 'dataset', 'other data')}, not a classification run on "
                          f"{data.dataset}; {train_it}")
    return folder


def pixels_to_images(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` to floats in [-1, 1]."""
    return pixels.float() * (2 / 255) - 1


def gradient_penalty(scores: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``mean_i (|d scores_i / d images_i| - 1)^2`` for ``scores [B]`` of ``images [B, ...]`` (each score
    reads its own image only), with the graph kept so that it can be minimised."""
    grad, = torch.autograd.grad(scores.sum(), images, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()


def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema <- decay ema + (1 - decay) model`` for parameters; buffers are copied."""
    with torch.no_grad():
        for average, current in zip(ema.parameters(), model.parameters()):
            average.lerp_(current, 1 - decay)
        for average, current in zip(ema.buffers(), model.buffers()):
            average.copy_(current)


class GANTask(SplitTask):
    """``task: gan``."""

    name = "gan"
    DataConfig = GANData
    metric = "frechet"
    higher_is_better = False
    inputs, targets = "latents", "images"

    def __init__(self, config, progress: bool = True):
        classifier_folder(config.data)  # before any data is read; a recipe loads without it
        super().__init__(config, progress)
        self.features = None      # the classifier's feature network, loaded on first use
        self.references = {}      # split -> real features

    @classmethod
    def check_config(cls, config) -> None:
        super().check_config(config)
        training = split_images(config.data.dataset, "train")
        if config.eval.episodes > training:
            raise ConfigError(f"eval.episodes={config.eval.episodes}: the floor compares as many training images with "
                              f"the held-out ones, and the training split holds {training}; set eval.episodes <= "
                              f"{training}")
        for key in ("episodes", "val_episodes"):
            if getattr(config.eval, key) < 2:
                raise ConfigError(f"eval.{key} must be >= 2 (a covariance of generated features), got "
                                  f"{getattr(config.eval, key)}")

    def make_sampler(self, split: str, seed: int) -> LabelledImagesSampler:
        return LabelledImagesSampler(load_images(self.data.dataset), split, seed=seed)

    def validation_episodes(self):  # generated images are compared with the training images
        return self.make_sampler("train", self.config.eval.val_seed)

    def test_episodes(self) -> dict:
        return {"": (self.make_sampler("held_out", self.config.eval.seed), {})}

    def learner_inputs(self) -> LearnerInputs:
        return LearnerInputs("latents", tuple(self.sampler.images.images.shape[1:]), 0, 0, "images")

    @classmethod
    def test_set_name(cls, config) -> str:
        return "held_out"

    # training

    def build_models(self, model_config) -> dict[str, nn.Module]:
        """The EMA generator (the learner), the trained generator (its copy at the start) and the discriminator."""
        generator = self.build_learner(model_config)
        channels, size, _ = self.learner_inputs().shape
        discriminator = Discriminator(channels, size, self.data.discriminator_width, self.data.spectral_norm)
        return {LEARNER: copy.deepcopy(generator).requires_grad_(False), "generator": generator,
                "discriminator": discriminator}

    def optimised_parameters(self, models: dict[str, nn.Module]) -> dict[str, list]:
        return {name: list(models[name].parameters()) for name in ("generator", "discriminator")}

    def latents(self, episode_ids: torch.Tensor, seed: int, stream: int) -> torch.Tensor:
        """``[B, latent]`` standard normals of each episode id, float32."""
        return EpisodeRNG(seed).normal(episode_ids.cpu(), stream, (self.config.model.latent,)).float()

    def training_step(self, trainer, batch) -> Scores:
        generator, discriminator = trainer.models["generator"], trainer.models["discriminator"]
        real = pixels_to_images(batch.inputs[:, 0])
        seed, device = self.config.train.seed, real.device
        z = self.latents(batch.episode_ids, seed, STREAM_DISCRIMINATOR).to(device)
        penalised = self.data.gradient_penalty > 0 and trainer.run.step % self.data.penalty_every == 0
        real.requires_grad_(penalised)
        with trainer.autocast():
            with torch.no_grad():
                fake = generator(z)
            scores = discriminator(torch.cat([real, fake.to(real.dtype)])).float()
            real_scores, fake_scores = scores.chunk(2)
            per_image = F.relu(1 - real_scores) + F.relu(1 + fake_scores)
            loss_d = per_image.mean()
        penalty = gradient_penalty(real_scores, real) if penalised else torch.zeros((), device=device)
        trainer.step(loss_d + self.data.gradient_penalty * penalty, "discriminator")
        discriminator.requires_grad_(False)
        try:
            with trainer.autocast():
                loss_g = -discriminator(generator(self.latents(batch.episode_ids, seed, STREAM_GENERATOR)
                                                  .to(device))).float().mean()
            trainer.step(loss_g, "generator")
        finally:
            discriminator.requires_grad_(True)
        update_ema(trainer.models[LEARNER], generator, self.data.ema_decay)
        B = real.shape[0]
        sums = {"d_loss_sum": loss_d.detach() * B, "g_loss_sum": loss_g.detach() * B,
                "penalty_sum": penalty.detach() * B * penalised, "penalised": torch.tensor(float(B * penalised)),
                "real_score_sum": real_scores.detach().sum(), "fake_score_sum": fake_scores.detach().sum(),
                "images": torch.tensor(float(B))}
        return Scores(loss_d, sums, per_image.detach())

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict:
        """The discriminator's hinge loss as ``loss``, the generator's, and D's mean scores of real and
        generated images."""
        n = sums["images"]
        penalty = (sums["penalty_sum"] / sums["penalised"]).item() if sums["penalised"] > 0 else 0.0
        return {"loss": (sums["d_loss_sum"] / n).item(), "generator_loss": (sums["g_loss_sum"] / n).item(),
                "gradient_penalty": penalty,
                "real_score": (sums["real_score_sum"] / n).item(), "fake_score": (sums["fake_score_sum"] / n).item()}

    # evaluation

    def feature_network(self, device: torch.device) -> nn.Module:
        """The classifier's layers before its output (``ImageClassifier.features``), from ``data.classifier``."""
        if self.features is None:
            from metafwp.evaluate import load_run  # the trainer imports the tasks: read runs lazily

            _, _, classifier, _ = load_run(classifier_folder(self.data), ["train.progress=none"])
            self.features = classifier.features.requires_grad_(False)
        return self.features.to(device)

    @torch.no_grad()
    def image_features(self, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        """float64 ``[N, D]`` features of ``images [N, C, H, W]`` in [-1, 1], in ``eval.batch_size`` chunks."""
        network = self.feature_network(device).eval()
        return torch.cat([network(((chunk.to(device) + 1) / 2).float()).double().cpu()
                          for chunk in images.split(self.config.eval.batch_size)])

    def reference_features(self, split: str, device: torch.device) -> torch.Tensor:
        """The features of every image of ``split`` (``train`` or ``held_out``), computed once."""
        if split not in self.references:
            sampler = self.make_sampler(split, 0)
            pixels = sampler.images.images[sampler.indices]
            self.references[split] = self.image_features(pixels_to_images(pixels), device)
        return self.references[split]

    @torch.no_grad()
    def generate(self, model: nn.Module, count: int, seed: int, device: torch.device) -> torch.Tensor:
        """``count`` images of ``model`` from the latents of episode ids 0 .. count - 1 at ``seed``."""
        was_training = model.training
        model.eval()
        ids = torch.arange(count)
        images = torch.cat([model(self.latents(chunk, seed, STREAM_EVAL).to(device)).float().cpu()
                            for chunk in ids.split(self.config.eval.batch_size)])
        model.train(was_training)
        return images

    def distance(self, features: torch.Tensor, reference: torch.Tensor, seed: int) -> dict:
        """``{"frechet", "ci95", "episodes"}``: the distance of ``features`` to ``reference``, with 1.96
        times the standard deviation over ``BOOTSTRAPS`` resamples (with replacement) of ``features``."""
        generator = torch.Generator().manual_seed(seed)
        resampled = [features_distance(features[torch.randint(len(features), (len(features),), generator=generator)],
                                       reference) for _ in range(BOOTSTRAPS)]
        return {"frechet": features_distance(features, reference),
                "ci95": 1.96 * torch.tensor(resampled).std().item(), "episodes": len(features)}

    def evaluate(self, model: nn.Module, sampler, num_episodes: int, device: torch.device, desc: str) -> dict:
        """The Fréchet distance of ``num_episodes`` generated images to the images of ``sampler``'s split
        (validation: ``train`` at ``eval.val_seed``; test: ``held_out`` at ``eval.seed``)."""
        split, seed = sampler.split, sampler.rng.seed
        features = self.image_features(self.generate(model, num_episodes, seed, device), device)
        return self.distance(features, self.reference_features(split, device), seed)

    def test(self, model: nn.Module, device: torch.device) -> dict[str, dict]:
        """The learner, the floor and the ceiling, each against the held-out images."""
        config = self.config
        sampler, _ = self.test_episodes()[""]
        results = {self.learner: {**self.evaluate(model, sampler, config.eval.episodes, device, "testing"),
                                  "learner": self.learner}}
        training = self.make_sampler("train", 0)
        picks = EpisodeRNG(config.eval.seed).permutation(torch.zeros(1, dtype=torch.int64), STREAM_FLOOR,
                                                          (len(training.indices),))[0, :config.eval.episodes]
        floor = self.image_features(pixels_to_images(training.images.images[training.indices[picks]]), device)
        held_out = self.reference_features("held_out", device)
        results[FLOOR] = {**self.distance(floor, held_out, config.eval.seed), "learner": FLOOR}
        with torch.random.fork_rng():
            torch.manual_seed(config.train.seed)  # the run's generator before its first step
            untrained = self.build_learner(config.model).to(device)
        results[CEILING] = {**self.evaluate(untrained, sampler, config.eval.episodes, device, "testing"),
                            "learner": CEILING}
        return results

    def validation_images(self, model: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
        """``{"samples": [N, C, H, W]}`` in [0, 1]: ``GRID`` images of ``model`` at ``eval.val_seed``."""
        return {"samples": (self.generate(model, GRID, self.config.eval.val_seed, device) + 1) / 2}

    def write_figures(self, results: dict[str, dict], run_dir: Path, title: str) -> list[Path]:
        """The distances with floor and ceiling, and the tested learner's samples (and, for the
        painter, one image's strokes), from ``best.pt``'s weights."""
        from metafwp.evaluate import load_run

        _, _, model, _ = load_run(run_dir, ["train.progress=none"])
        device = next(model.parameters()).device
        figures = [plot_frechet_bars(results, run_dir / "frechet.png", title=title),
                   plot_image_grid(self.validation_images(model, device)["samples"], run_dir / "samples.png",
                                   title=f"{self.learner}: {GRID} samples (latents at eval.val_seed)")]
        if hasattr(model, "strokes"):
            z = self.latents(torch.zeros(1, dtype=torch.int64), self.config.eval.val_seed, STREAM_EVAL)
            figures.append(plot_painting(model, z, run_dir / "painting.png", title=f"{self.learner}: one painting"))
        return figures
