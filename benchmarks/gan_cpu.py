"""The fast weight painter and its convolutional baseline as GAN generators on CPU, measured in the
same run: generator steps per second (``-mean D(G(z))``, forward and backward through D into G),
discriminator steps per second (the hinge loss on B real and B generated images), for the painter
with the delta and the Hebbian rule and for the baseline of the same size; then the memory the
painter saves for its backward against its number of painting steps T.

    python benchmarks/gan_cpu.py                     # B = 64, 28 x 28, 1 thread
    python benchmarks/gan_cpu.py --threads 2 --steps 8 16 28 56
"""
from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from metafwp.models.gan import ConvGenerator, Discriminator
from metafwp.models.painter import FastWeightPainter
from ops_cpu import interleaved_medians  # benchmarks/ is on the path when run as a script
from rtrl_cpu import saved_bytes


def generators() -> dict:
    torch.manual_seed(0)
    return {"painter (delta)": FastWeightPainter(rule="delta"), "painter (hebbian)": FastWeightPainter(rule="hebbian"),
            "conv generator": ConvGenerator()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 16, 28, 56], help="painting steps T (memory)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    built, discriminator = generators(), Discriminator(spectral=False)  # the recipes' (penalty not timed)
    z, real = torch.randn(args.batch, 64), torch.rand(args.batch, 1, 28, 28) * 2 - 1

    def generator_step(generator):
        return lambda: (-discriminator(generator(z)).mean()).backward()

    def discriminator_step(generator):
        def run():
            with torch.no_grad():
                fake = generator(z)
            scores = discriminator(torch.cat([real, fake]))
            (F.relu(1 - scores[:args.batch]).mean() + F.relu(1 + scores[args.batch:]).mean()).backward()
        return run

    seconds = interleaved_medians({**{("G", name): generator_step(g) for name, g in built.items()},
                                   **{("D", name): discriminator_step(g) for name, g in built.items()}}, args.repeats)
    size = {name: sum(p.numel() for p in g.parameters()) for name, g in built.items()}
    rates = {name: {"parameters": size[name], "generator_steps_per_s": 1 / seconds[("G", name)],
                    "discriminator_steps_per_s": 1 / seconds[("D", name)]} for name in built}
    print(f"GAN steps on CPU (batch {args.batch}, 28 x 28, {args.threads} thread(s), median of {args.repeats}):")
    baseline = rates["conv generator"]
    for name, row in rates.items():
        print(f"  {name:18s} {row['parameters']:8,d} parameters   G {row['generator_steps_per_s']:6.2f} steps/s "
              f"({row['generator_steps_per_s'] / baseline['generator_steps_per_s']:.2f}x the baseline)   "
              f"D {row['discriminator_steps_per_s']:6.2f} steps/s "
              f"({row['discriminator_steps_per_s'] / baseline['discriminator_steps_per_s']:.2f}x)")
    memory = {}
    for steps in args.steps:
        painter = FastWeightPainter(steps=steps)
        memory[steps] = saved_bytes(lambda: painter(z).sum()) / 2**20
    conv_memory = saved_bytes(lambda: built["conv generator"](z).sum()) / 2**20
    print(f"Memory saved for the backward of one generator call (batch {args.batch}): conv generator "
          f"{conv_memory:.1f} MB; painter by painting steps T: "
          + ", ".join(f"T={steps} {mb:.1f} MB" for steps, mb in memory.items()))
    print(json.dumps({"batch": args.batch, "threads": args.threads, "rates": rates, "painter_saved_MB": memory,
                      "conv_saved_MB": conv_memory}))
    return {"rates": rates, "painter_saved_MB": memory}


if __name__ == "__main__":
    main()
