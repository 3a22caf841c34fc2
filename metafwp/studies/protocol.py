"""How every study runs: each candidate (condition x grid setting x seed) trains as an ordinary run of
its recipe with its test deferred and validation keeping ``best.pt``; per condition the setting with
the best mean validation score over seeds is selected; only the selected runs are tested, once, on
the same seeded test episodes; the table gives, per condition and column, the mean and the 95 %
Student-t interval over seeds. ``results.json`` (every run, the selection, the budget, wall time and
commit), ``results.md`` (the table with its seeds, selection rule and test episodes) and the figures
go to the study's folder. Finished runs and tests are reused."""
from __future__ import annotations

import json
import math
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from metafwp.demo import RECIPES
from metafwp.errors import ConfigError
from metafwp.evaluate import evaluate_run, result_file
from metafwp.plots import bar_label, plot_accuracy_bars
from metafwp.studies.declaration import STUDY_FOLDER, Condition, Study
from metafwp.studies.launchers import ClusterSettings, launch
from metafwp.tasks import TASKS
from metafwp.train import load_config, train
from metafwp.train.config import trajectory_differences

T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Budget:
    """What a run of the study uses: its seeds and, when not the declared ones, steps and episodes."""
    seeds: int
    steps: int | None
    episodes: int | None


@dataclass
class Candidate:
    """One run of the study: a condition, a grid setting and a seed."""
    condition: Condition
    setting: tuple[str, ...]
    seed: int
    name: str
    overrides: list[str]


