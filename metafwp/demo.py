"""``make demo``: meta-train an SRWM, a DeltaNet and an LSTM learner, a Prototypical Network and MAML
(second order) on Glyphs 5-way 1-shot (the embedded data, no download), test them on held-out glyph
classes beside raw-pixel nearest neighbour, all on the same 1000 seeded test episodes; beside them, train von
Oswald et al.'s linear self-attention layer on in-context linear regression and compare it with the
constructed gradient-descent layer. Print the tables and where the tensorboard logs, plots and
metrics are.

    python -m metafwp.demo [--out runs/demo] [--steps N] [--episodes N] [--jobs 2]

Each learner is an ordinary run of its recipe (``recipes/glyphs_5way1shot_*.yaml``) with
``train.resume=auto``: run the demo again and finished runs are only re-tested, cut ones continue.
``--jobs`` learners train side by side, each in its own process on one CPU thread (on 2 cores that
beats one learner at a time on two threads, which these small models do not fill), with glibc told
to keep freed memory (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``): otherwise every
step's activations come as fresh pages from the OS and page faults take a fifth of the time.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from episodes import FewShotSampler, Glyphs
from episodes.plot import plot_episode
from metafwp.errors import run_command
from metafwp.evaluate import load_run
from metafwp.plots import plot_accuracy_bars
from metafwp.tasks.regression import compare_with_gradient_descent, one_step_gd_learning_rate
from metafwp.train import load_config, train

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(2 ** 32), "MALLOC_TRIM_THRESHOLD_": str(2 ** 32)}
# the longest first, so that two jobs end at about the same time
LEARNERS = {"SRWM": "glyphs_5way1shot_srwm", "MAML": "glyphs_5way1shot_maml", "DeltaNet": "glyphs_5way1shot_delta",
            "LSTM": "glyphs_5way1shot_lstm", "Prototypical Network": "glyphs_5way1shot_protonet"}
GD_STUDY = "regression_von_oswald_linear_attention"
GD_LR_TASKS = 200_000  # training tasks the GD step's learning rate is fitted on


@contextmanager
def training_pool(jobs: int):
    """A pool of ``jobs`` spawned processes whose C library keeps freed memory (set before they start);
    an error cancels the jobs not started yet (those running finish)."""
    environment = dict(os.environ)
    os.environ.update(KEEP_FREED_MEMORY)  # read by each job's C library when its process starts
    try:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            try:
                yield pool
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
    finally:
        os.environ.clear()
        os.environ.update(environment)


def run_learner(recipe: str, overrides: list[str]) -> dict:
    """Train (or re-test) one recipe; its metrics.json."""
    run_dir = train(load_config(RECIPES / f"{recipe}.yaml", overrides))
    return json.loads((run_dir / "metrics.json").read_text())


def run_gd_study(overrides: list[str]) -> dict:
    """Train (or re-test) the linear self-attention layer, fit one GD step's learning rate on training
    tasks, and compare the two on the run's test tasks; written to ``gd_comparison.json`` in the run."""
    run_dir = train(load_config(RECIPES / f"{GD_STUDY}.yaml", overrides))
    config, task, model, _ = load_run(run_dir)
    gd_lr = one_step_gd_learning_rate(task.train_sampler(), GD_LR_TASKS)
    comparison = compare_with_gradient_descent(model, task.make_sampler(config.eval.seed), gd_lr, config.eval.episodes)
    comparison["run"] = str(run_dir)
    (run_dir / "gd_comparison.json").write_text(json.dumps(comparison, indent=2))
    return comparison


