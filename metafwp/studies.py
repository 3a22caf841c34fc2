"""Studies on the embedded data that compare several runs, each a few minutes on a 2-core CPU:

    python -m metafwp.studies bootstrap [--out runs/studies] [--steps N] [--episodes N] [--jobs N]
    python -m metafwp.studies multitask [--out runs/studies] [--steps N] [--episodes N] [--jobs N]
    python -m metafwp.studies continual | continual-class [...]
    python -m metafwp.studies expressivity [--language parity|mod_add|anbn] [--seeds N] [...]

``bootstrap``: the SRWM meta-trained with the bootstrapping objective beside the same SRWM trained on
the plain K-shot loss for the same steps (``recipes/glyphs_bootstrap_10way1shot_srwm*.yaml``), tested
on the same episodes at K = 1 and K = 3; a table and ``bootstrap/comparison.png``.
``multitask``: SRWM, DeltaNet and LSTM on letter-then-symbol glyph sequences
(``recipes/glyphs_multitask_*.yaml``), tested on the same sequences; each learner's accuracy on the
second segment and ``multitask/accuracy_across_switch.png``.
``continual`` / ``continual-class``: the SRWM meta-trained on glyph task streams with and without the
ACL terms (``recipes/glyphs_continual_{domain,class}_{acl,plain}.yaml``), meta-tested on the same
Split-MNIST streams (the embedded MNIST digits); the forgetting matrices beside the quoted
replay-free baselines, and ``forgetting.png``.
``expressivity``: every mixer family on a formal language (``recipes/expressivity_<language>.yaml``),
``--seeds`` seeds each (Default: 3), tested on the same strings at the training length and at 4x it;
a table of mean accuracies with 95% CIs over seeds (Student's t), and ``accuracy_by_length.png``.

Every run is an ordinary run of its recipe with ``train.resume=auto`` under ``--out/<study>/``: run a
study again and finished runs are only re-tested. ``--jobs`` runs (Default: all of the study's) train
side by side, one thread each.
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from episodes.formal import LANGUAGES
from metafwp.demo import RECIPES, run_learner, training_pool
from metafwp.errors import run_command
from metafwp.plots import (plot_accuracy_across_switch, plot_accuracy_by_length, plot_accuracy_by_support_shots,
                           plot_forgetting)
from metafwp.tasks.continual import QUOTED_BASELINES
from metafwp.train import load_config

STUDIES = {
    "bootstrap": {"bootstrapped SRWM": "glyphs_bootstrap_10way1shot_srwm",
                  "plain SRWM": "glyphs_bootstrap_10way1shot_srwm_plain"},
    "multitask": {"SRWM": "glyphs_multitask_srwm", "DeltaNet": "glyphs_multitask_delta",
                  "LSTM": "glyphs_multitask_lstm"},
    "continual": {"SRWM with ACL": "glyphs_continual_domain_acl", "SRWM without ACL": "glyphs_continual_domain_plain"},
    "continual-class": {"SRWM with ACL": "glyphs_continual_class_acl",
                        "SRWM without ACL": "glyphs_continual_class_plain"},
}


# The expressivity study's mixers: label -> overrides of the language's recipe (DeltaNet, beta in (0, 2)).
EXPRESSIVITY_MIXERS = {
    "delta, beta in (0, 1)": ["model.beta_activation=sigmoid"],
    "delta, beta in (0, 2)": [],
    "gated_delta, beta in (0, 2)": ["model.mixer=gated_delta"],
    "DeltaProduct n=2, beta in (0, 2)": ["model.num_householder=2"],
    "hebbian": ["model.mixer=hebbian", "model.beta_activation=sigmoid"],
    "decay": ["model.mixer=decay", "model.beta_activation=sigmoid"],
    "gla": ["model.mixer=gla", "model.beta_activation=sigmoid"],
    "mesa": ["model.mixer=mesa"],
    "srwm": ["model.mixer=srwm"],
    "delta_rnn": ["model.mixer=delta_rnn"],
    "delta_lstm": ["model.mixer=delta_lstm"],
    "recurrent_delta": ["model.mixer=recurrent_delta"],
    "delta_mlp": ["model.mixer=delta_mlp"],
    "delta_delta": ["model.mixer=delta_delta"],
    "attention": ["model.mixer=attention"],
    "lstm": ["model.mixer=lstm"],
}
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def train_runs(study: str, out: Path, args, runs: dict[str, tuple[str, list[str]]] | None = None) -> dict[str, dict]:
    """``{label: metrics.json}`` of the study's runs (Default: ``STUDIES[study]``; else ``{label:
    (recipe, overrides)}``), trained ``args.jobs`` at a time."""
    jobs = {}
    runs = runs or {label: (recipe, []) for label, recipe in STUDIES[study].items()}
    with training_pool(args.jobs) as pool:
        for label, (recipe, extra) in runs.items():
            name = recipe if not extra else f"{recipe}_{label}"
            overrides = [*extra, f"train.out_dir={out}", f"train.name={name}", "train.resume=auto",
                         "train.threads=1", "train.progress=lines",
                         *([f"train.steps={args.steps}"] if args.steps else []),
                         *([f"eval.episodes={args.episodes}"] if args.episodes else [])]
            print(f"{label}: python -m metafwp.train recipes/{recipe}.yaml {' '.join(overrides)}")
            jobs[label] = pool.submit(run_learner, recipe, overrides)
        print(f"\nTraining {len(jobs)} runs, {args.jobs} at a time (a line every log_every steps):", flush=True)
        return {label: job.result() for label, job in jobs.items()}


def bootstrap_study(out: Path, args) -> dict:
    """Bootstrapped vs plain at K and the larger K, with the pixel baseline, on the same episodes."""
    runs = train_runs("bootstrap", out, args)
    curves, baseline = {}, {}
    for label, metrics in runs.items():
        for result in metrics["test"].values():  # every run tests the pixel baseline on the same episodes
            curve = curves.setdefault(label, {}) if result["learner"] == metrics["learner"] else baseline
            curve[result["k_shot"]] = (result["accuracy"], result["ci95"])
    curves["pixel nearest neighbour"] = baseline
    shots = sorted({k for curve in curves.values() for k in curve})
    first = next(iter(runs.values()))
    episodes = next(iter(first["test"].values()))["episodes"]
    print(f"\nGlyphs 10-way, meta-trained at K = {shots[0]}, held-out classes ({episodes} test episodes per K, "
          f"the same for every learner):")
    print(f"  {'learner':<24}" + "".join(f"{'K = ' + str(k):>18}" for k in shots) + f"{'training':>10}")
    for name, curve in curves.items():
        minutes = f"{runs[name]['train_seconds'] / 60:>6.1f} min" if name in runs else ""
        print(f"  {name:<24}" + "".join(f"{curve[k][0]:>9.2f} +/- {curve[k][1]:4.2f}" for k in shots) + minutes)
    summary = {"curves": {name: {str(k): {"accuracy": a, "ci95": c} for k, (a, c) in curve.items()}
                          for name, curve in curves.items()},
               "train_seconds": {label: m["train_seconds"] for label, m in runs.items()},
               "runs": {label: m["run"] for label, m in runs.items()}, "episodes": episodes}
    figure = plot_accuracy_by_support_shots(curves, out / "comparison.png", chance=10.0, trained_shots=shots[0],
                                            title=f"Glyphs 10-way, held-out classes, {episodes} episodes per K")
    return dict(summary, figure=str(figure))


def multitask_study(out: Path, args) -> dict:
    """The learners' accuracy across the switch and on the second segment, on the same sequences."""
    runs = train_runs("multitask", out, args)
    results = {label: metrics["test"][metrics["learner"]] for label, metrics in runs.items()}
    episodes = next(iter(results.values()))["episodes"]
    print(f"\nGlyph letters and symbols, one 5-way segment each in random order, held-out blocks "
          f"({episodes} test sequences, the same for every learner):")
    print(f"  {'learner':<10} {'all steps':>16} {'second segment':>16} {'training':>10}")
    for label, result in results.items():
        print(f"  {label:<10} {result['accuracy']:>7.2f} +/- {result['ci95']:4.2f} "
              f"{result['second_segment_accuracy']:>15.2f} {runs[label]['train_seconds'] / 60:>7.1f} min")
    figure = plot_accuracy_across_switch(results, out / "accuracy_across_switch.png", chance=20.0,
                                         title=f"Glyph multi-task sequences, {episodes} test sequences")
    summary = {label: {"accuracy": r["accuracy"], "ci95": r["ci95"],
                       "second_segment_accuracy": r["second_segment_accuracy"], "segments": r["segments"]}
               for label, r in results.items()}
    return {"learners": summary, "runs": {label: m["run"] for label, m in runs.items()}, "figure": str(figure)}


