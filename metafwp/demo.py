"""``make demo``: meta-train an SRWM and a DeltaNet learner on Glyphs 5-way 1-shot (the embedded data,
no download), test them on held-out glyph classes beside an LSTM learner, a Prototypical Network and
raw-pixel nearest neighbour, all on the same 1000 seeded test episodes, and print where the
tensorboard logs, plots and metrics are.

    python -m metafwp.demo [--out runs/demo] [--steps N] [--episodes N]

Each learner is an ordinary run of its recipe (``recipes/glyphs_5way1shot_*.yaml``) with
``train.resume=true``: run the demo again and finished runs are only re-tested, cut ones continue.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from episodes import FewShotSampler, Glyphs  # noqa: E402
from episodes.plot import plot_episode  # noqa: E402
from metafwp.train import load_config, train  # noqa: E402
from metafwp.train.plots import save_figure  # noqa: E402

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
LEARNERS = {"SRWM": "glyphs_5way1shot_srwm", "DeltaNet": "glyphs_5way1shot_delta",
            "LSTM": "glyphs_5way1shot_lstm", "Prototypical Network": "glyphs_5way1shot_protonet"}


def plot_summary(rows: list[dict], path: Path) -> Path:
    """Test accuracy with 95% confidence intervals, one bar per learner."""
    figure, axis = plt.subplots(figsize=(7, 3.6))
    names = [row["learner"].replace(" ", "\n", 1) if len(row["learner"]) > 12 else row["learner"] for row in rows]
    axis.bar(names, [row["accuracy"] for row in rows], yerr=[row["ci95"] for row in rows], capsize=4,
             color=["tab:red", "tab:orange", "tab:gray", "tab:blue", "tab:green"][:len(rows)])
    low = min(row["accuracy"] for row in rows)
    axis.set(ylabel="test accuracy (%)", ylim=(max(0, low - 10), 100),
             title="Glyphs 5-way 1-shot, held-out classes, same test episodes")
    axis.grid(alpha=0.3, axis="y")
    return save_figure(figure, path)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m metafwp.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/demo", help="folder for the runs and the summary")
    parser.add_argument("--steps", type=int, help="training steps of every learner (Default: the recipes')")
    parser.add_argument("--episodes", type=int, help="test episodes (Default: the recipes' 1000)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    glyphs = Glyphs("background")
    plot_episode(FewShotSampler(glyphs, n_way=5, k_shot=1, n_query=1, seed=0).sample(range(1)), 0,
                 out / "episode.png")
    print(f"Glyphs: {glyphs!r}; one 5-way 1-shot training episode drawn in {out / 'episode.png'}\n")

    rows, pixel = [], None
    for learner, recipe in LEARNERS.items():
        overrides = [f"train.out_dir={out}", f"train.name={recipe.rsplit('_', 1)[-1]}", "train.resume=true"]
        overrides += [f"train.steps={args.steps}"] if args.steps else []
        overrides += [f"eval.episodes={args.episodes}"] if args.episodes else []
        print(f"{learner}: python -m metafwp.train recipes/{recipe}.yaml {' '.join(overrides)}")
        run_dir = train(load_config(RECIPES / f"{recipe}.yaml", overrides))
        metrics = json.loads((run_dir / "metrics.json").read_text())
        result = metrics["test"][metrics["learner"]]
        rows.append({"learner": learner, "accuracy": result["accuracy"], "ci95": result["ci95"],
                     "train_minutes": metrics["train_seconds"] / 60, "run": str(run_dir)})
        print(f"  {result['accuracy']:.1f} +/- {result['ci95']:.1f} % after "
              f"{metrics['train_seconds'] / 60:.1f} min of training\n")
        pixel = pixel or metrics["test"].get("pixel_nn")
    rows.append({"learner": "pixel nearest neighbour", "accuracy": pixel["accuracy"], "ci95": pixel["ci95"],
                 "train_minutes": 0.0, "run": rows[0]["run"]})

    print(f"Glyphs 5-way 1-shot on held-out classes ({result['episodes']} test episodes, the same for every "
          f"learner):")
    print(f"  {'learner':<24} {'accuracy':>16} {'training':>9}")
    for row in rows:
        print(f"  {row['learner']:<24} {row['accuracy']:>7.2f} +/- {row['ci95']:4.2f} % "
              f"{row['train_minutes']:>6.1f} min")
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    plot_summary(rows, out / "summary.png")
    print(f"\nResults: {(out / 'summary.json').resolve()} and {(out / 'summary.png').resolve()}")
    print(f"Per run (learning curves, accuracy by shot, metrics.json, checkpoint.pt): {out.resolve()}/<learner>/")
    print(f"Tensorboard: tensorboard --logdir {out.resolve()}")


if __name__ == "__main__":
    main()
