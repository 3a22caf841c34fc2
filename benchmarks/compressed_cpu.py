"""CPU figures of the compressed-weight layers, the char-LM learners and dual-form recording, each
beside its plain counterpart measured in the same run:

- a DCT linear layer (its weight rebuilt from the kept coefficients at every call) against
  ``nn.Linear`` of the same shape, forward+backward;
- the DCT-LSTM against ``nn.LSTM`` of the same size;
- characters per second of one training step (forward+backward) of each ``char_lm`` study learner;
- dual-form recording (``metafwp.analysis.DualFormRecorder``) of the dual-form paper's MLP
  (784-800-800-10, batch 128, SGD with momentum): time per training step with and without it, and
  the bytes it keeps per recorded step.

    python benchmarks/compressed_cpu.py                 # about two minutes
    python benchmarks/compressed_cpu.py --threads 2 --repeats 7

Times are medians over interleaved repeats (one warm-up), so every pair sees the same machine noise.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from metafwp.analysis import DualFormRecorder
from metafwp.nn import DCTLinear, DCTLSTM
from metafwp.studies.char_lm import LEARNERS, SHARED
from metafwp.tasks import TASKS
from metafwp.train import load_config
from ops_cpu import forward_backward, interleaved_medians  # benchmarks/ is on the path when run as a script

ROOT = Path(__file__).parents[1]


def dct_linear_figures(repeats: int) -> list[dict]:
    """A 512 x 512 layer on 2048 inputs at 50 % and 90 % of its coefficients dropped."""
    x = torch.randn(2048, 512)
    dense = nn.Linear(512, 512)
    rows = []
    for sparsity in (0.5, 0.9):
        layer = DCTLinear(512, 512, sparsity)
        t = interleaved_medians({"dct": forward_backward(lambda: layer(x)),
                                 "dense": forward_backward(lambda: dense(x))}, repeats)
        rows.append({"figure": f"DCTLinear 512x512, {sparsity:.0%} dropped, 2048 inputs", "ms": 1e3 * t["dct"],
                     "peer": "nn.Linear", "peer_ms": 1e3 * t["dense"], "ratio": t["dct"] / t["dense"]})
    return rows


def dct_lstm_figures(repeats: int) -> list[dict]:
    """Width 128, batch 16, 64 steps, 90 % dropped, against torch's LSTM (its fused kernel)."""
    x = torch.randn(16, 64, 128)
    compressed, lstm = DCTLSTM(128, 128, 0.9), nn.LSTM(128, 128, batch_first=True)
    t = interleaved_medians({"dct": forward_backward(lambda: compressed(x)[0]),
                             "lstm": forward_backward(lambda: lstm(x)[0])}, repeats)
    return [{"figure": "DCTLSTM 128, 90 % dropped, B=16 T=64", "ms": 1e3 * t["dct"], "peer": "nn.LSTM",
             "peer_ms": 1e3 * t["lstm"], "ratio": t["dct"] / t["lstm"]}]


def char_lm_figures(repeats: int) -> list[dict]:
    """Characters per second of a training step of each char_lm study learner (16 streams x 64 bytes)."""
    steps = {}
    for label, (overrides, _) in LEARNERS.items():
        config = load_config(ROOT / "recipes/char_lm_delta.yaml", [*SHARED, *overrides, "train.progress=none"])
        task = TASKS["char_lm"](config, progress=False)
        model, batch = task.build_learner(config.model), task.sampler.sample(range(16))
        steps[label] = lambda model=model, batch=batch: F.cross_entropy(model(batch)[0].flatten(0, 1),
                                                                        batch.targets.flatten())
    t = interleaved_medians({label: forward_backward(step) for label, step in steps.items()}, repeats)
    characters = 16 * 64
    return [{"figure": f"char_lm {label}", "chars_per_s": characters / seconds, "peer": "LSTM",
             "peer_chars_per_s": characters / t["LSTM"]} for label, seconds in t.items()]


def dual_form_figures(repeats: int) -> list[dict]:
    """The dual-form paper's MLP, one SGD-with-momentum step on 128 digits, with and without recording."""
    torch.manual_seed(0)
    x, y = torch.randn(128, 784), torch.randint(0, 10, (128,))

    def mlp():
        return nn.Sequential(nn.Linear(784, 800), nn.ReLU(), nn.Linear(800, 800), nn.ReLU(), nn.Linear(800, 10))

    plain, recorded = mlp(), mlp()
    plain_opt = torch.optim.SGD(plain.parameters(), lr=3e-3, momentum=0.9)
    recorded_opt = torch.optim.SGD(recorded.parameters(), lr=3e-3, momentum=0.9)
    recorder = DualFormRecorder(recorded, recorded_opt, max_bytes=2**34)

    def step(model, optimizer, end_step=None):
        def run():
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            if end_step is not None:
                end_step(y)
        return run

    t = interleaved_medians({"plain": step(plain, plain_opt), "recorded": step(recorded, recorded_opt,
                                                                                recorder.end_step)}, repeats)
    per_step = recorder.bytes / (repeats + 1)
    recorder.close()
    return [{"figure": "dual-form recording, MLP 784-800-800-10, batch 128", "ms": 1e3 * t["recorded"],
             "peer": "the same step unrecorded", "peer_ms": 1e3 * t["plain"], "ratio": t["recorded"] / t["plain"],
             "bytes_per_step": per_step}]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = (dct_linear_figures(args.repeats) + dct_lstm_figures(args.repeats) + char_lm_figures(args.repeats)
            + dual_form_figures(args.repeats))
    for row in rows:
        if "chars_per_s" in row:
            print(f"{row['figure']:55s} {row['chars_per_s']:9,.0f} chars/s   ({row['peer']}: "
                  f"{row['peer_chars_per_s']:,.0f})")
        else:
            extra = f", {row['bytes_per_step'] / 2**20:.2f} MiB recorded per step" if "bytes_per_step" in row else ""
            print(f"{row['figure']:55s} {row['ms']:8.2f} ms   ({row['peer']}: {row['peer_ms']:.2f} ms, "
                  f"{row['ratio']:.2f}x{extra})")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    return rows


if __name__ == "__main__":
    main()
