"""Learning rules in continuous time against their baselines on irregularly sampled digits (Irie,
Faccio & Schmidhuber 2022, at CPU scale): the continuous-time FWP (the authors' delta_cde), a neural
CDE (Kidger et al. 2020) of the same state width, and a discrete DeltaNet and an LSTM that read only
the observed rows with their time and gap, all within 3 % of 9,870 parameters; test accuracy on the
500 test digits against the fraction of each digit's 28 rows dropped (0, 0.3, 0.5, 0.7)."""
from pathlib import Path

import torch

from metafwp.plots import plot_accuracy_against, plot_fast_weight_norm
from metafwp.studies.declaration import ACCURACY, Condition, Study, register_study

LEARNERS = {"continuous-time FWP": "irregular_rows_ct_fwp", "neural CDE": "irregular_rows_neural_cde",
            "DeltaNet": "irregular_rows_delta", "LSTM": "irregular_rows_lstm"}
DROP_RATES = (0.0, 0.3, 0.5, 0.7)
# backpropagation through the 28 rk4 steps gives the adjoint's gradients up to the solver's error,
# 1.35x faster at this size (the adjoint's point, constant memory, does not matter at 28 steps)
SOLVED = ("model.adjoint=false",)
TRAJECTORY = ("continuous-time FWP", 0.3)   # the run whose fast weights are drawn: its seed 0, test digit 0


def label(learner: str, drop_rate: float) -> str:
    return f"{learner}, {int(round(100 * drop_rate))} % dropped"


def figures(study: Study, results: dict, folder: Path) -> list[Path]:
    """Test accuracy against the drop rate, one line per learner; and ``||W_h(t)||`` of the
    continuous-time FWP's fast weights along one test digit (seed 0, 30 % dropped, best.pt)."""
    from metafwp.evaluate import load_run

    series = {}
    for learner in LEARNERS:
        for drop_rate in DROP_RATES:
            row = results["conditions"].get(label(learner, drop_rate))
            if row:
                cell = row["columns"]["accuracy"]
                series.setdefault(learner, []).append((100 * drop_rate, cell["mean"], cell["ci95"]))
    paths = [plot_accuracy_against(series, folder / "accuracy_against_drop_rate.png",
                                   xlabel="rows dropped (%)", ylabel="test accuracy (%)",
                                   title=f"{study.name}: {len(results['seeds'])} seeds, 95 % CI over seeds")]
    run = next((r for r in results["runs"] if r["condition"] == label(*TRAJECTORY) and r["selected"]
                and r["seed"] == 0), None)
    if run:
        config, task, model, _ = load_run(run["run"], ["train.progress=none"])
        digit = task.make_sampler("test", config.eval.seed).sample([0])
        with torch.no_grad():
            grid, _, steps, W = model.eval().fast_weights(digit.inputs)
        H, d = model.field.num_heads, model.field.head_dim
        paths.append(plot_fast_weight_norm(grid.numpy(), W[:, 0].view(-1, H, d, d).norm(dim=(2, 3)).numpy(),
                                           steps[0].numpy(), folder / "fast_weight_norm.png",
                                           title=f"{label(*TRAJECTORY)}: test digit 0 (seed 0, best.pt)"))
    return paths


register_study(Study(
    name="irregular_rows",
    summary="continuous-time FWP, neural CDE, DeltaNet and LSTM of one size on digits with 0-70 % of rows dropped",
    conditions=tuple(Condition(label(learner, drop_rate), recipe, (f"data.drop_rate={drop_rate}",)
                               + (SOLVED if learner in ("continuous-time FWP", "neural CDE") else ()))
                     for learner, recipe in LEARNERS.items() for drop_rate in DROP_RATES),
    columns=(ACCURACY,),
    validation=("eval.val_every=200", "eval.val_episodes=500"),
    steps=1000,
    figures=figures,
    notes="The embedded MNIST digits' fixed 4,000 / 500 / 500 split, each digit 28 rows at times 0 .. 27 with "
          "the given fraction dropped at random per digit (the neural-CDE literature's protocol), classified after "
          "its last observed row; validated on the 500 validation digits, tested on the 500 test digits. The "
          "continuous-time learners are solved with rk4 at step 1 and trained by backpropagation through the "
          "solver (the recipes' adjoint gives the same gradients up to the solver's error; 1.35x slower here). "
          "1000 steps of 128 digits (32 epochs; the recipes' 1500 cut, declared before the runs, to keep 48 "
          "runs within 90 minutes on 2 CPU cores), the recipes' learning rate 3e-3 with a cosine schedule, no grid.",
))
