"""Step cost of the later protocols' objectives against their plain counterparts, on the same batch
and learner, measured in the same run. A step is forward, loss and backward; ``--repeats`` rounds
alternate the variants and the medians are reported.

Bootstrapping: the bootstrapping step against the plain K-shot loss, beside the way the objective is
often written, with two plain passes (support + query for p_K, then support + future + query for
p_{K+F}), which reads the support and its frames twice. Because the support is not re-read, the
bootstrapping step should cost about ``(K + F + 1) / (K + 1)`` plain steps. Settings: the glyph
recipe (10-way, K = 1, F = 2, one query, 16-filter Conv-4, one SRWM layer, batch 32) and the
authors' shape at 28x28 glyphs (5-way, K = 10, F = 5).

Continual (ACL): the loss with the backward terms (every earlier task's queries read again after
each task: T (T + 1) / 2 query reads) against the loss without them (T reads), on the glyph recipe's
streams (five 2-way 5-shot tasks, InstanceNorm Conv-4, one SRWM layer, batch 16).

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \
        python benchmarks/objectives_cpu.py [--repeats 5] [--threads 2]

(glibc then keeps freed memory, as ``make demo`` and the studies do; without it the larger batches
of the bootstrapping step get fresh pages from the OS every step, which inflates its ratio.)
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from episodes.batch import concatenate_steps
from metafwp.losses import bootstrap_loss, continual_loss, teacher_kl
from metafwp.tasks import BootstrapTask, ContinualTask
from metafwp.train import load_config

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
RECIPE = RECIPES / "glyphs_bootstrap_10way1shot_srwm.yaml"
CONTINUAL_RECIPE = RECIPES / "glyphs_continual_domain_acl.yaml"
SETTINGS = {"glyphs 10-way K=1 F=2": ["data.n_way=10", "data.k_shot=1", "data.n_future=2"],
            "5-way K=10 F=5": ["data.n_way=5", "data.k_shot=10", "data.n_future=5", "data.test_k_shots=[15]"]}


def two_passes(model, batch):
    """The objective from two plain passes over the sequence prefixes."""
    n_query = batch.query.num_steps
    student, _ = model(concatenate_steps([batch.support, batch.query]))
    teacher, _ = model(batch.sequence())
    student, teacher = student[:, -n_query:].flatten(0, 1), teacher[:, -n_query:].flatten(0, 1)
    targets = batch.query.targets.flatten()
    return F.cross_entropy(student, targets) + F.cross_entropy(teacher, targets) + \
        10 * teacher_kl(student, teacher).mean()


def medians(steps: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each step function, the variants alternating round by round."""
    for step in steps.values():
        step()  # warm-up
    times = {label: [] for label in steps}
    for _ in range(repeats):
        for label, step in steps.items():
            started = time.perf_counter()
            step()
            times[label].append(time.perf_counter() - started)
    return {label: statistics.median(values) for label, values in times.items()}


def report(medians_: dict[str, float]) -> None:
    plain = next(iter(medians_.values()))
    for label, median in medians_.items():
        print(f"  {label:<34} {1000 * median:8.1f} ms/step   {median / plain:5.2f}x the first")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"objective step cost, CPU, {args.threads} threads, median of {args.repeats} rounds")
    for name, overrides in SETTINGS.items():
        config = load_config(RECIPE, overrides)
        task = BootstrapTask(config, progress=False)
        torch.manual_seed(0)
        model = task.build_learner(config.model)
        batch = task.train_sampler().sample(range(32))
        d = config.data
        expected = (d.k_shot + d.n_future + d.n_query) / (d.k_shot + d.n_query)
        print(f"\nbootstrapping, {name}, batch 32: expected ratio (K + F + 1) / (K + 1) = {expected:.2f}")
        report(medians({"plain (K-shot loss only)": lambda: bootstrap_loss(model, batch, (1, 0, 0)).loss.backward(),
                        "bootstrap (state reused)": lambda: bootstrap_loss(model, batch).loss.backward(),
                        "bootstrap (two passes)": lambda: two_passes(model, batch).backward()}, args.repeats))
    config = load_config(CONTINUAL_RECIPE)
    task = ContinualTask(config, progress=False)
    torch.manual_seed(0)
    model = task.build_learner(config.model)
    batch = task.train_sampler().sample(range(config.train.batch_size))
    tasks = config.data.num_tasks
    print(f"\ncontinual, {tasks} tasks of 2-way {config.data.k_shot}-shot, batch {config.train.batch_size}: "
          f"{tasks} query reads without ACL, {tasks * (tasks + 1) // 2} with")
    report(medians({"without ACL": lambda: continual_loss(model, batch, backward=False).loss.backward(),
                    "with ACL": lambda: continual_loss(model, batch, backward=True).loss.backward()}, args.repeats))


if __name__ == "__main__":
    main()
