"""``python -m metafwp.studies list | run NAME | report NAME``: see ``metafwp.studies``. Mistakes
print one line (``error: ...``) and exit with status 2, before anything runs."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from metafwp.errors import run_command, whole
from metafwp.studies import STUDIES, Budget, get_study, run_study
from metafwp.studies.launchers import LAUNCHERS, ClusterSettings, check_launcher
from metafwp.studies.protocol import finished_results
from metafwp.studies.publish import publish


def main(argv=None) -> dict | None:
    parser = argparse.ArgumentParser(prog="python -m metafwp.studies", description=__doc__.split(":")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every declared study, its conditions, seeds and budget")
    for command in ("run", "report"):
        sub = commands.add_parser(command, help="train, select and test a study" if command == "run" else
                                  "the table and figures of a study's finished runs")
        sub.add_argument("study", help="a study of `list`")
        sub.add_argument("--out", default="runs/studies", help="the studies' folder (Default: runs/studies)")
    commands.choices["report"].add_argument("--publish", action="store_true",
                                            help="copy the table and figures to docs/results/ and the README")
    run = commands.choices["run"]
    run.add_argument("--seeds", type=str, help="seeds per condition (Default: the study's)")
    run.add_argument("--jobs", type=str, default="1", help="runs at once, one thread each (Default: 1)")
    run.add_argument("--launcher", default="local", help=f"one of {', '.join(LAUNCHERS)} (Default: local)")
    run.add_argument("--steps", type=str, help="training steps of every run, for a quick look (Default: declared)")
    run.add_argument("--episodes", type=str, help="test episodes, for a quick look (Default: declared)")
    run.add_argument("--partition", help="slurm: the partition")
    run.add_argument("--time", type=str, default="120", help="slurm: minutes per run (Default: 120)")
    run.add_argument("--cpus", type=str, default="1", help="slurm: CPUs per run (Default: 1)")
    run.add_argument("--gpus", type=str, default="0", help="slurm: GPUs per run (Default: 0)")
    args = parser.parse_args(argv)
    if args.command == "list":
        for study in STUDIES.values():
            budget = f"{study.steps} steps" if study.steps else "the recipes' steps"
            print(f"{study.name}: {study.summary}\n  {study.seeds} seeds, {budget}; conditions: "
                  f"{'; '.join(c.label for c in study.conditions)}")
        return None
    study = get_study(args.study)
    folder = Path(args.out).expanduser() / study.name
    if args.command == "report":
        results = finished_results(study, folder, Budget(study.seeds, study.steps, study.episodes))
        print((folder / "results.md").read_text())
        if args.publish:
            print(f"Published to {publish(study.name, folder)} and the README's results block {study.name!r}")
        return results
    check_launcher(args.launcher)
    seeds = whole("seeds")(args.seeds) if args.seeds else study.seeds
    budget = Budget(seeds, whole("steps")(args.steps) if args.steps else study.steps,
                    whole("episodes")(args.episodes) if args.episodes else study.episodes)
    cluster = ClusterSettings(args.partition, whole("time")(args.time), whole("cpus")(args.cpus),
                              whole("gpus", least=0)(args.gpus))
    results = run_study(study, folder, budget, launcher=args.launcher, jobs=whole("jobs")(args.jobs),
                        cluster=cluster)
    print((folder / "results.md").read_text())
    minutes = results["wall_seconds"] / 60
    print(f"Results: {(folder / 'results.json').resolve()}, results.md and the figures; study wall time "
          f"{int(minutes)} min {60 * (minutes % 1):.0f} s")
    return json.loads((folder / "results.json").read_text())


if __name__ == "__main__":
    run_command(main)
