"""In-context linear regression across learners (Garg et al. 2022's setting at d = 10: x ~ N(0, I),
w ~ N(0, I), no noise): DeltaNet, gated DeltaNet, Hebbian, mesa, SRWM, attention and LSTM of matched
size (within 10 % of DeltaNet's parameters, 4 layers each), the learning rate chosen per learner on
validation tasks. Synchronous feedback (20 labelled points, then 10 queries): the error at k = 2d,
with MAML (an MLP of the same size, second order) beside them. Delayed feedback (21 points): the
error at every k, the curve drawn per learner."""
import json
from pathlib import Path

from metafwp.plots import plot_error_by_examples
from metafwp.studies.declaration import Column, Condition, Study, register_study
from metafwp.studies.protocol import seed_interval
from metafwp.tasks.regression import error_at

LEARNING_RATES = ("optim.lr", (1e-3, 3e-3))
# label -> overrides of the regression recipes (DeltaNet, 4 layers, d_model 128, ff 2: 531,985 parameters);
# SRWM 516,097 (-3.0 %), LSTM 527,073 (-0.9 %), the others within 0.4 %; tested in tests/test_studies.py
MIXERS = {"DeltaNet": ("model.mixer=delta",),
          "gated DeltaNet": ("model.mixer=gated_delta",),
          "Hebbian": ("model.mixer=hebbian", "model.beta_activation=sigmoid"),
          "mesa": ("model.mixer=mesa",),
          "SRWM": ("model.mixer=srwm", "model.ff_multiplier=3"),
          "attention": ("model.mixer=attention",),
          "LSTM": ("model.mixer=lstm", "model.d_model=104")}
# MAML: an MLP 10-720-720-1 (527,761 parameters, -0.8 %), one inner step when training and ten when
# testing, 25 tasks a step (Finn et al.'s regression setting), its inner learning rate chosen on validation too
MAML = ("model.kind=maml", "model.mlp_hidden=[720,720]", "model.inner_steps=1", "model.test_inner_steps=10",
        "train.batch_size=25")
MAML_GRID = (LEARNING_RATES, ("model.inner_lr", (0.01, 0.03)))  # 0.3 diverges at this width
VALIDATION = ("eval.val_every=250", "eval.val_episodes=1000")
DIM = 10


def error_at_k(k: int) -> Column:
    return Column(f"k = {k}", lambda results, learner: error_at(results[learner], k))


def curves(study: Study, results: dict, folder: Path) -> list[Path]:
    """The mean error by k over each condition's tested runs (their evaluation files) with its 95 % CI."""
    by_condition = {}
    for label in results["conditions"]:
        by_condition[label] = []
        for run in results["runs"]:
            if run["condition"] == label and run["selected"]:
                learner = json.loads((Path(run["run"]) / "metrics.json").read_text())["learner"]
                evaluation = json.loads(next(Path(run["run"]).glob("evaluation_*.json")).read_text())
                by_condition[label].append(evaluation["results"][learner]["by_examples"])
    return [plot_error_by_examples(mean_curves(by_condition), folder / "error_by_examples.png", dim=DIM,
                                   title=f"{study.name}: {len(results['seeds'])} seeds, 95 % CI over seeds")]


def bars(study: Study, results: dict, folder: Path) -> list[Path]:
    """The error at k = 2d per condition, mean and 95 % CI over seeds."""
    column = study.columns[0].name
    cells = {label: row["columns"][column] for label, row in results["conditions"].items()}
    table = {label: {"by_examples": {str(2 * DIM): cell["mean"]}, "error": cell["mean"], "ci95": cell["ci95"]}
             for label, cell in cells.items()}
    return [plot_error_by_examples(table, folder / "error_at_2d.png", dim=DIM,
                                   title=f"{study.name}: {len(results['seeds'])} seeds, 95 % CI over seeds")]


def mean_curves(by_condition: dict[str, list[dict]]) -> dict[str, dict]:
    """``{label: {"by_examples": {k: mean}, "by_examples_ci95": {k: Student-t CI}}}`` over runs."""
    table = {}
    for label, runs in by_condition.items():
        intervals = {k: seed_interval([run[k] for run in runs]) for k in sorted(runs[0], key=int)}
        table[label] = {"by_examples": {k: mean for k, (mean, _) in intervals.items()},
                        "by_examples_ci95": {k: ci for k, (_, ci) in intervals.items()}}
    return table


register_study(Study(
    name="regression_synchronous",
    summary="in-context linear regression (d = 10) across learners of matched size and MAML: the error at k = 2d",
    conditions=tuple(Condition(label, "regression_linear_synchronous", overrides, grid=(LEARNING_RATES,))
                     for label, overrides in MIXERS.items())
    + (Condition("MAML", "regression_linear_synchronous", MAML, grid=MAML_GRID),),
    columns=(error_at_k(2 * DIM),),
    validation=VALIDATION,
    steps=1000,
    figures=bars,
    notes="The error is squared error / d on the 10 queries after 20 labelled points (k = 2d); least squares "
          "is exact there (0). 1000 steps of 64 tasks (25 for MAML, Finn et al.'s meta-batch), declared before "
          "the runs: the recipe's 2000 would take about 170 minutes on 2 cores, over the study's budget of 120.",
))

register_study(Study(
    name="regression_delayed",
    summary="in-context linear regression (d = 10) across learners of matched size under delayed feedback: the "
            "error by k",
    conditions=tuple(Condition(label, "regression_linear", overrides, grid=(LEARNING_RATES,))
                     for label, overrides in MIXERS.items()),
    columns=(error_at_k(DIM // 2), error_at_k(DIM), error_at_k(2 * DIM)),
    validation=VALIDATION,
    steps=1000,
    figures=curves,
    notes="Each step shows the previous step's target, so the learner predicts y_t from the k = t points before "
          "it; the figure draws every k. 1000 steps of 64 tasks (the recipe's 4000 a quarter), declared before the "
          "runs: 2000 would take about 120 minutes on 2 cores, the study's whole budget.",
))
