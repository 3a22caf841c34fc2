"""Every mixer family on a formal language under a protocol of the literature: parity, addition mod 3
and a^n b^n under Bhattamishra et al.'s (every prefix labelled, trained on 2-50 steps, a string right
only if every step is, tested on 2-50 and 51-100), parity and addition mod 3 under Grazzi et al.'s
(only the last step supervised and scored, trained on 3-40 steps, tested on 3-40 and 40-256). Each
is validated on fresh strings of every test length. One study per language and protocol."""
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
    "delta_rnn": ("model.mixer=delta_rnn", "model.beta_activation=sigmoid"),   # the authors' rates
    "delta_lstm": ("model.mixer=delta_lstm", "model.beta_activation=sigmoid"),
    "recurrent_delta": ("model.mixer=recurrent_delta",),
    "delta_mlp": ("model.mixer=delta_mlp",),
    "delta_delta": ("model.mixer=delta_delta",),
    "attention": ("model.mixer=attention",),
    "lstm": ("model.mixer=lstm",),
}


def at_length(position: int, name: str) -> Column:
    """The protocol's accuracy on the ``position``-th test bin (0: the training lengths)."""
    def read(results: dict, learner: str) -> float:
        bins = sorted((int(key.rsplit("@", 1)[1].split("-")[0]), key) for key in results
                      if key.startswith(f"{learner}@"))
        return results[bins[position][1]]["accuracy"]
    return Column(name, read)


def figures(study: Study, results: dict, folder):
    table = {label: {column: (row["columns"][column]["mean"], row["columns"][column]["ci95"])
                     for column in row["columns"]} for label, row in results["conditions"].items()}
    lengths = [column.name for column in study.columns]
    protocol = study.name.rsplit("_", 1)[1]
    return [plot_accuracy_by_length(table, folder / "accuracy_by_length.png", lengths=lengths, chance=results["chance"],
                                    xlabel=SCORED[protocol],
                                    title=f"{study.name}: {len(results['seeds'])} seeds (95 % CI)")]


SCORED = {"bhattamishra": "strings with every step right (%)", "grazzi": "strings with the last step right (%)"}
# protocol -> (its overrides, the column names, steps declared before the runs, validation strings)
PROTOCOL_SETTINGS = {
    "bhattamishra": (("data.protocol=bhattamishra", "data.train_length=50"), ("2-50", "51-100"), 1500, 300),
    # Grazzi et al.'s learning rate: at the recipe's 3e-3 DeltaNet stayed at chance under this protocol
    "grazzi": (("data.protocol=grazzi", "data.train_length=40", "optim.lr=1e-3"), ("3-40", "40-256"), 1500, 200)}
PROTOCOL_STUDIES = (("parity", "bhattamishra"), ("mod_add", "bhattamishra"), ("anbn", "bhattamishra"),
                    ("parity", "grazzi"), ("mod_add", "grazzi"))
PROTOCOL_NOTES = {
    "bhattamishra": "Bhattamishra et al.'s protocol (used by Irie et al. 2023): the prefix's label is the target at "
                    "every step; a string counts as right only if every step is; lengths drawn uniformly.",
    "grazzi": "Grazzi et al.'s protocol: only the last step is supervised and scored; lengths drawn uniformly; "
              "their learning rate, 1e-3.",
}


def protocol_study(name: str, summary: str, protocol: str, conditions: tuple[Condition, ...], notes: str) -> Study:
    """A study under ``protocol``: its two test ranges as columns, validated on every test length."""
    _, bins, steps, val_episodes = PROTOCOL_SETTINGS[protocol]
    return register_study(Study(
        name=name, summary=summary, conditions=conditions,
        columns=(at_length(0, f"lengths {bins[0]}"), at_length(1, f"lengths {bins[1]}")),
        validation=("eval.val_every=300", f"eval.val_episodes={val_episodes}"),
        steps=steps,
        figures=figures,
        notes=f"{PROTOCOL_NOTES[protocol]} Validated on fresh strings of every test length; {steps} steps, {notes}",
    ))


for language, protocol in PROTOCOL_STUDIES:
    overrides, bins, _, _ = PROTOCOL_SETTINGS[protocol]
    protocol_study(f"expressivity_{language}_{protocol}",
                   f"every mixer family on {language}, {protocol} protocol: trained on {bins[0]} steps, tested on "
                   f"{bins[0]} and {bins[1]}", protocol,
                   tuple(Condition(label, f"expressivity_{language}", overrides + mixer)
                         for label, mixer in MIXERS.items()),
                   "not the recipe's 3000, declared before the runs to keep the study within two hours on 2 CPU cores.")

# The Delta RNN / Delta LSTM question: does either learn parity with rates in (0, 2), a learned R_0, or both?
RECURRENT_VARIANTS = {"rates (0, 1), R_0 = 0": ("model.beta_activation=sigmoid",),
                      "rates (0, 2), R_0 = 0": ("model.beta_activation=2sigmoid",),
                      "rates (0, 1), R_0 learned": ("model.beta_activation=sigmoid", "model.learned_initial_r=true"),
                      "rates (0, 2), R_0 learned": ("model.beta_activation=2sigmoid", "model.learned_initial_r=true")}
for protocol in ("bhattamishra", "grazzi"):
    protocol_study(f"recurrent_parity_{protocol}",
                   f"Delta RNN and Delta LSTM on parity, {protocol} protocol: rates in (0, 1) or (0, 2), R from zeros "
                   "or from a learned R_0", protocol,
                   tuple(Condition(f"{mixer}, {variant}", "expressivity_parity",
                                   PROTOCOL_SETTINGS[protocol][0] + (f"model.mixer={mixer}",) + variant_overrides)
                         for mixer in ("delta_rnn", "delta_lstm")
                         for variant, variant_overrides in RECURRENT_VARIANTS.items()),
                   "declared before the runs. The authors' Delta RNN and Delta LSTM start R at zero and write it with "
                   "rates in (0, 1) from the input alone; the other rows change one or both.")