def continual_study(out: Path, args, kind: str) -> dict:
    """The forgetting matrices with and without the ACL terms on the same Split-MNIST streams."""
    runs = train_runs("continual" if kind == "domain" else "continual-class", out, args)
    results = {label: metrics["test"][metrics["learner"]] for label, metrics in runs.items()}
    episodes = next(iter(results.values()))["episodes"]
    column = 0 if kind == "domain" else 1
    print(f"\nSplit-MNIST {kind}-incremental, meta-trained on glyph task streams ({episodes} test streams, the "
          f"same for every learner); accuracy of task s (rows) after learning tasks 1 .. t (columns), %:")
    for label, result in results.items():
        print(f"\n  {label}: final average {result['final_average']:.2f} +/- {result['ci95']:.2f} "
              f"({runs[label]['train_seconds'] / 60:.1f} min of training)")
        for s, row in enumerate(result["forgetting"]["mean"]):
            print(f"    task {s + 1}: " + " ".join("     " if v is None else f"{v:5.1f}" for v in row))
    print("\n  quoted (Hsu et al. 2018, full MNIST, conventional training, no replay): "
          + ", ".join(f"{name} {values[column]:.1f}" for name, values in QUOTED_BASELINES.items()))
    figure = plot_forgetting(results, out / "forgetting.png", chance=100 / (2 if kind == "domain" else 10),
                             quoted=QUOTED_BASELINES, kind=kind,
                             title=f"Split-MNIST {kind}-incremental, {episodes} test streams")
    summary = {label: {"final_average": r["final_average"], "ci95": r["ci95"], "forgetting": r["forgetting"]}
               for label, r in results.items()}
    return {"learners": summary, "quoted": {name: values[column] for name, values in QUOTED_BASELINES.items()},
            "runs": {label: m["run"] for label, m in runs.items()}, "figure": str(figure)}


