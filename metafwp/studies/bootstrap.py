"""Bootstrapping (Irie & Schmidhuber 2023) on glyphs: the plain learner and three weightings of the
bootstrapped objective (the authors' 1 / 1 / 10, 1 / 1 / 1, and 1 / 1 / 0 without the KL term), the
SRWM of the demo, meta-trained 10-way at K = 1 with F = 2 on the glyph `train` classes, validated
on `val`, tested at K = 1 and K = 3 on `evaluation`."""
from metafwp.plots import plot_accuracy_by_support_shots
from metafwp.studies.declaration import Column, Condition, Study, register_study


def accuracy_at(k: int) -> Column:
    return Column(f"K = {k}", lambda results, learner: results[f"{learner} K={k}"]["accuracy"])


def figures(study: Study, results: dict, folder):
    curves = {label: {k: (row["columns"][f"K = {k}"]["mean"], row["columns"][f"K = {k}"]["ci95"]) for k in (1, 3)}
              for label, row in results["conditions"].items()}
    return [plot_accuracy_by_support_shots(curves, folder / "accuracy_by_support_shots.png", chance=results["chance"],
                                           trained_shots=1, title=f"{study.name}: {len(results['seeds'])} seeds, "
                                                                  f"95 % CI over seeds")]


RECIPE = "glyphs_bootstrap_10way1shot_srwm"
BOOTSTRAP = register_study(Study(
    name="bootstrap",
    summary="plain vs bootstrapped SRWM (loss weights main / future / bootstrap) on glyphs, 10-way, K = 1 and 3",
    conditions=(Condition("plain 1 / 0 / 0", f"{RECIPE}_plain"),
                Condition("bootstrapped 1 / 1 / 10 (the authors')", RECIPE, ("data.loss_weights=[1,1,10]",)),
                Condition("bootstrapped 1 / 1 / 1", RECIPE, ("data.loss_weights=[1,1,1]",)),
                Condition("future term only 1 / 1 / 0", RECIPE, ("data.loss_weights=[1,1,0]",))),
    columns=(accuracy_at(1), accuracy_at(3)),
    validation=("data.train_split=train", "data.val_split=val", "eval.val_every=125", "eval.val_episodes=500"),
    steps=1000,
    figures=figures,
    notes="1000 steps, not the recipe's 1500, keep the study within an hour on 2 CPU cores (--jobs 2). "
          "Whether the KL term adds anything is read from 1 / 1 / 1 against 1 / 1 / 0 (the same runs but "
          "for that term); the recipe's default weights are the bootstrapped weighting with the best "
          "validation score.",
))
