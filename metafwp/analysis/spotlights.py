"""What a trained layer attends to (Irie, Csordás & Schmidhuber 2022, the spotlight analysis): train
the dual-form paper's MLP (784-800-800-10, ReLU) by SGD with momentum 0.9, lr 3e-3, batch 128,
gradients clipped at norm 1, recording every linear layer; then, for held-out inputs, each layer's
class vote (the class whose training examples have the largest summed ``|x_t . x|``) and how often
it agrees with the label and with the network's output, and when in training each layer's top
examples were seen.

Two settings: ``digits`` (the 4,000 training digits of the embedded MNIST split; the other 1,000 are
the held-out inputs) and ``sequential`` (the paper's MNIST -> FashionMNIST experiment on embedded
data: the digits, then 10 glyph classes relabelled 0-9, 15 images each to train and 5 held out).

    python -m metafwp.analysis.spotlights --out runs/spotlights            # 3 seeds, both settings
    python -m metafwp.analysis.spotlights --out runs/spotlights --seeds 1 --steps 100

writes ``results.json``, ``results.md`` and the figures under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from matplotlib.figure import Figure
from tqdm import tqdm

from episodes import Glyphs, MNIST5k
from episodes.irregular import split_indices
from metafwp.analysis.dual_form import DualFormRecorder
from metafwp.errors import run_command, whole
from metafwp.plots import save_figure

LAYERS = ("1", "3", "5")             # the Linear layers of ``mlp()`` (after Flatten): 784-800, 800-800, 800-10
LAYER_NAMES = {"1": "layer 1 (784-800)", "3": "layer 2 (800-800)", "5": "layer 3 (800-10)"}
GLYPH_CLASSES, GLYPH_TRAIN = 10, 15   # glyph classes of the sequential setting; training images of each
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}


@dataclass
class Phase:
    """Training on ``images [N, 1, 28, 28]`` uint8 with ``labels [N]`` for ``steps`` steps; the
    analysis reads ``test_images`` / ``test_labels``."""
    name: str
    images: torch.Tensor
    labels: torch.Tensor
    steps: int
    test_images: torch.Tensor
    test_labels: torch.Tensor


def mlp() -> nn.Sequential:
    """784-800-800-10 with ReLU, torch's default initialisation."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 800), nn.ReLU(), nn.Linear(800, 800), nn.ReLU(),
                         nn.Linear(800, 10))


def pixels(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0


def digit_phase(steps: int) -> Phase:
    """The embedded digits' training split, and its val and test splits (1,000) held out."""
    digits = MNIST5k()
    train, held_out = split_indices("train"), torch.cat([split_indices("val"), split_indices("test")])
    return Phase("digits", digits.images[train], digits.labels[train], steps, digits.images[held_out],
                 digits.labels[held_out])


def glyph_phase(steps: int) -> Phase:
    """The first 10 classes of the glyph ``train`` split, relabelled 0-9: 15 images each to train on,
    the other 5 held out."""
    glyphs = Glyphs("train", progress=False)
    train, test = [], []
    for label in range(GLYPH_CLASSES):
        members = (glyphs.labels == label).nonzero().flatten()
        train.append(members[:GLYPH_TRAIN])
        test.append(members[GLYPH_TRAIN:])
    train, test = torch.cat(train), torch.cat(test)
    return Phase("glyphs", glyphs.images[train], glyphs.labels[train], steps, glyphs.images[test], glyphs.labels[test])


class RecordedTraining:
    """The MLP, SGD with momentum 0.9 at lr 3e-3 and a ``DualFormRecorder`` of every linear layer,
    seeded by ``seed``; ``train(phase)`` runs a phase's steps (batches drawn uniformly with
    replacement from its images, clipping at norm 1, the batch labels recorded), and phases run one
    after another continue the same training."""

    def __init__(self, seed: int, batch_size: int = 128, max_bytes: int = 8 * 2**30):
        torch.manual_seed(seed)
        self.model, self.seed, self.batch_size = mlp(), seed, batch_size
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=3e-3, momentum=0.9)
        self.recorder = DualFormRecorder(self.model, self.optimizer, max_bytes=max_bytes)
        self.generator = torch.Generator().manual_seed(seed)
        self.phases: list[Phase] = []

    def train(self, phase: Phase, progress: bool = False) -> None:
        for _ in tqdm(range(phase.steps), desc=f"{phase.name}, seed {self.seed}", disable=not progress, leave=False):
            picks = torch.randint(len(phase.images), (self.batch_size,), generator=self.generator)
            self.optimizer.zero_grad()
            F.cross_entropy(self.model(pixels(phase.images[picks])), phase.labels[picks]).backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.recorder.end_step(labels=phase.labels[picks])
        self.phases.append(phase)

    def analyse(self, k: int = 10) -> dict:
        """``analyse`` of the training so far."""
        return analyse(self.model, self.recorder, self.phases, k)


