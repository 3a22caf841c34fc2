"""PNG figures of runs: learning curves, accuracy by shot, accuracy bars. Built on
``matplotlib.figure.Figure`` (no pyplot), so importing metafwp never switches matplotlib's backend
and a notebook's inline plots keep working."""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter


def save_figure(figure: Figure, path: Path) -> Path:
    """Lay out and write ``figure`` as PNG."""
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def bar_label(label: str) -> str:
    """A bar's label on two lines when it is long (at its first space)."""
    return label.replace(" ", "\n", 1) if len(label) > 14 else label


def plot_learning_curves(history: list[dict], path: Path, title: str = "", validation: list[dict] = (),
                         metric: str = "accuracy") -> Path:
    """Training loss and ``metric`` against the step, from the logged ``history`` records, with the
    validation ``metric`` (records with ``step`` and ``metric``) beside the training one."""
    steps = [record["step"] for record in history]
    figure = Figure(figsize=(10, 3.6))
    loss_axis, metric_axis = figure.subplots(1, 2)
    loss_axis.plot(steps, [record["loss"] for record in history], label="training")
    loss_axis.set(xlabel="step", ylabel="loss", yscale="log")
    if history and metric in history[0]:  # a GAN measures its metric on validation only
        metric_axis.plot(steps, [record[metric] for record in history], label="training")
    if validation:
        val_steps = [record["step"] for record in validation]
        metric_axis.plot(val_steps, [record[metric] for record in validation], marker="o", label="validation")
        if "loss" in validation[0]:
            loss_axis.plot(val_steps, [record["loss"] for record in validation], marker="o", label="validation")
        loss_axis.legend()
        metric_axis.legend()
    unit = " (%)" if metric == "accuracy" else ""
    metric_axis.set(xlabel="step", ylabel=f"{metric}{unit}")
    for axis in (loss_axis, metric_axis):
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    return save_figure(figure, path)


def plot_accuracy_bars(names: list[str], accuracies: list[float], ci95: list[float], path: Path, *, chance: float,
                       title: str = "", ylabel: str = "test accuracy (%)") -> Path:
    """One bar per learner from 0 to 100 %, 95% confidence intervals as error bars, the chance level
    as a dashed line; the legend sits above 100 %, clear of the bars."""
    figure = Figure(figsize=(max(5.0, 1.3 * len(names) + 1.5), 3.8))
    axis = figure.subplots()
    colours = ["tab:red", "tab:orange", "tab:gray", "tab:blue", "tab:green", "tab:purple", "tab:brown"]
    axis.bar(names, accuracies, yerr=ci95, capsize=4, color=[colours[i % len(colours)] for i in range(len(names))],
             ecolor="black")
    axis.errorbar([], [], yerr=[], color="black", capsize=4, linestyle="none", label="95% CI")
    axis.axhline(chance, color="black", linestyle="--", linewidth=1, label=f"chance ({chance:.0f} %)")
    axis.set(ylabel=ylabel, ylim=(0, 115), yticks=range(0, 101, 20), title=title)
    axis.grid(alpha=0.3, axis="y")
    axis.legend(loc="upper center", ncol=2, fontsize=8)
    return save_figure(figure, path)


def plot_bits_per_character(results: dict[str, dict], path: Path, *, title: str = "") -> Path:
    """Bits per character of each named result (``bpc``, ``ci95``) as bars with their 95% CIs;
    lower is better, and 8 bits is a uniform guess over bytes."""
    names = list(results)
    figure = Figure(figsize=(max(5.0, 1.3 * len(names) + 1.5), 3.8))
    axis = figure.subplots()
    axis.bar([bar_label(name) for name in names], [results[name]["bpc"] for name in names],
             yerr=[results[name]["ci95"] for name in names],
             capsize=4, color=[f"C{i}" for i in range(len(names))], ecolor="black")
    axis.axhline(8.0, color="black", linestyle="--", linewidth=1, label="uniform over bytes (8 bits)")
    axis.set(ylabel="bits per character (lower is better)", ylim=(0, 8.8), title=title)
    axis.grid(alpha=0.3, axis="y")
    axis.legend(loc="upper right", fontsize=8)
    return save_figure(figure, path)


