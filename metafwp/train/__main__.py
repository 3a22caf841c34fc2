"""``python -m metafwp.train <recipe.yaml> [key=value ...]``; under ``torchrun --nproc_per_node N`` it
trains data-parallel. Ordinary mistakes print one line (``error: ...``) and exit with status 2; SIGTERM
or Ctrl-C saves a checkpoint and exits with 128 + the signal number."""
from __future__ import annotations

import argparse
import json
import os
import sys

from metafwp.errors import USER_ERRORS, TrainingInterrupted
from metafwp.tasks import TASKS
from metafwp.train.config import load_config
from metafwp.train.loop import train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metafwp.train",
                                     description="Meta-train a learner from a recipe, then test it on held-out classes")
    parser.add_argument("recipe", help="a YAML recipe, e.g. recipes/glyphs_5way1shot_srwm.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value settings, e.g. train.steps=500 model.mixer=delta")
    args = parser.parse_args(argv)
    is_main = int(os.environ.get("RANK", 0)) == 0
    try:
        run_dir = train(load_config(args.recipe, args.overrides))
    except TrainingInterrupted as stop:
        if is_main:
            print(f"stopped: {stop}", file=sys.stderr)
        return 128 + stop.signal_number
    except USER_ERRORS as error:
        if is_main:
            print(f"error: {error}", file=sys.stderr)
        return 2
    if is_main:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        if metrics["test"] is None:
            print(f"Test deferred (train.test=false): python -m metafwp.evaluate {run_dir.resolve()}")
            print(f"Run folder: {run_dir.resolve()} (metrics.json, plots, tensorboard/, checkpoint.pt)")
            return 0
        metric, width = TASKS[metrics["task"]].metric, max(map(len, metrics["test"]))
        for name, result in metrics["test"].items():
            weights = f"{metrics['tested']} weights" if result["learner"] == metrics["learner"] else "baseline"
            print(f"{name:>{width}}: {metric} {result[metric]:.4g} +/- {result['ci95']:.2g} "
                  f"({result['episodes']} test episodes, {weights})")
        print(f"Run folder: {run_dir.resolve()} (metrics.json, plots, tensorboard/, checkpoint.pt)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
