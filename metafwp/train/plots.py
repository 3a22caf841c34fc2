"""PNG plots of a run: learning curves and accuracy by shot (matplotlib, no screen needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(figure, path: Path) -> Path:
    """Lay out, write as PNG and free ``figure``."""
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_learning_curves(history: list[dict], path: Path, title: str = "") -> Path:
    """Training loss and accuracy against the step, from the logged ``history`` records."""
    steps = [record["step"] for record in history]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    loss_axis.plot(steps, [record["loss"] for record in history])
    loss_axis.set(xlabel="step", ylabel="training loss", yscale="log")
    accuracy_axis.plot(steps, [record["accuracy"] for record in history])
    accuracy_axis.set(xlabel="step", ylabel="training accuracy (%)")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    return save_figure(figure, path)


def plot_accuracy_by_shot(results: dict[str, dict], path: Path, title: str = "") -> Path:
    """Test accuracy by shot index for each named evaluation result (``evaluate``'s ``by_shot``):
    a line per learner, or bars when every learner is scored at one shot only (synchronous queries)."""
    figure, axis = plt.subplots(figsize=(6, 3.6))
    shots = sorted({int(shot) for result in results.values() for shot in result["by_shot"]})
    if len(shots) == 1:
        names = list(results)
        values = [results[name]["by_shot"][shots[0]] for name in names]
        errors = [results[name]["ci95"] for name in names]
        axis.bar(names, values, yerr=errors, capsize=4, color="tab:blue")
        axis.set(ylabel=f"accuracy at shot {shots[0]} (%)", ylim=(min(values) - 10, 100))
    else:
        for name, result in results.items():
            by_shot = {int(k): v for k, v in result["by_shot"].items()}
            axis.plot(sorted(by_shot), [by_shot[s] for s in sorted(by_shot)], marker="o", label=name)
        axis.set(xlabel="shot (k-th sighting of the class)", ylabel="accuracy (%)")
        axis.legend()
    axis.grid(alpha=0.3)
    axis.set_title(title)
    return save_figure(figure, path)
