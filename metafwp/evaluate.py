"""``python -m metafwp.evaluate <run dir> [--episodes N] [--split S] [--prototypes]``: test a trained
run again on the fixed, seeded held-out episodes of its config, beside its baselines; writes
``evaluation.json``. ``--prototypes`` also tests nearest prototypes on the run's trained backbone
(a Prototypical Network's classifier on the learner's features): how much of its accuracy the
features alone carry, and how much its in-context matching adds or loses."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from metafwp.models import PrototypicalNetwork
from metafwp.train.build import build_model
from metafwp.train.checkpoint import load_checkpoint
from metafwp.train.config import ConfigError, load_config
from metafwp.train.data import frame_shape, load_split
from metafwp.train.distributed import resolve_device
from metafwp.train.evaluation import evaluate_on_test_split


def evaluate_run(run_dir: Path, overrides: list[str] = (), split: str | None = None, progress: bool = True,
                 prototypes: bool = False) -> dict:
    """The test results of the run in ``run_dir`` (its config.yaml and checkpoint.pt); with
    ``prototypes``, also ``prototypes_on_backbone``: nearest prototypes on the run's trained backbone."""
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: no config.yaml (give the folder "
                                f"python -m metafwp.train printed)")
    config = load_config(config_file, overrides)
    device = resolve_device(config.train.device)
    test_set = load_split(config.data, split or config.data.test_split, progress=progress)
    model = build_model(config, frame_shape(config.data, test_set))  # every split has the run's frame shape
    if config.model.kind != "pixel_nn":
        model.load_state_dict(load_checkpoint(run_dir / "checkpoint.pt")["model"])
    others = {}
    if prototypes:
        if getattr(model, "backbone", None) is None:
            raise ValueError(f"--prototypes needs a run with an image backbone; {run_dir} is a "
                             f"{config.model.kind} run without one")
        others["prototypes_on_backbone"] = PrototypicalNetwork(model.backbone)
    return evaluate_on_test_split(config, model.to(device), test_set, device, progress, others)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metafwp.evaluate", description=__doc__.split(":")[0])
    parser.add_argument("run_dir", type=Path, help="the run folder printed by python -m metafwp.train")
    parser.add_argument("--episodes", type=int, help="number of test episodes (Default: the run's eval.episodes)")
    parser.add_argument("--split", help="the split to test on (Default: the run's data.test_split)")
    parser.add_argument("--prototypes", action="store_true",
                        help="also test nearest prototypes on the run's trained backbone")
    args = parser.parse_args(argv)
    overrides = [f"eval.episodes={args.episodes}"] if args.episodes else []
    try:
        results = evaluate_run(args.run_dir, overrides, args.split, prototypes=args.prototypes)
    except (ConfigError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    width = max(map(len, results))
    for name, result in results.items():
        print(f"{name:>{width}}: {result['accuracy']:.2f} +/- {result['ci95']:.2f} % ({result['episodes']} episodes)")
    (args.run_dir / "evaluation.json").write_text(json.dumps(results, indent=2))
    print(f"Written to {(args.run_dir / 'evaluation.json').resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