def expressivity_study(out: Path, args) -> dict:
    """Every mixer of ``EXPRESSIVITY_MIXERS`` on ``args.language``, ``args.seeds`` seeds each."""
    recipe = f"expressivity_{args.language}"
    runs = {f"{label} / seed {seed}": (recipe, [*overrides, f"train.seed={seed}"])
            for label, overrides in EXPRESSIVITY_MIXERS.items() for seed in range(args.seeds)}
    finished = train_runs("expressivity", out, args, runs={run_label(label): run for label, run in runs.items()})
    table, lengths = {}, None
    for label in EXPRESSIVITY_MIXERS:
        per_seed = [finished[run_label(f"{label} / seed {seed}")] for seed in range(args.seeds)]
        lengths = [result_name.rsplit("@", 1)[1] for result_name in per_seed[0]["test"]]
        table[label] = {length: seed_interval([list(m["test"].values())[i]["accuracy"] for m in per_seed])
                        for i, length in enumerate(lengths)}
        table[label]["train_seconds"] = sum(m["train_seconds"] for m in per_seed) / len(per_seed)
    episodes = next(iter(next(iter(finished.values()))["test"].values()))["episodes"]
    print(f"\n{args.language}: trained on strings up to {lengths[0]}, {episodes} test strings per length, the same "
          f"for every run; accuracy of the whole string's label, mean and 95% CI over {args.seeds} seeds (%):")
    print(f"  {'mixer':<34}" + "".join(f"{'length ' + length:>20}" for length in lengths) + f"{'training':>12}")
    for label, row in table.items():
        print(f"  {label:<34}" + "".join(f"{row[length][0]:>11.1f} +/- {row[length][1]:4.1f}" for length in lengths)
              + f"{row['train_seconds'] / 60:>8.1f} min")
    data = load_config(RECIPES / f"{recipe}.yaml").data
    chance = 100 / (data.modulus if data.language == "mod_add" else 2)
    figure = plot_accuracy_by_length(table, out / "accuracy_by_length.png", lengths=lengths, chance=chance,
                                     title=f"{args.language}, trained on lengths up to {lengths[0]}, "
                                           f"{args.seeds} seeds (95% CI)")
    summary = {label: {**{f"length {length}": {"accuracy": row[length][0], "ci95": row[length][1]}
                          for length in lengths}, "train_seconds": row["train_seconds"]}
               for label, row in table.items()}
    return {"language": args.language, "mixers": summary, "seeds": args.seeds, "episodes": episodes,
            "runs": {label: m["run"] for label, m in finished.items()}, "figure": str(figure)}


