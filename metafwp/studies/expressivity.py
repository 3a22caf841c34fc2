"""Every mixer family on a formal language (parity, addition mod 3, a^n b^n): trained on strings up
to the recipe's length, validated on fresh strings of that length, tested on strings of that length
and of 4x it. One study per language."""
from episodes.formal import LANGUAGES
from metafwp.plots import plot_accuracy_by_length
from metafwp.studies.declaration import Column, Condition, Study, register_study

# label -> overrides of the language's recipe (DeltaNet, beta in (0, 2))
MIXERS = {
    "delta, beta in (0, 1)": ("model.beta_activation=sigmoid",),
    "delta, beta in (0, 2)": (),
    "gated_delta, beta in (0, 2)": ("model.mixer=gated_delta",),
    "DeltaProduct n=2, beta in (0, 2)": ("model.num_householder=2",),
    "hebbian": ("model.mixer=hebbian", "model.beta_activation=sigmoid"),
    "decay": ("model.mixer=decay", "model.beta_activation=sigmoid"),
    "gla": ("model.mixer=gla", "model.beta_activation=sigmoid"),
    "mesa": ("model.mixer=mesa",),
    "srwm": ("model.mixer=srwm",),
    "delta_rnn": ("model.mixer=delta_rnn",),
    "delta_lstm": ("model.mixer=delta_lstm",),
    "recurrent_delta": ("model.mixer=recurrent_delta",),
    "delta_mlp": ("model.mixer=delta_mlp",),
    "delta_delta": ("model.mixer=delta_delta",),
    "attention": ("model.mixer=attention",),
    "lstm": ("model.mixer=lstm",),
}


def at_length(position: int, name: str) -> Column:
    """The whole string's accuracy on the ``position``-th test length (0: the training length)."""
    def read(results: dict, learner: str) -> float:
        lengths = sorted(int(key.rsplit("@", 1)[1]) for key in results if key.startswith(f"{learner}@"))
        return results[f"{learner}@{lengths[position]}"]["accuracy"]
    return Column(name, read)


def figures(study: Study, results: dict, folder):
    table = {label: {column: (row["columns"][column]["mean"], row["columns"][column]["ci95"])
                     for column in row["columns"]} for label, row in results["conditions"].items()}
    lengths = [column.name for column in study.columns]
    return [plot_accuracy_by_length(table, folder / "accuracy_by_length.png", lengths=lengths, chance=results["chance"],
                                    title=f"{study.name}: {len(results['seeds'])} seeds (95 % CI)")]


for language in LANGUAGES:
    register_study(Study(
        name=f"expressivity_{language}",
        summary=f"every mixer family on {language}, at the training length and at 4x it",
        conditions=tuple(Condition(label, f"expressivity_{language}", overrides)
                         for label, overrides in MIXERS.items()),
        columns=(at_length(0, "training length"), at_length(1, "4x the training length")),
        validation=("eval.val_every=300", "eval.val_episodes=500"),
        figures=figures,
    ))
