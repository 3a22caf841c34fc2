"""Where a study's runs execute: a local process pool (one thread per run), or submitit, through its
local executor or on a SLURM cluster (array jobs). Every launcher takes the same calls, top-level
functions with picklable arguments, and returns their results in order; a user's error in a job
reaches the command line as one line."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from metafwp.demo import training_pool
from metafwp.errors import ConfigError

LAUNCHERS = ("local", "submitit-local", "slurm")


@dataclass
class ClusterSettings:
    """What each SLURM job asks for (``--partition``, ``--time`` in minutes, ``--cpus``, ``--gpus``)."""
    partition: str | None = None
    minutes: int = 120
    cpus: int = 1
    gpus: int = 0


def check_launcher(name: str) -> None:
    """A one-line error, before any work, when ``name`` cannot run here."""
    if name not in LAUNCHERS:
        raise ConfigError(f"Unknown launcher {name!r}. Valid: {', '.join(LAUNCHERS)}")
    if name == "local":
        return
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ConfigError(f"--launcher {name} needs submitit, which is not installed: "
                          f"pip install 'metafwp[cluster]'") from None
    if name == "slurm" and shutil.which("sbatch") is None:
        raise ConfigError("--launcher slurm needs SLURM's sbatch on PATH, and it is not there: run the study from "
                          "the cluster's login node, or use --launcher local")


def launch(name: str, calls: list[tuple[Callable, tuple]], *, jobs: int, folder: Path,
           cluster: ClusterSettings | None = None, on_done: Callable[[int], None] | None = None) -> list:
    """``[fn(*args) for fn, args in calls]``, ``jobs`` at a time, on launcher ``name``; ``on_done(i)``
    as call i finishes (local) or is collected (submitit). submitit keeps its logs under ``folder``."""
    if not calls:
        return []
    if name == "local" and jobs == 1:  # one at a time: in this process, no pool to start
        results = []
        for i, (fn, args) in enumerate(calls):
            results.append(fn(*args))
            if on_done:
                on_done(i)
        return results
    if name == "local":
        from concurrent.futures import as_completed

        with training_pool(jobs) as pool:
            futures = {pool.submit(fn, *args): i for i, (fn, args) in enumerate(calls)}
            results = [None] * len(calls)
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if on_done:
                    on_done(futures[future])
            return results
    import submitit

    settings = cluster or ClusterSettings()
    if name == "submitit-local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=settings.minutes)
    else:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        executor.update_parameters(timeout_min=settings.minutes, cpus_per_task=settings.cpus,
                                   gpus_per_node=settings.gpus, slurm_array_parallelism=jobs,
                                   **({"slurm_partition": settings.partition} if settings.partition else {}))
    with executor.batch():  # one array job
        submitted = [executor.submit(fn, *args) for fn, args in calls]
    results = []
    for i, job in enumerate(submitted):
        try:
            results.append(job.result())
        except submitit.core.utils.FailedJobError as error:
            raise RuntimeError(f"job {job.job_id} failed; its log: {job.paths.stderr}\n{error}") from None
        if on_done:
            on_done(i)
    return results
