"""Episode sampling speed against a learn2learn-style pipeline, measured in the same run.

The peer is what learn2learn's task transforms do for one task at a time, written as lean as such
a pipeline can be: NWays (random.sample over the classes), KShots (random.sample over a
label -> indices table), LoadData (each example loaded by index, then stacked, as learn2learn's
LoadData does) and RemapLabels (a dict), with a seeded random.Random. A second, leaner peer loads
a task's examples with one tensor gather instead. Ours draws a batch of episodes per call and
returns the complete EpisodeBatch (frames, feedback, targets, loss mask, shots).

Batch sizes keep one batch of frames under 32 MiB: above that glibc hands every batch fresh pages
from the OS and page faults, not sampling, set the pace (about 4x slower for Mini-ImageNet).

    python benchmarks/sampling.py            # all figures, one thread
    python benchmarks/sampling.py --quick    # smaller repeats (smoke run)
"""
from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from episodes import FewShotSampler, ImageClasses


class LeanPerTaskPipeline:
    """learn2learn-style per-task sampling: NWays -> KShots -> LoadData -> RemapLabels -> collate.

    ``one_gather=False`` follows learn2learn's semantics: LoadData reads ``dataset[i] -> (x, y)``
    per example and RemapLabels rewrites each example's label. ``one_gather=True`` is leaner than
    learn2learn: one tensor gather per task and labels built directly.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, n_way: int, per_class: int, *,
                 one_gather: bool, seed: int = 0):
        self.images, self.n_way, self.per_class, self.one_gather = images, n_way, per_class, one_gather
        self.labels = labels.tolist()
        self.by_label: dict[int, list[int]] = {}
        for index, label in enumerate(self.labels):
            self.by_label.setdefault(label, []).append(index)
        self.classes = list(self.by_label)
        self.random = random.Random(seed)

    def task(self):
        classes = self.random.sample(self.classes, self.n_way)  # NWays
        indices = [i for c in classes for i in self.random.sample(self.by_label[c], self.per_class)]  # KShots
        remap = {c: new for new, c in enumerate(classes)}
        if self.one_gather:
            frames = self.images[torch.tensor(indices)]
            return frames, torch.tensor([remap[c] for c in classes for _ in range(self.per_class)])
        items = [(self.images[i], self.labels[i]) for i in indices]  # LoadData: dataset[i] per example
        items = [(x, remap[y]) for x, y in items]  # RemapLabels
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])  # collate


def rate(run, episodes_per_call: int, seconds: float) -> float:
    """Episodes per second of calling ``run(call_index)`` for about ``seconds``."""
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        run(calls)
        calls += 1
    return calls * episodes_per_call / (time.perf_counter() - start)


def compare(name, images, labels, n_way, k_shot, n_query, batch_size, seconds, repeats):
    """Medians of interleaved runs of ours and both peers (the VM's speed drifts between runs)."""
    data = ImageClasses(images, labels)
    sampler = FewShotSampler(data, n_way, k_shot, n_query, seed=0)
    per_item = LeanPerTaskPipeline(images, labels, n_way, k_shot + n_query, one_gather=False)
    one_gather = LeanPerTaskPipeline(images, labels, n_way, k_shot + n_query, one_gather=True)
    runs = {"ours": (lambda i: sampler.sample(range(i * batch_size, (i + 1) * batch_size)), batch_size),
            "per_item": (lambda i: per_item.task(), 1), "one_gather": (lambda i: one_gather.task(), 1)}
    rates = {key: [] for key in runs}
    for _ in range(repeats):
        for key, (run, per_call) in runs.items():
            rates[key].append(rate(run, per_call, seconds))
    ours, peer, lean = (statistics.median(rates[key]) for key in runs)
    print(f"{name:<52} {ours:>9,.0f} {peer:>9,.0f} {ours / peer:>6.1f}x {lean:>9,.0f} {ours / lean:>6.1f}x")
    return ours


def resident_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short repeats, smaller Mini-ImageNet")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seconds, repeats = (0.3, 1) if args.quick else (1.5, 5)
    generator = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, 1 thread; episodes/s, medians of {repeats} interleaved runs of {seconds} s")
    print(f"{'setting (batch of episodes per call)':<52} {'metafwp':>9} {'l2l-style':>9} {'ratio':>7} "
          f"{'1-gather':>9} {'ratio':>7}")

    images = torch.randint(0, 256, (100 * 20, 1, 28, 28), dtype=torch.uint8, generator=generator)
    compare("100 cls x 20, 1x28x28, 5-way x 16 (8+8), B=256", images,
            torch.arange(100).repeat_interleave(20), 5, 8, 8, 256, seconds, repeats)

    classes = 1623 * 4  # Omniglot with the rotation classes
    images = torch.randint(0, 256, (classes * 20, 1, 28, 28), dtype=torch.uint8, generator=generator)
    compare("Omniglot-sized 6492 cls x 20, 5-way x 2 (1+1), B=1024", images,
            torch.arange(classes).repeat_interleave(20), 5, 1, 1, 1024, seconds, repeats)
    del images

    per_class = 100 if args.quick else 600
    baseline = resident_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset the peak (VmHWM) to the current resident size
    # Mini-ImageNet-sized, laid out as the pickle holds it: [N, 84, 84, 3], images a channels-last view
    pixels = torch.randint(0, 256, (64 * per_class, 84, 84, 3), dtype=torch.uint8, generator=generator)
    images = pixels.permute(0, 3, 1, 2)
    raw_mib = pixels.numel() / 2**20
    ours = compare(f"Mini-ImageNet-sized 64 x {per_class}, 3x84x84, 5x10, B=24", images,
                   torch.arange(64).repeat_interleave(per_class), 5, 5, 5, 24, seconds, repeats)
    peak_mib = (resident_kib("VmHWM") - baseline) / 1024
    print(f"  resident memory: raw uint8 {raw_mib:,.0f} MiB, peak growth while sampling {peak_mib:,.0f} MiB "
          f"= {peak_mib / raw_mib:.2f}x raw (whole process {resident_kib('VmHWM') / 1024:,.0f} MiB)")
    print(f"  pixels moved: {ours * 50 * 3 * 84 * 84 / 2**30:.1f} GiB/s")


if __name__ == "__main__":
    main()
