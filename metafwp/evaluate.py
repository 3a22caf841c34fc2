"""``python -m metafwp.evaluate <run dir> [key=value ...]``: test a trained run again on the fixed,
seeded held-out episodes of its config, beside its baselines, with the run's ``best.pt`` when it
has one (else ``checkpoint.pt``). Overrides, in the style of ``python -m metafwp.train``: the
settings that shape only the test (``eval.episodes``, ``eval.batch_size``, ``eval.seed``,
``eval.baselines`` and the task's own, e.g. ``data.test_split``; ``--help`` lists them per task),
``train.device`` and ``train.progress``. ``eval.baselines=[pixel_nn,prototypes_on_backbone]`` adds
nearest prototypes on the run's trained backbone (a Prototypical Network's classifier on the
learner's features): how much of its accuracy the features alone carry, and how much its
in-context matching adds or loses.

Each split and setting gets its own file, ``evaluation_<split>_<episodes>ep_seed<seed>.json``,
recording the split, episodes, seed and weights; results for other baselines are added to it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from metafwp.errors import USER_ERRORS, ConfigError
from metafwp.tasks import TASKS
from metafwp.train.checkpoint import load_checkpoint
from metafwp.train.config import EVAL_TEST_KEYS, load_config, test_keys
from metafwp.train.distributed import resolve_device

RUN_KEYS = ("train.device", "train.progress")  # where and how it runs, beside the test settings


def evaluate_keys(task: str) -> tuple[str, ...]:
    """The overrides ``evaluate`` takes for a run of ``task``."""
    return test_keys(task) + RUN_KEYS


def keys_by_task() -> str:
    """What ``--help`` says ``evaluate`` takes: the common keys, then each task's own."""
    own = "; ".join(f"{name}: {', '.join(evaluate_keys(name)[len(EVAL_TEST_KEYS):-len(RUN_KEYS)]) or 'none'}"
                    for name in TASKS)
    return f"{', '.join(EVAL_TEST_KEYS + RUN_KEYS)}, and per task ({own})"


def load_run(run_dir: str | Path, overrides: list[str] = (), weights: str | None = None):
    """``(config, task, model, weights)`` of a trained run: its config.yaml with ``overrides``,
    its task, and its learner with the weights of ``weights`` (Default: ``best.pt`` when the run
    has one, else ``checkpoint.pt``), in eval mode on the CPU."""
    run_dir = Path(run_dir).expanduser()
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: no config.yaml (give the folder "
                                f"python -m metafwp.train printed)")
    config = load_config(config_file, overrides)
    progress = config.train.progress == "bar" or (config.train.progress == "auto" and sys.stderr.isatty())
    task = TASKS[config.task](config, progress=progress)
    model = task.build_learner(config.model).eval()
    weights = weights or next((name for name in ("best.pt", "checkpoint.pt") if (run_dir / name).is_file()), None)
    if any(p.requires_grad for p in model.parameters()):
        if weights is None:
            raise FileNotFoundError(f"{run_dir} has no best.pt or checkpoint.pt: train it first")
        model.load_state_dict(load_checkpoint(run_dir / weights)["model"])
    else:
        weights = "none (nothing to train)"
    return config, task, model, weights


def evaluate_run(run_dir: Path, overrides: list[str] = (), progress: bool = True) -> dict:
    """``{"split", "episodes", "seed", "weights", "metric", "results": {name: result}}`` of the run in
    ``run_dir`` (its config.yaml and best.pt or checkpoint.pt) on its test episodes."""
    config_file = Path(run_dir).expanduser() / "config.yaml"
    task_name = load_config(config_file).task if config_file.is_file() else None
    for item in overrides:
        if task_name is not None and item.split("=", 1)[0] not in evaluate_keys(task_name):
            raise ConfigError(f"evaluate takes {', '.join(evaluate_keys(task_name))} for a {task_name} run; "
                              f"{item!r} would change the trained run")
    config, task, model, weights = load_run(run_dir, [*overrides, *([] if progress else ["train.progress=none"])])
    device = resolve_device(config.train.device)
    results = task.test(model.to(device), device)
    return {"split": task.test_set_name(config), "episodes": config.eval.episodes, "seed": config.eval.seed,
            "weights": weights, "metric": task.metric, "results": results}


def result_file(run_dir: Path, evaluation: dict) -> Path:
    return run_dir / f"evaluation_{evaluation['split']}_{evaluation['episodes']}ep_seed{evaluation['seed']}.json"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metafwp.evaluate", description=__doc__.split(":")[0])
    parser.add_argument("run_dir", type=Path, help="the run folder printed by python -m metafwp.train")
    parser.add_argument("overrides", nargs="*", help=f"key=value settings of {keys_by_task()}")
    args = parser.parse_args(argv)
    try:
        evaluation = evaluate_run(args.run_dir, args.overrides)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    path = result_file(args.run_dir, evaluation)
    if path.is_file():  # the same episodes: keep what other baselines scored on them
        evaluation["results"] = {**json.loads(path.read_text())["results"], **evaluation["results"]}
    metric = evaluation["metric"]
    width = max(map(len, evaluation["results"]))
    print(f"{evaluation['split']} split, {evaluation['episodes']} episodes (seed {evaluation['seed']}), "
          f"weights {evaluation['weights']}:")
    for name, result in evaluation["results"].items():
        print(f"  {name:>{width}}: {metric} {result[metric]:.4g} +/- {result['ci95']:.2g}")
    path.write_text(json.dumps(evaluation, indent=2))
    print(f"Written to {path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
