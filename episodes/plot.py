"""A picture of one image episode: each step's frame with what the learner is shown and asked."""
from __future__ import annotations

from pathlib import Path

from episodes.batch import EpisodeBatch


def plot_episode(batch: EpisodeBatch, episode: int = 0, path=None, *, max_steps: int = 40, columns: int = 10):
    """Draw steps of episode ``episode`` of an image batch: frame, then ``fb`` (the feedback shown,
    ``?`` for unknown), ``y`` (the target), the shot and, in bold red, the steps the loss is taken on.

    Returns the matplotlib Figure (a notebook shows it inline); saves it as PNG when ``path`` is given.
    """
    if batch.inputs.dim() != 5 or batch.num_classes is None:
        raise ValueError("plot_episode draws image episodes (inputs [B, T, C, H, W] with labels); "
                         f"got inputs {tuple(batch.inputs.shape)}")
    if not 0 <= episode < batch.batch_size:
        raise ValueError(f"episode must be in [0, {batch.batch_size}), got {episode}")
    from matplotlib.figure import Figure  # not pyplot: the caller's matplotlib backend stays as it is

    steps = min(batch.num_steps, max_steps)
    rows = (steps + columns - 1) // columns
    figure = Figure(figsize=(columns * 1.1, rows * 1.45))
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for t in range(steps):
        frame = batch.inputs[episode, t].cpu()
        image = frame[0] if frame.shape[0] == 1 else frame.permute(1, 2, 0)
        ax = axes.flat[t]
        ax.imshow(image.numpy(), cmap="gray" if frame.shape[0] == 1 else None, vmin=0, vmax=255)
        shown = int(batch.feedback[episode, t])
        scored = bool(batch.loss_mask[episode, t])
        ax.set_title(f"t{t} fb {'?' if shown == batch.unknown_label else shown}\n"
                     f"y {int(batch.targets[episode, t])} shot {int(batch.shot[episode, t])}",
                     fontsize=7, color="red" if scored else "black", fontweight="bold" if scored else "normal")
    figure.suptitle(f"episode {int(batch.episode_ids[episode])}: {batch.num_classes}-way, "
                    f"{steps} of {batch.num_steps} steps; red = scored", fontsize=9)
    figure.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110)
    return figure