def plot_bpc_by_compression(series: dict[str, list[tuple[float, float, float]]], path: Path, *,
                            title: str = "") -> Path:
    """Bits per character against the fraction of weight coefficients dropped: one line per model
    family, each point ``(rate, bpc, ci95)``."""
    figure = Figure(figsize=(5.5, 3.8))
    axis = figure.subplots()
    for name, points in series.items():
        points = sorted(points)
        axis.errorbar([100 * p[0] for p in points], [p[1] for p in points], [p[2] for p in points], marker="o",
                      capsize=3, label=name)
    axis.set(xlabel="coefficients dropped (%)", ylabel="bits per character (lower is better)", title=title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return save_figure(figure, path)


def plot_accuracy_by_shot(results: dict[str, dict], path: Path, *, chance: float, first_sighting_chance=None,
                          title: str = "") -> Path:
    """Test accuracy by shot index (``by_shot``) for each named result: bars with 95% CIs when every
    learner is scored at one shot only (synchronous queries), else a line per learner. ``chance``
    is a uniform guess; ``first_sighting_chance``, where given, the level of a guesser that never
    repeats a label already shown (the best it can do at a class's first sighting under delayed
    feedback)."""
    shots = sorted({int(shot) for result in results.values() for shot in result["by_shot"]})
    if len(shots) == 1:
        names = list(results)
        return plot_accuracy_bars(names, [results[name]["accuracy"] for name in names],
                                  [results[name]["ci95"] for name in names], path, chance=chance, title=title,
                                  ylabel=f"accuracy at shot {shots[0]} (%)")
    figure = Figure(figsize=(6, 3.8))
    axis = figure.subplots()
    for name, result in results.items():
        by_shot = {int(k): v for k, v in result["by_shot"].items()}
        axis.plot(sorted(by_shot), [by_shot[s] for s in sorted(by_shot)], marker="o", label=name)
    axis.axhline(chance, color="black", linestyle="--", linewidth=1, label=f"uniform guess ({chance:.0f} %)")
    if first_sighting_chance is not None:
        axis.plot([shots[0]], [first_sighting_chance], marker="_", markersize=20, color="black", linestyle="none",
                  label=f"first sighting, unseen labels only ({first_sighting_chance:.0f} %)")
    axis.set(xlabel="shot (k-th sighting of the class)", ylabel="accuracy (%)", ylim=(0, 100), xticks=shots,
             title=title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return save_figure(figure, path)


def plot_error_by_examples(results: dict[str, dict], path: Path, *, dim: int, title: str = "") -> Path:
    """Normalised squared error (squared error / ``dim``) against the number of in-context examples k
    (``by_examples``) for each named result: a line per learner with its 95% CI band
    (``by_examples_ci95`` where the result has it), integer k, k = ``dim`` marked; bars with 95%
    CIs when every result is scored at one k only (synchronous queries)."""
    ks = sorted({int(k) for result in results.values() for k in result["by_examples"]})
    figure = Figure(figsize=(6.4, 3.8))
    axis = figure.subplots()
    if len(ks) == 1:
        names = list(results)
        axis.bar(names, [results[name]["error"] for name in names], yerr=[results[name]["ci95"] for name in names],
                 capsize=4, color="tab:blue", label="mean, error bars: 95% CI")
        axis.set(ylabel=f"squared error / d at k = {ks[0]}", title=title)
        axis.tick_params(axis="x", labelrotation=30)
        axis.legend(fontsize=8)
    else:
        for name, result in results.items():
            by_k = {int(k): v for k, v in result["by_examples"].items()}
            ks_held = sorted(by_k)
            line, = axis.plot(ks_held, [by_k[k] for k in ks_held], marker=".", label=name)
            if "by_examples_ci95" in result:
                ci = {int(k): v for k, v in result["by_examples_ci95"].items()}
                axis.fill_between(ks_held, [by_k[k] - ci[k] for k in ks_held], [by_k[k] + ci[k] for k in ks_held],
                                  color=line.get_color(), alpha=0.2, linewidth=0)
        axis.axvline(dim, color="black", linestyle=":", linewidth=1, label=f"k = d = {dim}")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set(xlabel="in-context examples k", ylabel="squared error / d (bands: 95% CI)", ylim=(0, None),
                 title=title)
        axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return save_figure(figure, path)


def plot_accuracy_by_support_shots(curves: dict[str, dict[int, tuple[float, float]]], path: Path, *, chance: float,
                                   trained_shots: int | None = None, title: str = "") -> Path:
    """Query accuracy against the number of support shots K it was read after: one line per learner
    (``{name: {K: (accuracy, ci95)}}``), 95% CIs as error bars, ``trained_shots`` (the K of
    meta-training) marked."""
    figure = Figure(figsize=(6, 3.8))
    axis = figure.subplots()
    for name, curve in curves.items():
        shots = sorted(curve)
        axis.errorbar(shots, [curve[k][0] for k in shots], yerr=[curve[k][1] for k in shots], marker="o", capsize=4,
                      label=name)
    if trained_shots is not None:
        axis.axvline(trained_shots, color="gray", linestyle=":", linewidth=1,
                     label=f"meta-trained at K = {trained_shots}")
    axis.axhline(chance, color="black", linestyle="--", linewidth=1, label=f"chance ({chance:.0f} %)")
    all_shots = sorted({k for curve in curves.values() for k in curve})
    axis.set(xlabel="support shots K per class", ylabel="query accuracy (%)", xticks=all_shots, title=title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return save_figure(figure, path)


def plot_accuracy_across_switch(results: dict[str, dict], path: Path, *, chance: float, title: str = "") -> Path:
    """Accuracy at every position of a multi-task sequence, across the switch: one panel per ordered
    pair of sources (a, b), a's segment as the first, then b's as the second, one line per learner
    (``results[learner]["segments"][source][slot]["by_position"]``); the switch as a vertical line."""
    sources = list(next(iter(results.values()))["segments"])
    pairs = [(a, b) for a in sources for b in sources if a != b]
    figure = Figure(figsize=(5.5 * len(pairs), 3.8))
    axes = figure.subplots(1, len(pairs), squeeze=False)[0]
    for axis, (first, second) in zip(axes, pairs):
        switch = None
        for name, result in results.items():
            segments = result["segments"]
            if "first" not in segments[first] or "second" not in segments[second]:
                continue
            before, after = segments[first]["first"]["by_position"], segments[second]["second"]["by_position"]
            switch = len(before)
            curve = [float("nan") if value is None else value for value in before + after]
            axis.plot(range(1, len(curve) + 1), curve, label=name)
        if switch is not None:
            axis.axvline(switch + 0.5, color="gray", linestyle=":", linewidth=1, label="switch")
        axis.axhline(chance, color="black", linestyle="--", linewidth=1, label=f"chance ({chance:.0f} %)")
        axis.set(xlabel="position in the sequence", ylabel="accuracy (%)", ylim=(0, 100),
                 title=f"{first}, then {second}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title)
    return save_figure(figure, path)


def plot_accuracy_by_position(results: dict[str, dict], path: Path, *, chance: float, train_length: int,
                              title: str = "") -> Path:
    """Accuracy of the prefix's label at every position (``results[name]["by_position"]``), one panel
    per test length (strings of the training length beside the longer ones, so neither curve hides
    the other), the longest training string as a vertical line: what a model keeps beyond it."""
    lengths = sorted({len(result["by_position"]) for result in results.values()})
    figure = Figure(figsize=(5.0 * len(lengths), 3.8))
    axes = figure.subplots(1, len(lengths), squeeze=False)[0]
    for axis, length in zip(axes, lengths):
        for name, result in results.items():
            if len(result["by_position"]) == length:
                curve = [float("nan") if value is None else value for value in result["by_position"]]
                axis.plot(range(1, length + 1), curve, marker="." if length <= 32 else None,
                          label=f"{name}: {result['accuracy']:.1f} % at the last step")
        if length > train_length:
            axis.axvline(train_length + 0.5, color="gray", linestyle=":", linewidth=1, label="longest training string")
        axis.axhline(chance, color="black", linestyle="--", linewidth=1, label=f"chance ({chance:.0f} %)")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set(xlabel="position in the string", ylabel="accuracy of the prefix's label (%)", ylim=(0, 101),
                 title=f"{title}\nstrings of length {length}" if title else f"strings of length {length}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return save_figure(figure, path)


def plot_accuracy_by_distance(results: dict[str, dict], path: Path, *, chance: float, title: str = "") -> Path:
    """Recall accuracy by how far back the queried pair lies (``results[name]["by_distance"]``: bin
    name -> %), one line per learner: a memory of the last W steps falls off beyond W."""
    figure = Figure(figsize=(6.0, 3.8))
    axis = figure.subplots()
    for name, result in results.items():
        bins = list(result["by_distance"])
        axis.plot(bins, [result["by_distance"][b] for b in bins], marker="o",
                  label=f"{name}: {result['accuracy']:.1f} % overall")
    axis.axhline(chance, color="black", linestyle="--", linewidth=1, label=f"chance ({chance:.1f} %)")
    axis.set(xlabel="steps from the query back to its key", ylabel="queries answered right (%)", ylim=(0, 101),
             title=title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return save_figure(figure, path)


def plot_accuracy_by_length(table: dict[str, dict], path: Path, *, lengths: list[str], chance: float,
                            xlabel: str, title: str = "") -> Path:
    """One row per mixer, a bar per range of test lengths (``table[mixer][lengths] = (mean, ci95)``),
    95% CIs as error bars, chance at the training lengths as a dashed line: in-distribution and
    length generalisation side by side."""
    names = list(table)
    figure = Figure(figsize=(9.5, 0.42 * len(names) + 1.6))
    axis = figure.subplots()
    height = 0.8 / len(lengths)
    for i, (length, colour) in enumerate(zip(lengths, ["tab:blue", "tab:orange", "tab:green"])):
        rows = [len(names) - 1 - j + (len(lengths) - 1 - 2 * i) * height / 2 for j in range(len(names))]
        axis.barh(rows, [table[n][length][0] for n in names], height=height, xerr=[table[n][length][1] for n in names],
                  capsize=2, color=colour, label=length)
    axis.axvline(chance, color="black", linestyle="--", linewidth=1,
                 label=f"chance at the training lengths ({chance:.2g} %)")
    axis.set_yticks(range(len(names)), names[::-1])
    axis.set(xlabel=xlabel, xlim=(0, 100), title=title)
    axis.grid(alpha=0.3, axis="x")
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(figure, path)


def plot_forgetting(results: dict[str, dict], path: Path, *, chance: float, quoted: dict | None = None,
                    kind: str = "domain", title: str = "") -> Path:
    """For each learner (``results[name]["forgetting"]``: ``mean`` / ``ci95`` matrices, row task s,
    column after task t): a heat map of the accuracy of task s after tasks 1 .. t, and lines of each
    task's accuracy as later tasks arrive (95% CIs); ``quoted`` final average accuracies
    (``{name: (domain, class)}``) are listed beside them, marked as quoted."""
    figure = Figure(figsize=(10, 3.9 * len(results)))
    rows = figure.subplots(len(results), 2, squeeze=False)
    for (heat_axis, line_axis), (name, result) in zip(rows, results.items()):
        mean, ci95 = result["forgetting"]["mean"], result["forgetting"]["ci95"]
        n = len(mean)
        grid = [[float("nan") if v is None else v for v in row] for row in mean]
        image = heat_axis.imshow(grid, vmin=0, vmax=100, cmap="viridis")
        for s in range(n):
            for t in range(n):
                if mean[s][t] is not None:
                    heat_axis.text(t, s, f"{mean[s][t]:.0f}", ha="center", va="center", fontsize=8,
                                   color="white" if mean[s][t] < 60 else "black")
        heat_axis.set(xticks=range(n), yticks=range(n), xticklabels=[str(t + 1) for t in range(n)],
                      yticklabels=[str(s + 1) for s in range(n)], xlabel="after learning task t",
                      ylabel="accuracy on task s", title=f"{name}: accuracy (%)")
        figure.colorbar(image, ax=heat_axis, fraction=0.046)
        for s in range(n):
            steps = [t for t in range(n) if mean[s][t] is not None]
            line_axis.errorbar([t + 1 for t in steps], [mean[s][t] for t in steps], yerr=[ci95[s][t] for t in steps],
                               marker="o", capsize=3, label=f"task {s + 1}")
        line_axis.axhline(chance, color="black", linestyle="--", linewidth=1, label=f"chance ({chance:.0f} %)")
        final = result.get("final_average")
        line_axis.set(xlabel="after learning task t", ylabel="accuracy (%)", ylim=(0, 100), xticks=range(1, n + 1),
                      title=f"{name}: final average {final:.1f} %" if final is not None else name)
        line_axis.grid(alpha=0.3)
        line_axis.legend(fontsize=7, loc="lower left")
        if quoted:
            column = 0 if kind == "domain" else 1
            text = "\n".join(f"{label} {values[column]:.1f}" for label, values in quoted.items())
            line_axis.text(1.02, 1.0, f"quoted, {kind}-incr.\n(Hsu et al. 2018,\nfull MNIST):\n{text}",
                           transform=line_axis.transAxes, fontsize=7, va="top")
    figure.suptitle(title)
    return save_figure(figure, path)


def plot_frechet_bars(results: dict[str, dict], path: Path, *, title: str = "") -> Path:
    """The Fréchet distance of each named result (``frechet``, ``ci95``) as bars (lower is better);
    the floor (``training images``) and the ceiling (``untrained``) drawn grey."""
    names = list(results)
    figure = Figure(figsize=(max(5.0, 1.3 * len(names) + 1.5), 3.8))
    axis = figure.subplots()
    colours = ["tab:gray" if name in ("training images", "untrained") else f"C{i}" for i, name in enumerate(names)]
    axis.bar([bar_label(name) for name in names], [results[name]["frechet"] for name in names],
             yerr=[results[name]["ci95"] for name in names], capsize=4, color=colours, ecolor="black")
    axis.set(ylabel="Fréchet distance to held-out images\n(classifier features; lower is better)", title=title)
    axis.grid(alpha=0.3, axis="y")
    return save_figure(figure, path)


def plot_image_grid(images, path: Path, *, title: str = "", columns: int = 8) -> Path:
    """``images [N, 1, H, W]`` in [0, 1] in a grid of ``columns``, grey scale."""
    rows = -(-len(images) // columns)
    figure = Figure(figsize=(columns * 0.8, rows * 0.8 + 0.4))
    axes = figure.subplots(rows, columns, squeeze=False)
    for index, axis in enumerate(axes.flat):
        if index < len(images):
            axis.imshow(images[index, 0].detach().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        axis.axis("off")
    figure.suptitle(title, fontsize=9)
    return save_figure(figure, path)


def plot_painting(painter, z, path: Path, *, title: str = "", shown: int = 14) -> Path:
    """How the fast weight painter paints one image from ``z [1, latent]``: for ``shown`` steps
    spread over its T, the stroke of that step (``W_t - W_{t-1}``, each on its own symmetric colour
    scale) above the image so far (``tanh(W_t)``); channel 0."""
    import torch

    from metafwp.models.painter import paint

    with torch.no_grad():
        keys, values, rates = painter.strokes(z)
        T = keys.shape[1]
        steps = sorted({round(1 + i * (T - 1) / max(1, shown - 1)) for i in range(min(shown, T))})
        weights = [torch.zeros_like(values[0, 0, 0, :, None] * keys[0, 0, 0])]
        weights += [paint(keys[:, :t], values[:, :t], rates[:, :t], painter.rule)[0, 0] for t in range(1, T + 1)]
    figure = Figure(figsize=(len(steps) * 0.9, 2.3))
    axes = figure.subplots(2, len(steps), squeeze=False)
    for column, t in enumerate(steps):
        stroke = (weights[t] - weights[t - 1]).numpy()
        scale = max(float(abs(stroke).max()), 1e-12)
        axes[0, column].imshow(stroke, cmap="RdBu_r", vmin=-scale, vmax=scale)
        axes[1, column].imshow(torch.tanh(weights[t]).numpy(), cmap="gray", vmin=-1, vmax=1)
        axes[0, column].set_title(f"t = {t}", fontsize=7)
        for axis in axes[:, column]:
            axis.axis("off")
    axes[0, 0].text(-0.3, 0.5, "stroke", transform=axes[0, 0].transAxes, ha="right", va="center", fontsize=7)
    axes[1, 0].text(-0.3, 0.5, "image", transform=axes[1, 0].transAxes, ha="right", va="center", fontsize=7)
    figure.suptitle(title, fontsize=9)
    return save_figure(figure, path)


def plot_accuracy_against(series: dict[str, list[tuple[float, float, float]]], path: Path, *, xlabel: str,
                          ylabel: str = "accuracy (%)", xscale: str = "linear", title: str = "") -> Path:
    """Accuracy against a setting (e.g. the state's size, the fraction of rows dropped), one line per
    learner from its ``(x, mean, ci95)`` points, 95% CIs as error bars."""
    figure = Figure(figsize=(6.0, 3.8))
    axis = figure.subplots()
    for name, points in series.items():
        points = sorted(points)
        axis.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], marker="o",
                      capsize=4, label=name)
    axis.set(xscale=xscale, xlabel=xlabel, ylabel=ylabel, ylim=(0, 101), title=title)
    axis.margins(x=0.08)
    if xscale == "log":  # a log axis is labelled at the points' own settings
        ticks = sorted({p[0] for points in series.values() for p in points})
        axis.set_xticks(ticks, [f"{tick:,g}" for tick in ticks])
        axis.xaxis.set_minor_formatter(NullFormatter())
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))  # beside the plot: it hides no point
    return save_figure(figure, path)


def plot_fast_weight_norm(times, norms, observed, path: Path, *, title: str = "") -> Path:
    """``||W_h(t)||`` (Frobenius) of each head against time, from ``norms [T, H]`` at ``times [T]``,
    with the ``observed`` times marked on the axis."""
    figure = Figure(figsize=(6.0, 3.4))
    axis = figure.subplots()
    for head in range(norms.shape[1]):
        axis.plot(times, norms[:, head], marker=".", label=f"head {head}")
    axis.plot(observed, [0] * len(observed), "|", color="black", markersize=10, label="observed rows")
    axis.set(xlabel="t (row)", ylabel="||W(t)||", title=title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return save_figure(figure, path)
