"""``python -m metafwp.train <recipe.yaml> [key=value ...]``; under ``torchrun --nproc_per_node N`` it
trains data-parallel."""
from __future__ import annotations

import argparse
import json
import sys

from metafwp.train.config import ConfigError, load_config
from metafwp.train.loop import TrainingDiverged, train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metafwp.train",
                                     description="Meta-train a learner from a recipe, then test it on held-out classes")
    parser.add_argument("recipe", help="a YAML recipe, e.g. recipes/glyphs_5way1shot_srwm.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value settings, e.g. train.steps=500 model.mixer=delta")
    args = parser.parse_args(argv)
    try:
        run_dir = train(load_config(args.recipe, args.overrides))
    except (ConfigError, FileNotFoundError, TrainingDiverged) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    metrics_file = run_dir / "metrics.json"
    if metrics_file.exists():  # rank 0 wrote it
        for name, result in json.loads(metrics_file.read_text())["test"].items():
            print(f"{name:>14}: {result['accuracy']:.2f} +/- {result['ci95']:.2f} % "
                  f"({result['episodes']} test episodes)")
        print(f"Run folder: {run_dir.resolve()} (metrics.json, plots, tensorboard/, checkpoint.pt)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