def print_gd_study(comparison: dict) -> None:
    print(f"\nIn-context linear regression, d = 10, N = 10 (von Oswald et al. 2023), {comparison['episodes']} "
          f"held-out tasks:")
    print(f"  {'trained linear self-attention':<34} loss {comparison['loss_learner']:.4f}")
    gd_step = f"one GD step, gd_lr {comparison['gd_lr']:.2f} fitted"
    print(f"  {gd_step:<34} loss {comparison['loss_gd']:.4f}")
    print(f"  prediction difference |y_TF - y_GD| {comparison['prediction_difference']:.4f}; sensitivities "
          f"d y / d x_query: cosine {comparison['sensitivity_cosine']:.4f}, L2 distance "
          f"{comparison['sensitivity_distance']:.4f}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m metafwp.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/demo", help="folder for the runs and the summary")
    parser.add_argument("--steps", type=int, help="training steps of every learner (Default: the recipes')")
    parser.add_argument("--episodes", type=int, help="test episodes (Default: the recipes' 1000)")
    parser.add_argument("--jobs", type=int, default=2, help="learners trained at once, one thread each (Default: 2)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    glyphs = Glyphs("background")
    plot_episode(FewShotSampler(glyphs, n_way=5, k_shot=1, n_query=1, seed=0).sample(range(1)), 0,
                 out / "episode.png")
    print(f"Glyphs: {glyphs!r}; one 5-way 1-shot training episode drawn in {out / 'episode.png'}\n")
    Glyphs("evaluation")  # rendered once here, not by every job

    jobs = {}
    with training_pool(args.jobs) as pool:
        for index, (learner, recipe) in enumerate(LEARNERS.items()):
            overrides = [f"train.out_dir={out}", f"train.name={recipe.rsplit('_', 1)[-1]}",
                         "train.resume=auto", "train.threads=1", "train.progress=lines"]
            overrides += [] if index == 0 else ["eval.baselines=[]"]  # pixel NN: once is enough
            overrides += [f"train.steps={args.steps}"] if args.steps else []
            overrides += [f"eval.episodes={args.episodes}"] if args.episodes else []
            print(f"{learner}: python -m metafwp.train recipes/{recipe}.yaml {' '.join(overrides)}")
            jobs[learner] = pool.submit(run_learner, recipe, overrides)
        overrides = [f"train.out_dir={out}", "train.name=gd_study", "train.resume=auto", "train.threads=1",
                     "train.progress=lines", *([f"train.steps={args.steps}"] if args.steps else []),
                     *([f"eval.episodes={args.episodes}"] if args.episodes else [])]
        print(f"GD study: python -m metafwp.train recipes/{GD_STUDY}.yaml {' '.join(overrides)}")
        gd_study = pool.submit(run_gd_study, overrides)
        print(f"\nTraining {len(jobs) + 1} learners, {args.jobs} at a time (a line every log_every steps):", flush=True)
        results = {learner: job.result() for learner, job in jobs.items()}
        comparison = gd_study.result()

    rows = []
    for learner, metrics in results.items():
        result = metrics["test"][metrics["learner"]]
        rows.append({"learner": learner, "accuracy": result["accuracy"], "ci95": result["ci95"],
                     "train_minutes": metrics["train_seconds"] / 60, "run": metrics["run"]})
    first = results["SRWM"]
    pixel = first["test"]["pixel_nn"]
    rows.append({"learner": "pixel nearest neighbour", "accuracy": pixel["accuracy"], "ci95": pixel["ci95"],
                 "train_minutes": 0.0, "run": first["run"]})

    episodes = pixel["episodes"]
    print(f"\nGlyphs 5-way 1-shot on held-out classes ({episodes} test episodes, the same for every learner):")
    print(f"  {'learner':<24} {'accuracy':>16} {'training':>9}")
    for row in rows:
        print(f"  {row['learner']:<24} {row['accuracy']:>7.2f} +/- {row['ci95']:4.2f} % "
              f"{row['train_minutes']:>6.1f} min")
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    names = [row["learner"].replace(" ", "\n", 1) if len(row["learner"]) > 12 else row["learner"] for row in rows]
    plot_accuracy_bars(names, [row["accuracy"] for row in rows], [row["ci95"] for row in rows], out / "summary.png",
                       chance=20.0, title=f"Glyphs 5-way 1-shot, held-out classes, {episodes} test episodes")
    print_gd_study(comparison)
    print(f"\nResults: {(out / 'summary.json').resolve()} and {(out / 'summary.png').resolve()}; "
          f"{Path(comparison['run']).resolve() / 'gd_comparison.json'}")
    print(f"Per run (learning curves, accuracy by shot, metrics.json, checkpoint.pt): {out.resolve()}/<learner>/")
    print(f"Tensorboard: tensorboard --logdir {out.resolve()}")
    seconds = time.perf_counter() - started
    print(f"Demo wall time: {int(seconds // 60)} min {seconds % 60:.0f} s")
    return {"rows": rows, "gd_comparison": comparison, "wall_seconds": seconds}


if __name__ == "__main__":
    run_command(main)
