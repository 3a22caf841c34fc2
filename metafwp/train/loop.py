"""The training loop, nanoGPT's order on one screen (``train``), with setup, restore, save,
validation and finish in named pieces; single-process or DDP under torchrun; any task of
``metafwp.tasks``."""
from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from episodes import EpisodeStream
from metafwp.errors import USER_ERRORS, CheckpointError, ConfigError, TrainingDiverged, TrainingInterrupted
from metafwp.plots import plot_learning_curves
from metafwp.tasks import LEARNER, TASKS, Task, add_tallies, autocast
from metafwp.train.checkpoint import load_checkpoint, save_checkpoint
from metafwp.train.config import RunConfig, config_from_yaml, config_to_yaml, trajectory_differences
from metafwp.train.distributed import Distributed, start_distributed, stop_distributed

CHECKPOINT_KEYS = ("model", "models", "optimizers", "schedulers", "task_state", "step", "seconds", "history",
                   "validation", "best", "tally", "rng", "cuda_rng", "episodes", "config")
MIN_LOG_POINTS = 20  # a short run still logs this many points (log_every is lowered to fit)


def learning_rate_factor(config: RunConfig, step: int) -> float:
    """Multiplier of ``optim.lr`` at ``step`` (0-based): 1, the Noam warm-up or the cosine decay."""
    if config.optim.schedule == "constant":
        return 1.0
    if config.optim.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / config.train.steps))
    step, warmup = step + 1, config.optim.warmup_steps
    return config.model.d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


def run_folder(config: RunConfig) -> Path:
    return Path(config.train.out_dir).expanduser() / (config.train.name or config.recipe)


def progress_mode(config: RunConfig, ranks: Distributed) -> str:
    """``bar``, ``lines`` or ``none`` for this rank: ``auto`` is a bar on a terminal, else plain lines."""
    mode = config.train.progress if ranks.is_main else "none"
    return ("bar" if sys.stderr.isatty() else "lines") if mode == "auto" else mode