def slug(text: str) -> str:
    """A run-folder-safe form of ``text``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def seed_interval(values: list[float]) -> tuple[float, float]:
    """Mean and the 95 % confidence half-width over seeds (Student's t with n - 1 degrees of freedom)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    std = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    return mean, T_975.get(n - 1, 1.96) * std / n ** 0.5


def plan(study: Study, folder: Path, budget: Budget) -> list[Candidate]:
    """Every candidate run, its config loaded (a recipe that no longer loads is named) and checked
    against a run of the same name already in ``folder`` (other settings are refused, naming them)."""
    candidates = []
    for condition in study.conditions:
        for setting in condition.settings():
            for seed in range(budget.seeds):
                name = slug(f"{condition.label} {' '.join(setting)} seed {seed}")
                overrides = [*(o.replace(STUDY_FOLDER, str(folder)) for o in condition.overrides), *setting,
                             *study.validation, f"train.seed={seed}",
                             "train.test=false", f"train.out_dir={folder}", f"train.name={name}",
                             "train.resume=auto", "train.threads=1", "train.progress=lines",
                             *([f"train.steps={budget.steps}"] if budget.steps else []),
                             *([f"eval.episodes={budget.episodes}"] if budget.episodes else [])]
                try:
                    config = load_config(RECIPES / f"{condition.recipe}.yaml", overrides)
                except (ConfigError, FileNotFoundError) as error:
                    raise ConfigError(f"study {study.name}, condition {condition.label!r} (recipe "
                                      f"{condition.recipe}): {error}") from None
                saved = folder / name / "config.yaml"
                if saved.is_file():
                    differences = trajectory_differences(load_config(saved), config)
                    if differences:
                        raise ConfigError(f"{folder} holds runs of other settings: {name} differs in "
                                          f"{'; '.join(differences)}; use another --out, or the settings it was "
                                          f"run with")
                candidates.append(Candidate(condition, setting, seed, name, overrides))
    return candidates


def requirement_overrides(folder: Path, name: str, overrides: tuple[str, ...]) -> list[str]:
    return [*overrides, f"train.out_dir={folder}", f"train.name={name}", "train.resume=auto", "train.threads=1",
            "train.progress=lines"]


def train_requirements(study: Study, folder: Path, launcher: str, jobs: int, cluster) -> dict[str, dict]:
    """Train and test (or reuse) each of the study's requirements; ``{name: its metrics.json}``."""
    metrics = {r.name: finished_run(folder / r.name) for r in study.requires}
    todo = [r for r in study.requires if metrics[r.name] is None or metrics[r.name]["test"] is None]
    trained = launch(launcher, [(train_candidate, (r.recipe, requirement_overrides(folder, r.name, r.overrides)))
                                for r in todo], jobs=jobs, folder=folder / "submitit", cluster=cluster,
                     on_done=lambda j: print(f"trained {todo[j].name} (required)", flush=True))
    metrics.update({r.name: run for r, run in zip(todo, trained)})
    return metrics


def train_candidate(recipe: str, overrides: list[str]) -> dict:
    """Train (or reuse) one candidate; its metrics.json (test deferred)."""
    run_dir = train(load_config(RECIPES / f"{recipe}.yaml", overrides))
    return json.loads((run_dir / "metrics.json").read_text())


def finished_run(run_dir: Path) -> dict | None:
    """The metrics.json of a run trained to its last step (``plan`` checked its settings), else None:
    it is to be trained or resumed."""
    metrics = run_dir / "metrics.json"
    if not metrics.is_file():
        return None
    record = json.loads(metrics.read_text())
    return record if record["history"] and record["history"][-1]["step"] == record["steps"] else None


def test_file(run_dir: Path, episodes: int | None) -> tuple[Path, list[str]]:
    """Where ``evaluate`` writes the run's test with ``episodes``, and the overrides it takes."""
    overrides = [f"eval.episodes={episodes}"] if episodes else []
    config = load_config(run_dir / "config.yaml", overrides)
    split = TASKS[config.task].test_set_name(config)
    return result_file(run_dir, {"split": split, "episodes": config.eval.episodes, "seed": config.eval.seed}), overrides


def finished_test(run_dir: str, episodes: int | None) -> dict | None:
    path, _ = test_file(Path(run_dir), episodes)
    return json.loads(path.read_text()) if path.is_file() else None


def test_candidate(run_dir: str, episodes: int | None) -> dict:
    """Test a selected run on best.pt: the ``evaluate`` results, written beside it."""
    torch.set_num_threads(1)
    path, overrides = test_file(Path(run_dir), episodes)
    evaluation = evaluate_run(Path(run_dir), overrides, progress=False)
    path.write_text(json.dumps(evaluation, indent=2))
    return evaluation


def select(study: Study, candidates: list[Candidate], metrics: list[dict]) -> dict[str, tuple[str, ...]]:
    """Per condition, the grid setting whose runs' best validation scores have the best mean."""
    chosen = {}
    for condition in study.conditions:
        scores = {}
        for candidate, run in zip(candidates, metrics):
            if candidate.condition is condition:
                if run["best"] is None:
                    raise ConfigError(f"{candidate.name} has no validation: the study's validation settings must "
                                      f"set eval.val_every")
                task = TASKS[run["task"]]
                sign = 1 if task.higher_is_better else -1
                score = run["best"][task.metric]
                scores.setdefault(candidate.setting, []).append(-math.inf if math.isnan(score) else sign * score)
        # a run that diverged (validation NaN) ranks its setting last
        chosen[condition.label] = max(scores, key=lambda setting: sum(scores[setting]) / len(scores[setting]))
    return chosen


def run_study(study: Study, folder: Path, budget: Budget, *, launcher: str = "local", jobs: int = 1,
              cluster: ClusterSettings | None = None) -> dict:
    """Train every candidate, select on validation, test the selected runs, write the results."""
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    candidates = plan(study, folder, budget)
    print(f"{study.name}: {len(candidates)} runs ({len(study.conditions)} conditions, {budget.seeds} seeds), "
          f"{jobs} at a time on {launcher}; each is python -m metafwp.train recipes/<recipe>.yaml <overrides>:")
    for candidate in candidates:
        print(f"  {candidate.name}: {candidate.condition.recipe} {' '.join(candidate.overrides)}")
    required = train_requirements(study, folder, launcher, jobs, cluster)

    def done(what):
        return lambda i: print(f"{what} {candidates[i].name}", flush=True)

    runs = [finished_run(folder / c.name) for c in candidates]
    to_train = [i for i, run in enumerate(runs) if run is None]
    trained = launch(launcher, [(train_candidate, (candidates[i].condition.recipe, candidates[i].overrides))
                                for i in to_train], jobs=jobs, folder=folder / "submitit", cluster=cluster,
                     on_done=lambda j: done("trained")(to_train[j]))
    for i, run in zip(to_train, trained):
        runs[i] = run
    chosen = select(study, candidates, runs)
    selected = [i for i, c in enumerate(candidates) if chosen[c.condition.label] == c.setting]
    tested = {i: test for i in selected if (test := finished_test(runs[i]["run"], budget.episodes)) is not None}
    to_test = [i for i in selected if i not in tested]
    tests = launch(launcher, [(test_candidate, (runs[i]["run"], budget.episodes)) for i in to_test], jobs=jobs,
                   folder=folder / "submitit", cluster=cluster, on_done=lambda j: done("tested")(to_test[j]))
    tested.update(zip(to_test, tests))
    tested = {i: tested[i] for i in selected}
    return write_results(study, folder, budget, candidates, runs, chosen, tested, time.perf_counter() - started,
                         required)


def finished_results(study: Study, folder: Path, budget: Budget) -> dict:
    """``report``: the results of the finished runs in ``folder``, nothing trained or tested anew. The
    columns are read again from the selected runs' test files and chance from the task, so a column
    declared after the runs, or a corrected definition of chance, reaches the table without a rerun."""
    record = folder / "results.json"
    if not record.is_file():
        raise ConfigError(f"{folder} holds no finished study {study.name} (no results.json): run it first, "
                          f"python -m metafwp.studies run {study.name} --out {folder.parent}")
    results = json.loads(record.read_text())
    run_dirs = [folder / Path(run["run"]).name for run in results["runs"]]  # in folder, wherever it was trained
    for run, run_dir in zip(results["runs"], run_dirs):
        if run["selected"]:
            test = finished_test(str(run_dir), results["test_episodes"])
            if test is None:
                raise ConfigError(f"{run_dir} has no test on {results['test_episodes']} episodes: run the study "
                                  f"again to test it, python -m metafwp.studies run {study.name} --out {folder.parent}")
            learner = json.loads((run_dir / "metrics.json").read_text())["learner"]
            run["test"] = test_columns(study, test["results"], learner)
    chosen = {label: tuple(row["selected"]) for label, row in results["conditions"].items()}
    results["conditions"] = condition_rows(study, results["runs"], chosen, results["metric"])
    first = load_config(run_dirs[0] / "config.yaml")
    results["chance"] = TASKS[first.task].chance(first)
    record.write_text(json.dumps(results, indent=2))
    write_tables(study, folder, results)
    return results


def commit() -> str | None:
    """The source's git commit (``+dirty`` with uncommitted changes), None outside a checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if head.returncode == 0 else None


def test_columns(study: Study, results: dict, learner: str) -> dict[str, float]:
    """``{column: value}`` of one tested run, from its ``evaluate`` results."""
    return {column.name: column.read(results, learner) for column in study.columns}


def condition_rows(study: Study, records: list[dict], chosen: dict, metric: str) -> dict[str, dict]:
    """Per condition: its selected setting, each column's mean, 95 % CI and per-seed values over its
    tested runs, their validation score and their mean training minutes."""
    conditions = {}
    for condition in study.conditions:
        rows = [r for r in records if r["condition"] == condition.label and r["selected"]]
        conditions[condition.label] = {
            "selected": list(chosen[condition.label]),
            "columns": {column.name: dict(zip(("mean", "ci95"), seed_interval([r["test"][column.name] for r in rows])))
                        | {"per_seed": [r["test"][column.name] for r in rows]} for column in study.columns},
            "validation": dict(zip(("mean", "ci95"), seed_interval([r["best_validation"][metric] for r in rows]))),
            "train_minutes": sum(r["train_seconds"] for r in rows) / len(rows) / 60}
    return conditions


def write_results(study: Study, folder: Path, budget: Budget, candidates: list[Candidate], runs: list[dict],
                  chosen: dict, tested: dict[int, dict], seconds: float,
                  required: dict[str, dict] | None = None) -> dict:
    """``results.json``, ``results.md`` and the figures of a finished study (``required``: the metrics
    of its requirements, whose tests the table's notes quote)."""
    first = load_config(Path(runs[0]["run"]) / "config.yaml")
    task = TASKS[first.task]
    records = []
    for i, (candidate, run) in enumerate(zip(candidates, runs)):
        record = {"condition": candidate.condition.label, "setting": list(candidate.setting), "seed": candidate.seed,
                  "run": run["run"], "steps": run["steps"], "train_seconds": run["train_seconds"],
                  "best_validation": run["best"], "selected": i in tested}
        if i in tested:
            record["test"] = test_columns(study, tested[i]["results"], run["learner"])
            record["test_episodes"] = tested[i]["episodes"]
        records.append(record)
    conditions = condition_rows(study, records, chosen, task.metric)
    results = {"study": study.name, "summary": study.summary, "seeds": list(range(budget.seeds)),
               "steps": budget.steps or "the recipes'", "test_episodes": records[next(iter(tested))]["test_episodes"],
               "selection": study.selection, "validation": list(study.validation), "metric": task.metric,
               "chance": task.chance(first), "wall_seconds": seconds, "commit": commit(),
               "conditions": conditions, "runs": records,
               "requirements": {name: {"run": run["run"], "steps": run["steps"], "metric": TASKS[run["task"]].metric,
                                       "test": run["test"]} for name, run in (required or {}).items()}}
    (folder / "results.json").write_text(json.dumps(results, indent=2))
    write_tables(study, folder, results)
    return results


def number(value: float) -> str:
    """Two decimals (accuracies in %), or three significant digits below 0.1 (errors, gamma)."""
    return f"{value:.2f}" if value == 0 or abs(value) >= 0.1 else f"{value:.3g}"


def write_tables(study: Study, folder: Path, results: dict) -> None:
    """``results.md`` and the figures, from ``results``."""
    columns = [column.name for column in study.columns]
    seeds = results["seeds"]
    lines = [f"# {study.name}: {study.summary}", "",
             f"{len(seeds)} seeds per condition (training seeds {seeds[0]}-{seeds[-1]}); "
             f"{results['steps']} training steps; {results['test_episodes']} test episodes, the same for every run; "
             f"validation: `{' '.join(results['validation'])}`. Selection: {results['selection']}. Cells: mean "
             f"+/- 95 % CI over seeds (Student's t).", "",
             f"| condition | selected | validation {results['metric']} | " + " | ".join(columns) + " | training |",
             "|---" * (len(columns) + 4) + "|"]
    for label, row in results["conditions"].items():
        cells = [f"{number(row['columns'][c]['mean'])} +/- {number(row['columns'][c]['ci95'])}" for c in columns]
        validation = f"{number(row['validation']['mean'])} +/- {number(row['validation']['ci95'])}"
        lines.append(f"| {label} | {' '.join(row['selected']) or '-'} | {validation} | " + " | ".join(cells)
                     + f" | {row['train_minutes']:.1f} min |")
    for name, run in results.get("requirements", {}).items():
        scores = ", ".join(f"{learner} {run['metric']} {result[run['metric']]:.2f} +/- {result['ci95']:.2f}"
                           for learner, result in run["test"].items())
        lines += ["", f"Required run `{name}` ({run['steps']} steps), trained first: test {scores}."]
    if study.notes:
        lines += ["", study.notes]
    (folder / "results.md").write_text("\n".join(lines) + "\n")
    labels = list(results["conditions"])
    head = study.columns[0].name
    if results["metric"] == "accuracy":
        plot_accuracy_bars([bar_label(label) for label in labels],
                           [results["conditions"][label]["columns"][head]["mean"] for label in labels],
                           [results["conditions"][label]["columns"][head]["ci95"] for label in labels],
                           folder / "results.png", chance=results["chance"], ylabel=f"{head} (%)",
                           title=f"{study.name}: {len(results['seeds'])} seeds, 95 % CI")
    if study.figures:
        study.figures(study, results, folder)