def layer_inputs(model: nn.Module, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``({layer: its inputs [M, in]}, the network's predicted classes [M])`` on ``images``."""
    seen = {}
    handles = [model.get_submodule(name).register_forward_hook(
        lambda module, inputs, output, name=name: seen.__setitem__(name, inputs[0])) for name in LAYERS]
    try:
        with torch.no_grad():
            predictions = model(pixels(images)).argmax(-1)
    finally:
        for handle in handles:
            handle.remove()
    return seen, predictions


def analyse(model: nn.Module, recorder: DualFormRecorder, phases: list[Phase], k: int = 10) -> dict:
    """Per held-out set (each phase's) and layer: ``vote_is_label`` and ``vote_is_output`` (%),
    ``top_from`` (% of the top-k examples seen during each phase), the network's ``accuracy`` (%)
    and the dual form's largest relative residual over the layers."""
    bounds, start = {}, 0
    for phase in phases:
        bounds[phase.name] = (start, start + phase.steps)
        start += phase.steps
    results = {}
    for phase in phases:
        inputs, predictions = layer_inputs(model, phase.test_images)
        record = {"accuracy": 100 * (predictions == phase.test_labels).double().mean().item(), "layers": {}}
        for name in LAYERS:
            spot = recorder.spotlight(name, inputs[name], num_classes=10, k=k)
            record["layers"][name] = {
                "vote_is_label": 100 * (spot.vote == phase.test_labels).double().mean().item(),
                "vote_is_output": 100 * (spot.vote == predictions).double().mean().item(),
                "top_from": {other: 100 * ((spot.top_steps >= low) & (spot.top_steps < high)).double().mean().item()
                             for other, (low, high) in bounds.items()}}
        results[phase.name] = record
    residuals = []
    for name in LAYERS:  # the dual form against the trained layer, on the last held-out set's first 64 inputs
        layer, x = model.get_submodule(name), inputs[name][:64]
        trained = F.linear(x.double(), layer.weight.detach().double(), layer.bias.detach().double())
        residuals.append(((recorder.dual_output(name, x).double() - trained).abs().max() / trained.abs().max()).item())
    results["dual_form_relative_residual"] = max(residuals)
    return results


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and Student-t 95 % half-width over seeds (0 for one seed)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return mean, T_975.get(len(values) - 1, 1.96) * std / math.sqrt(len(values))


def summarise(per_seed: list[dict]) -> dict:
    """Every number of ``analyse`` as ``(mean, ci95)`` over the seeds."""
    first = per_seed[0]
    if isinstance(first, dict):
        return {key: summarise([seed[key] for seed in per_seed]) for key in first}
    return interval(per_seed)


def run(out: Path, seeds: int = 3, steps: int = 300, glyph_steps: int = 100, k: int = 10,
        progress: bool = True) -> dict:
    """Both settings for ``seeds`` seeds; writes ``results.json``, ``results.md`` and the figures."""
    out.mkdir(parents=True, exist_ok=True)
    digits, glyphs = digit_phase(steps), glyph_phase(glyph_steps)
    started, per_seed = time.perf_counter(), {"digits": [], "sequential": []}
    for seed in range(seeds):  # the sequential setting continues the digit setting's training with the glyphs
        training = RecordedTraining(seed)
        training.train(digits, progress)
        per_seed["digits"].append(training.analyse(k))
        training.train(glyphs, progress)
        per_seed["sequential"].append(training.analyse(k))
        training.recorder.close()
    results = {setting: {"per_seed": runs, "summary": summarise(runs)} for setting, runs in per_seed.items()}
    results["settings"] = {"seeds": list(range(seeds)), "digit_steps": steps, "glyph_steps": glyph_steps,
                           "top_k": k, "batch_size": 128, "seconds": time.perf_counter() - started}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(table(results))
    plot_votes(results, out / "vote_agreement.png")
    plot_when_seen(results, out / "top_examples_by_phase.png")
    return results


def table(results: dict) -> str:
    """The results as Markdown: one row per setting, held-out set and layer."""
    settings = results["settings"]
    lines = [f"Seeds {settings['seeds']}; {settings['digit_steps']} steps on the digits"
             f" (+ {settings['glyph_steps']} on the glyphs in the sequential setting), batch 128; top"
             f" {settings['top_k']} examples; mean +/- 95 % CI over seeds (Student's t).", "",
             "| setting | held out | layer | vote = label (%) | vote = output (%) | network accuracy (%) |"
             " top examples from the digits (%) |", "|---|---|---|---|---|---|---|"]
    for setting in ("digits", "sequential"):
        summary = results[setting]["summary"]
        for held_out, record in summary.items():
            if held_out == "dual_form_relative_residual":
                continue
            for name, layer in record["layers"].items():
                cells = [layer["vote_is_label"], layer["vote_is_output"], record["accuracy"],
                         layer["top_from"]["digits"]]
                lines.append(f"| {setting} | {held_out} | {LAYER_NAMES[name]} | "
                             + " | ".join(f"{mean:.1f} +/- {ci:.1f}" for mean, ci in cells) + " |")
    return "\n".join(lines) + "\n"


def plot_votes(results: dict, path: Path) -> Path:
    """Vote agreement with the label and with the output per layer, each setting and held-out set."""
    panels = [(setting, held_out) for setting in ("digits", "sequential") for held_out in results[setting]["summary"]
              if held_out != "dual_form_relative_residual"]
    figure = Figure(figsize=(4 * len(panels), 3.6))
    for axis, (setting, held_out) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        record = results[setting]["summary"][held_out]
        x = torch.arange(len(LAYERS)).float()
        for offset, key, label in ((-0.2, "vote_is_label", "vote = label"), (0.2, "vote_is_output", "vote = output")):
            values = [record["layers"][name][key] for name in LAYERS]
            axis.bar(x + offset, [v[0] for v in values], 0.4, yerr=[v[1] for v in values], capsize=3, label=label)
        axis.axhline(record["accuracy"][0], color="black", linestyle="--", linewidth=1, label="network accuracy")
        axis.set(xticks=x.tolist(), xticklabels=[f"layer {i + 1}" for i in range(len(LAYERS))], ylim=(0, 130),
                 yticks=range(0, 101, 20), ylabel="%", title=f"{setting}: held-out {held_out}")
        axis.grid(alpha=0.3, axis="y")
        axis.legend(fontsize=7, loc="upper center", ncol=2)
    return save_figure(figure, path)


def plot_when_seen(results: dict, path: Path) -> Path:
    """Sequential setting: the share of each layer's top examples seen during the digit phase, for
    held-out digits and held-out glyphs."""
    summary = results["sequential"]["summary"]
    figure = Figure(figsize=(5.5, 3.6))
    axis = figure.subplots()
    x = torch.arange(len(LAYERS)).float()
    for offset, held_out in ((-0.2, "digits"), (0.2, "glyphs")):
        values = [summary[held_out]["layers"][name]["top_from"]["digits"] for name in LAYERS]
        axis.bar(x + offset, [v[0] for v in values], 0.4, yerr=[v[1] for v in values], capsize=3,
                 label=f"held-out {held_out}")
    axis.set(xticks=x.tolist(), xticklabels=[LAYER_NAMES[name] for name in LAYERS], ylim=(0, 125),
             yticks=range(0, 101, 20), ylabel="top examples seen in the digit phase (%)",
             title="digits, then glyphs: where each layer looks")
    axis.grid(alpha=0.3, axis="y")
    axis.legend(fontsize=8, loc="upper center", ncol=2)
    return save_figure(figure, path)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m metafwp.analysis.spotlights", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/spotlights"))
    parser.add_argument("--seeds", default="3")
    parser.add_argument("--steps", default="300", help="steps on the digits (Default: 300, about 10 epochs)")
    parser.add_argument("--glyph-steps", default="100", help="steps on the glyphs after them (Default: 100)")
    parser.add_argument("--top", default="10", help="top examples per test input (Default: 10)")
    args = parser.parse_args(argv)
    seeds, steps, glyph_steps, top = (whole(name)(getattr(args, name.replace("-", "_")))
                                      for name in ("seeds", "steps", "glyph-steps", "top"))
    results = run(args.out, seeds, steps, glyph_steps, top)
    print((args.out / "results.md").read_text())
    print(f"Results: {args.out}/results.json, results.md, vote_agreement.png, top_examples_by_phase.png")
    return results


if __name__ == "__main__":
    run_command(main)