def log_interval(config: RunConfig) -> int:
    """``train.log_every``, lowered so that the run logs at least MIN_LOG_POINTS points."""
    return max(1, min(config.train.log_every, config.train.steps // MIN_LOG_POINTS))


def make_optimizer(config: RunConfig, parameters) -> tuple[torch.optim.Optimizer, object]:
    """``optim.optimizer`` (Adam or SGD with momentum) over ``parameters`` and its learning-rate schedule."""
    o = config.optim
    if o.optimizer == "sgd":
        optimizer = torch.optim.SGD(parameters, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    else:
        optimizer = torch.optim.Adam(parameters, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate_factor(config, step))
    return optimizer, scheduler


class Tally:
    """Sums of the named training tallies, episodes and seconds since the last log line; read
    (added over ranks) into a log record; saved with the checkpoint so a resumed run loses none of them."""

    def __init__(self):
        self.sums, self.episodes, self.seconds = None, 0, 0.0

    def add(self, sums: dict[str, torch.Tensor], episodes: int, seconds: float) -> None:
        self.sums = add_tallies(self.sums, sums)
        self.episodes += episodes
        self.seconds += seconds

    def read(self, task: Task, ranks: Distributed) -> dict:
        names = sorted(self.sums)
        flat = torch.cat([self.sums[name].flatten() for name in names]
                         + [torch.tensor([float(self.episodes)], dtype=torch.float64)])
        totals = ranks.sum(flat)[:-1].split([self.sums[name].numel() for name in names])
        record = task.summarise({name: total.view_as(self.sums[name]) for name, total in zip(names, totals)})
        episodes = int(flat[-1])
        record.update(episodes=episodes, seconds=self.seconds, episodes_per_second=episodes / max(self.seconds, 1e-9))
        self.sums, self.episodes, self.seconds = None, 0, 0.0
        return record

    def state_dict(self) -> dict:
        return {"sums": self.sums, "episodes": self.episodes, "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.sums, self.episodes, self.seconds = state["sums"], state["episodes"], state["seconds"]


@dataclass
class Run:
    """Everything a checkpoint holds, plus where it goes: the task's models by name (``learner``
    first), its optimisers and their schedules by name."""
    config: RunConfig
    task: Task
    models: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, object]
    run_dir: Path
    ranks: Distributed
    step: int = 0
    seconds: float = 0.0
    history: list = field(default_factory=list)
    validation: list = field(default_factory=list)
    best: dict | None = None          # {"step", task.metric} of best.pt
    tally: Tally = field(default_factory=Tally)

    @property
    def model(self) -> torch.nn.Module:
        """The learner: validated, tested, and the weights of ``best.pt``."""
        return self.models[LEARNER]

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def stream_state(self) -> dict:
        """Where the training episodes stand: batch j is episodes ``j B .. (j + 1) B - 1`` of the sampler."""
        return {"sampler": self.task.train_sampler().state_dict(), "batch_size": self.config.train.batch_size,
                "next_batch": self.step}


def train(config: RunConfig) -> Path:
    """Meta-train ``config``'s learner on its task, test it, return the run folder.

    The folder gets ``config.yaml``, ``checkpoint.pt`` (atomic, every ``train.checkpoint_every``
    steps, at the end, and on SIGTERM / SIGINT), ``best.pt`` (with validation), tensorboard event
    files, ``metrics.json`` and the plots.
    """
    ranks = start_distributed(config.train.device)
    try:
        return _train(config, ranks)
    finally:
        stop_distributed(ranks)


def _train(config: RunConfig, ranks: Distributed) -> Path:
    run = setup(config, ranks)
    steps, every = config.train.steps if run.optimizers else 0, log_interval(config)
    trainer = Trainer(run)
    log = Progress(run, steps)
    with StopSignals() as signals:
        started = time.perf_counter()
        for batch in episode_loader(run, steps):
            scores = run.task.training_step(trainer, batch.to(ranks.device, non_blocking=True))
            for scheduler in run.schedulers.values():
                scheduler.step()
            run.step += 1
            run.tally.add(scores.sums, batch.batch_size, time.perf_counter() - started)
            log.step()
            if run.step % every == 0 or run.step == steps:
                log.write(run.tally.read(run.task, ranks))
            if config.eval.val_every and (run.step % config.eval.val_every == 0 or run.step == steps):
                validate(run, log)
            if run.step % config.train.checkpoint_every == 0 or run.step == steps:
                save(run)
            if signals.received(ranks):
                save(run)
                raise TrainingInterrupted(f"{signals.name} at step {run.step}: checkpoint saved in "
                                          f"{run.checkpoint_path}; continue with train.resume=true", signals.number)
            started = time.perf_counter()
    if ranks.is_main:
        finish(run, log.writer)
    log.close()
    ranks.barrier()
    return run.run_dir


def setup(config: RunConfig, ranks: Distributed) -> Run:
    """Check the folder and the config, build the task and the learner, restore or initialise the
    weights, and only then write ``config.yaml``: a refused run leaves the folder as it was."""
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    if config.train.batch_size % ranks.world_size:
        raise ConfigError(f"train.batch_size={config.train.batch_size} must divide among the "
                          f"{ranks.world_size} ranks")
    run_dir = run_folder(config)
    for key, path in (("train.out_dir", run_dir.parent), ("train.name", run_dir)):
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{key}: {path} is a file, not a folder; give a folder for the run")
    task = TASKS[config.task](config, progress=progress_mode(config, ranks) == "bar")
    torch.manual_seed(config.train.seed)  # the same initial weights on every rank
    models = {name: model.to(ranks.device) for name, model in task.build_models(config.model).items()}
    if next(iter(models), None) != LEARNER:
        raise ValueError(f"task {config.task}: build_models must give {LEARNER!r} first, got {list(models)}")
    optimizers, schedulers = {}, {}
    for name, parameters in task.optimised_parameters(models).items():
        optimizers[name], schedulers[name] = make_optimizer(config, parameters)
    run = Run(config, task, models, optimizers, schedulers, run_dir, ranks)
    if run.checkpoint_path.exists():
        if config.train.resume == "false":
            raise ConfigError(f"{run_dir} already holds a run: pass train.resume=true to continue it, or another "
                              f"train.name (or train.out_dir) to start a new one")
        restore(run)
    else:
        if optimizers and run_dir.is_dir() and any(run_dir.iterdir()):
            raise ConfigError(f"{run_dir} holds files but no checkpoint.pt (a run stopped before its first "
                              f"checkpoint?); delete that folder or choose another train.name")
        if config.train.resume == "true" and (optimizers or not run_dir.is_dir()):
            raise ConfigError(f"train.resume=true, but {run_dir} holds no run to continue (no checkpoint.pt): is "
                              f"train.name or train.out_dir misspelt? To start it, leave train.resume out (or pass "
                              f"train.resume=auto: continue a run when there is one, else start it)")
        if config.train.init_from:
            initialise_from(run, config.train.init_from)
        torch.manual_seed(config.train.seed + ranks.rank)  # dropout differs between ranks
    ranks.barrier()  # every rank has checked the folder before rank 0 writes into it
    if ranks.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(config_to_yaml(config))
    return run


def restore(run: Run) -> None:
    """Continue the run in the folder exactly; refuse (touching nothing) when the config, the
    episodes or the number of ranks differ from the checkpoint's."""
    state = load_checkpoint(run.checkpoint_path)
    missing = sorted(set(CHECKPOINT_KEYS) - set(state))
    if missing:
        raise CheckpointError(f"{run.checkpoint_path} lacks {', '.join(missing)}: it was written by another version "
                              f"of metafwp and cannot be resumed exactly; start a new run from its weights with "
                              f"train.init_from={run.checkpoint_path} and another train.name")
    differences = trajectory_differences(config_from_yaml(state["config"]), run.config)
    if differences:
        raise ConfigError(f"train.resume=true, but this config differs from the run's own ({run.run_dir}/config.yaml) "
                          f"in what shapes training: {'; '.join(differences)}. Resume with the run's config, or "
                          f"start a new run from its weights with train.init_from={run.run_dir}")
    expected = dict(run.stream_state(), next_batch=state["episodes"]["next_batch"])
    if state["episodes"] != expected:
        raise ConfigError(f"{run.checkpoint_path} continues other episodes than this config's sampler gives "
                          f"(the dataset changed?): {state['episodes']['sampler']} vs {expected['sampler']}")
    if len(state["rng"]) != run.ranks.world_size:
        raise ConfigError(f"{run.checkpoint_path} was written by {len(state['rng'])} ranks; resume it with as many "
                          f"(each rank's random state is restored, so the run continues exactly)")
    for name, model in run.models.items():
        model.load_state_dict(state["model"] if name == LEARNER else state["models"][name])
    for name, optimizer in run.optimizers.items():
        optimizer.load_state_dict(state["optimizers"][name])
        run.schedulers[name].load_state_dict(state["schedulers"][name])
    run.task.load_state_dict(state["task_state"][run.ranks.rank])
    run.step, run.seconds, run.history = state["step"], state["seconds"], state["history"]
    run.validation, run.best = state["validation"], state["best"]
    run.tally.load_state_dict(state["tally"])
    torch.set_rng_state(state["rng"][run.ranks.rank])
    if run.ranks.device.type == "cuda" and state["cuda_rng"][run.ranks.rank] is not None:
        torch.cuda.set_rng_state(state["cuda_rng"][run.ranks.rank], run.ranks.device)


def initialise_from(run: Run, source: str) -> None:
    """Start a new run from the weights of another run's checkpoint (a run folder or a .pt file)."""
    path = Path(source).expanduser()
    path = path / "checkpoint.pt" if path.is_dir() else path
    if not path.is_file():
        raise ConfigError(f"train.init_from={source}: no checkpoint there (give a run folder or its checkpoint.pt)")
    state = load_checkpoint(path)
    try:
        run.model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as error:
        raise ConfigError(f"train.init_from={source}: its weights do not fit this model "
                          f"({' '.join(str(error).split())[:400]}); use the model settings of that run") from None
    if run.ranks.is_main:
        print(f"train.init_from: the learner's weights of {path} (step {state.get('step', '?')}); optimiser, "
              f"schedule and episodes start afresh", file=sys.stderr)


def episode_loader(run: Run, steps: int) -> DataLoader:
    """This rank's training batches from the run's step to ``steps``."""
    ranks = run.ranks
    stream = EpisodeStream(run.task.train_sampler(), run.config.train.batch_size // ranks.world_size,
                           start=run.step, num_batches=max(0, steps - run.step), rank=ranks.rank,
                           world_size=ranks.world_size)
    # the loader's own generator: drawing its worker seed must not move the global RNG (dropout),
    # or a resumed run would differ from a straight one; episodes do not depend on it
    return DataLoader(stream, batch_size=None, num_workers=run.config.data.num_workers,
                      pin_memory=ranks.device.type == "cuda", generator=torch.Generator())


class Trainer:
    """What a task's ``training_step`` works with: the models, as they are (an objective may call
    any of their methods: ``embed``, ``read``, ...), and ``step``, one optimiser step, whose
    gradients are averaged over the ranks under torchrun."""

    def __init__(self, run: Run):
        self.run, self.device, self.models = run, run.ranks.device, run.models

    def total(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` summed over the ranks (itself in one process): a decision every rank must take
        alike, such as whether to step at all, reads it."""
        return self.run.ranks.sum(value.detach().double().clone())

    def autocast(self):
        """bf16 autocast on CUDA when the recipe asks (``train.bf16``)."""
        return autocast(self.device, self.run.config.train.bf16)

    def step(self, loss: torch.Tensor, optimizer: str = LEARNER, terms: torch.Tensor | None = None,
             after_backward=None) -> None:
        """Backward, clip (``optim.grad_clip``), step and zero the gradients of ``optimizer``'s
        parameters; a NaN or infinite gradient stops the run. ``terms``: how many terms ``loss`` is
        the mean of on this rank (``Scores.loss_terms``), weighting the ranks' gradients;
        ``after_backward()`` adds gradients autograd does not compute (RTRL's) before the step."""
        run, config, ranks = self.run, self.run.config, self.run.ranks
        if terms is not None and ranks.world_size > 1:  # sum_r (n_r / N) grad L_r: the mean over all N terms
            share = terms.detach().double() / self.total(terms)
            loss = loss * (share * ranks.world_size).to(loss.dtype)
        loss.backward()
        if after_backward is not None:
            after_backward()
        parameters = [p for group in run.optimizers[optimizer].param_groups for p in group["params"]]
        average_gradients(parameters, run.ranks)
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, config.optim.grad_clip or math.inf)
        if not torch.isfinite(grad_norm):  # the same on every rank: gradients are averaged before this
            kept = (f"the last good checkpoint is kept: {run.checkpoint_path} (step "
                    f"{run.step - run.step % config.train.checkpoint_every})" if run.checkpoint_path.exists()
                    else "no checkpoint had been written yet")
            raise TrainingDiverged(
                f"step {run.step + 1}: loss {loss.item():.4g}, gradient norm {grad_norm.item():.4g}; training "
                f"stopped and {kept}. Lower optim.lr, set optim.grad_clip=1 or use model.beta_activation=sigmoid, "
                f"and start a new run (another train.name) from the kept weights with "
                f"train.init_from={run.checkpoint_path}")
        run.optimizers[optimizer].step()
        run.optimizers[optimizer].zero_grad(set_to_none=True)


def average_gradients(parameters: list[torch.Tensor], ranks: Distributed) -> None:
    """Each parameter's gradient becomes its mean over the ranks, in one all-reduce of all of them
    flattened: what DistributedDataParallel computes, for objectives that call the learner's other
    methods (``embed``, ``read``) too. A parameter a rank did not use counts as zero there; one no
    rank used keeps no gradient, as it would in one process."""
    if ranks.world_size == 1:
        return
    gradients = [torch.zeros_like(p) if p.grad is None else p.grad for p in parameters]
    flat = torch.cat([g.reshape(-1) for g in gradients])  # the widest dtype of them
    used = torch.tensor([p.grad is not None for p in parameters], dtype=flat.dtype, device=flat.device)
    flat = ranks.sum(torch.cat([flat, used]))
    sizes = [g.numel() for g in gradients]
    *summed, used = flat.split(sizes + [len(parameters)])
    for parameter, gradient, anywhere in zip(parameters, summed, used.tolist()):
        parameter.grad = (gradient / ranks.world_size).view_as(parameter).to(parameter.dtype) if anywhere else None


def validate(run: Run, log: "Progress") -> None:
    """The metric on the fixed validation episodes (rank 0); a new best is written to best.pt."""
    if not run.ranks.is_main:
        return
    result = run.task.validate(run.model, run.ranks.device)
    metric = run.task.metric
    record = {"step": run.step, metric: result[metric], "ci95": result["ci95"],
              **({"loss": result["loss"]} if "loss" in result else {})}  # a GAN has no held-out loss
    run.validation.append(record)
    log.write_validation(record)
    for name, images in run.task.validation_images(run.model, run.ranks.device).items():
        log.writer.add_images(f"val/{name}", images, run.step)
    better = (run.best is None or (result[metric] > run.best[metric] if run.task.higher_is_better
                                   else result[metric] < run.best[metric]))
    if better:
        run.best = {"step": run.step, metric: result[metric]}
        save_checkpoint(run.run_dir / "best.pt", {"model": run.model.state_dict(), "step": run.step,
                                                  "validation": record, "config": config_to_yaml(run.config)})


def save(run: Run) -> None:
    """``checkpoint.pt``: the learner (``model``) and the task's other ``models``, the optimisers and
    schedules, every rank's task state, step, history, validation and best-so-far, the tallies
    since the last log line, every rank's RNG states (CPU, and CUDA on a GPU), where the episodes stand."""
    rng_states, task_states = run.ranks.gather(torch.get_rng_state()), run.ranks.gather(run.task.state_dict())
    device = run.ranks.device
    cuda_rng_states = run.ranks.gather(torch.cuda.get_rng_state(device) if device.type == "cuda" else None)
    if run.ranks.is_main:
        save_checkpoint(run.checkpoint_path, {
            "model": run.model.state_dict(),
            "models": {name: model.state_dict() for name, model in run.models.items() if name != LEARNER},
            "optimizers": {name: optimizer.state_dict() for name, optimizer in run.optimizers.items()},
            "schedulers": {name: scheduler.state_dict() for name, scheduler in run.schedulers.items()},
            "task_state": task_states, "step": run.step, "seconds": run.seconds,
            "history": run.history, "validation": run.validation, "best": run.best, "tally": run.tally.state_dict(),
            "rng": rng_states, "cuda_rng": cuda_rng_states, "episodes": run.stream_state(),
            "config": config_to_yaml(run.config)})


def finish(run: Run, writer: SummaryWriter) -> None:
    """Test the learner (its best.pt when validated) and the baselines on the same held-out
    episodes (unless ``train.test=false`` defers it); write metrics.json and the plots."""
    config, task, run_dir = run.config, run.task, run.run_dir
    metrics = {"run": str(run_dir), "recipe": config.recipe, "task": config.task, "learner": task.learner,
               "steps": config.train.steps, "train_seconds": run.seconds, "tested": None, "best": run.best,
               "test": None, "history": run.history, "validation": run.validation}
    if run.history:
        plot_learning_curves(run.history, run_dir / "learning_curves.png", title=run_dir.name,
                             validation=run.validation, metric=task.metric)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))  # the test follows, if not deferred
    if not config.train.test:  # deferred: python -m metafwp.evaluate <run folder>
        return
    tested = "last"
    if run.best is not None:
        run.model.load_state_dict(load_checkpoint(run_dir / "best.pt")["model"])
        tested = f"best.pt (step {run.best['step']})"
    try:
        results = task.test(run.model, run.ranks.device)
    except USER_ERRORS as error:  # e.g. test data removed while the run trained
        raise type(error)(f"{error}. Training finished and its weights are saved in {run_dir}; once this is "
                          f"fixed, test them with: python -m metafwp.evaluate {run_dir}") from None
    for name, result in results.items():
        writer.add_scalar(f"test/{task.metric}_{name}", result[task.metric], config.train.steps)
    metrics.update(tested=tested, test=results)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    task.write_figures(results, run_dir, title=f"{run_dir.name}: {config.eval.episodes} test episodes")


class Progress:
    """Tensorboard on rank 0, and a progress bar on a terminal or one plain line per log record
    when the output is a file (a cluster log, nohup)."""

    def __init__(self, run: Run, steps: int):
        self.run, self.steps, self.last_step = run, steps, run.step
        mode = progress_mode(run.config, run.ranks)
        self.lines = mode == "lines"
        self.bar = tqdm(total=steps, initial=run.step, desc=f"training {run.run_dir.name}", unit="step",
                        disable=mode != "bar", dynamic_ncols=True)
        # a resumed run (the only kind past step 0 here) drops the events logged after its checkpoint
        self.writer = (SummaryWriter(run.run_dir / "tensorboard", purge_step=run.step + 1 if run.step else None)
                       if run.ranks.is_main else None)

    def step(self) -> None:
        self.bar.update()

    def write(self, record: dict) -> None:
        run = self.run
        first = next(iter(run.schedulers.values()), None)  # the learner's, or a task's first optimiser's
        record.update(step=run.step, lr=first.get_last_lr()[0] if first is not None else 0.0)
        seconds = record.pop("seconds")
        run.seconds += seconds
        run.history.append(record)
        metric = run.task.metric
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "episodes"):
                    self.writer.add_scalar(f"train/{key}", value, run.step)
            for shot, value in record.get("by_shot", {}).items():
                self.writer.add_scalar(f"train/{metric}_shot_{shot}", value, run.step)
        shown = {metric[:3]: f"{record[metric]:.4g}"} if metric in record else {}  # a GAN's only on validation
        self.bar.set_postfix(loss=f"{record['loss']:.3f}", **shown, eps=f"{record['episodes_per_second']:.0f}/s")
        if self.lines:
            eta = (self.steps - run.step) * seconds / max(1, run.step - self.last_step)
            metric_text = f"{metric} {record[metric]:.4g}  " if metric in record else ""
            print(f"{run.run_dir.name} step {run.step}/{self.steps}  loss {record['loss']:.4f}  {metric_text}"
                  f"lr {record['lr']:.3g}  {record['episodes_per_second']:.0f} episodes/s  "
                  f"ETA {format_seconds(eta)}", flush=True)
        self.last_step = run.step

    def write_validation(self, record: dict) -> None:
        metric = self.run.task.metric
        self.writer.add_scalar(f"val/{metric}", record[metric], record["step"])
        if "loss" in record:
            self.writer.add_scalar("val/loss", record["loss"], record["step"])
        if self.lines:
            print(f"{self.run.run_dir.name} step {record['step']} validation {metric} {record[metric]:.4g} +/- "
                  f"{record['ci95']:.2g}", flush=True)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


def format_seconds(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{seconds:02d}s"


class StopSignals:
    """While training, SIGTERM and SIGINT (pre-emption, Ctrl-C) only set a flag: the loop then saves
    a checkpoint at the current step and stops. All ranks stop at the same step."""

    def __enter__(self) -> "StopSignals":
        self.number, self.previous = 0, {}
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGTERM, signal.SIGINT):
                self.previous[number] = signal.signal(number, self.handle)
        return self

    def handle(self, number, frame) -> None:
        self.number = number

    @property
    def name(self) -> str:
        return signal.Signals(self.number).name

    def received(self, ranks: Distributed) -> bool:
        if ranks.world_size > 1:  # one rank's signal stops every rank at this step
            flag = ranks.sum(torch.tensor([float(self.number)]))
            if flag.item() and not self.number:
                self.number = int(signal.SIGTERM)
        return bool(self.number)

    def __exit__(self, *exc) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
