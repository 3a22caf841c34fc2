"""Fast weight painters against a convolutional generator (Irie & Schmidhuber 2023, at CPU scale):
the painter with the delta rule and with the Hebbian rule, and the convolutional generator of the
same size, each trained as a GAN on the embedded digits and on the glyphs; the Fréchet distance of
1,000 generated images to the held-out images, on the features of a classifier trained first on
each dataset's training images, beside the floor (training images) and the ceiling (an untrained
generator)."""
from pathlib import Path

import torch

from metafwp.plots import plot_frechet_bars, plot_image_grid
from metafwp.studies.declaration import STUDY_FOLDER, Column, Condition, Requirement, Study, register_study

CLASSIFIERS = (Requirement("mnist5k_classifier", "mnist5k_mlp_classifier"),
               Requirement("glyphs_classifier", "glyphs_mlp_classifier"))
DATASETS = {"digits": ("gan_mnist5k_painter", "mnist5k_classifier"),
            "glyphs": ("gan_glyphs_painter", "glyphs_classifier")}
GENERATORS = {"painter, delta": ("model.rule=delta",), "painter, Hebbian": ("model.rule=hebbian",),
              "conv generator": ("model.kind=conv_generator",)}
SAMPLES = 16   # per condition in the samples figure
LEARNING_RATES = ("optim.lr", (2e-4, 1e-3))   # the authors' and the recipes', for generator and discriminator


def frechet(name: str) -> Column:
    """The distance of a test result (the learner's, or the floor's or ceiling's) to the held-out images."""
    return Column(name, lambda results, learner: results[{"Fréchet distance": learner, "floor": "training images",
                                                          "ceiling": "untrained"}[name]]["frechet"])


def figures(study: Study, results: dict, folder: Path) -> list[Path]:
    """The distances per condition with each dataset's floor and ceiling, and ``SAMPLES`` images of
    each condition's seed-0 run (its best.pt EMA generator, latents at eval.val_seed)."""
    from metafwp.evaluate import load_run

    rows, title = results["conditions"], f"{study.name}: {len(results['seeds'])} seeds, 95 % CI over seeds"
    bars = {}
    for dataset in DATASETS:
        labels = [label for label in rows if label.endswith(f", {dataset}")]
        if not labels:
            continue
        for label in labels:
            bars[label] = {"frechet": rows[label]["columns"]["Fréchet distance"]["mean"],
                           "ci95": rows[label]["columns"]["Fréchet distance"]["ci95"]}
        for bound, name in (("floor", "training images"), ("ceiling", "untrained")):
            cell = rows[labels[0]]["columns"][bound]
            bars[f"{name}, {dataset}"] = {"frechet": cell["mean"], "ci95": cell["ci95"]}
    samples = []
    for label in rows:
        run = next(r for r in results["runs"] if r["condition"] == label and r["selected"] and r["seed"] == 0)
        _, task, model, _ = load_run(run["run"], ["train.progress=none"])
        samples.append(task.validation_images(model, torch.device("cpu"))["samples"][:SAMPLES])
    return [plot_frechet_bars(bars, folder / "frechet.png", title=title),
            plot_image_grid(torch.cat(samples), folder / "samples.png", columns=SAMPLES,
                            title="rows: " + "; ".join(rows) + " (seed 0, best.pt)")]


register_study(Study(
    name="painter",
    summary="the fast weight painter (delta, Hebbian) against a convolutional generator of its size, GANs on the "
            "embedded digits and glyphs: Fréchet distances to held-out images",
    conditions=tuple(Condition(f"{generator}, {dataset}", recipe,
                               overrides + (f"data.classifier={STUDY_FOLDER}/{classifier}",), grid=(LEARNING_RATES,))
                     for dataset, (recipe, classifier) in DATASETS.items()
                     for generator, overrides in GENERATORS.items()),
    columns=(frechet("Fréchet distance"), frechet("floor"), frechet("ceiling")),
    validation=("eval.val_every=250", "eval.val_episodes=1000"),
    steps=1000,
    episodes=1000,
    figures=figures,
    requires=CLASSIFIERS,
    notes="1000 steps of 64 real images, Adam with the painter authors' betas (0.5 / 0.9) for every generator and "
          "discriminator at the learning rate chosen per condition on validation from 2e-4 (the authors') and 1e-3 "
          "(the recipes'), and the authors' gradient penalty (10, every 4 steps); the painters' stroke layer starts "
          "from weights 20 times PyTorch's (the recipes' program_scale: at 1 the painter painted one image for "
          "every latent in trials). Validation and selection read the distance of 1,000 generated images to the "
          "training images; the tested generator is the EMA (0.995) of best.pt. The Fréchet distances read the 800 "
          "features of an MLP classifier (784-800-800) trained first on each dataset's training images: they are "
          "not comparable with published (Inception) FIDs. The painter: 28 strokes, an LSTM of 256 units, 359,737 "
          "parameters; the convolutional generator 357,985. The authors trained 450,000 steps at 64 x 64 with a "
          "larger discriminator; this is a CPU-scale comparison.",
))