def run_label(label: str) -> str:
    """A run-folder-safe form of a study label."""
    return re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")


def seed_interval(values: list[float]) -> tuple[float, float]:
    """Mean and the 95% confidence half-width over seeds (Student's t with n - 1 degrees of freedom)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    std = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    return mean, T_975.get(n - 1, 1.96) * std / n ** 0.5


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m metafwp.studies", description=__doc__.split("\n\n")[0])
    parser.add_argument("study", choices=sorted([*STUDIES, "expressivity"]))
    parser.add_argument("--out", default="runs/studies", help="folder for the study's runs and summary")
    parser.add_argument("--steps", type=int, help="training steps of every run (Default: the recipes')")
    parser.add_argument("--episodes", type=int, help="test episodes (Default: the recipes' 1000)")
    parser.add_argument("--jobs", type=int, help="runs trained at once, one thread each (Default: all the study's "
                                                 "runs: on 2 cores three runs side by side end sooner than 2 + 1; "
                                                 "expressivity: 2)")
    parser.add_argument("--language", choices=LANGUAGES, default="parity",
                        help="expressivity: the formal language (Default: parity)")
    parser.add_argument("--seeds", type=int, default=3, help="expressivity: seeds per mixer (Default: 3)")
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (2 if args.study == "expressivity" else len(STUDIES[args.study]))
    started = time.perf_counter()
    out = Path(args.out) / (f"expressivity_{args.language}" if args.study == "expressivity" else args.study)
    out.mkdir(parents=True, exist_ok=True)
    if args.study == "expressivity":
        summary = expressivity_study(out, args)
    elif args.study.startswith("continual"):
        summary = continual_study(out, args, "class" if args.study == "continual-class" else "domain")
    else:
        summary = (bootstrap_study if args.study == "bootstrap" else multitask_study)(out, args)
    summary["wall_seconds"] = time.perf_counter() - started
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nResults: {(out / 'summary.json').resolve()} and {Path(summary['figure']).resolve()}")
    print(f"Per run (learning curves, metrics.json, checkpoint.pt): {out.resolve()}/<recipe>/")
    seconds = summary["wall_seconds"]
    print(f"Study wall time: {int(seconds // 60)} min {seconds % 60:.0f} s")
    return summary


if __name__ == "__main__":
    run_command(main)
