"""The run configuration: typed dataclasses filled from a YAML recipe plus ``key=value`` overrides,
validated before any work. An unknown key is an error listing the valid ones; the ``data`` section
is the chosen task's own dataclass and the ``model`` section the chosen learner kind's; a key the
chosen kind of learner or task does not read is an error when the recipe layer or override that
sets it also chose the kind (or came later), and is left out when it comes from an earlier layer
(a ``base`` recipe, quietly; the recipe under an override that changes ``model.kind`` /
``model.mixer``, with a note). ``config.yaml`` holds only the keys read."""
from __future__ import annotations

import difflib
import hashlib
import os
import sys
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, List, Optional

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from metafwp.errors import ConfigError
from metafwp.models import LEARNER_KINDS
from metafwp.models.kinds import SequenceConfig
from metafwp.tasks import TASKS

SCHEDULES = ("constant", "noam", "cosine")
OPTIMIZERS = ("adam", "sgd")
PROGRESS = ("auto", "bar", "lines", "none")
RESUME = ("false", "true", "auto")
DEFAULT_TASK, DEFAULT_KIND = "few_shot", "sequence"


@dataclass
class OptimConfig:
    """``optimizer``: ``adam`` (the reference betas and eps) or ``sgd`` (with ``momentum``, 0: plain
    SGD); both with ``weight_decay`` (L2, added to the gradient). ``schedule``: ``constant`` keeps
    ``lr``; ``noam`` warms up over ``warmup_steps``: ``lr * d_model^-0.5 * min(step^-0.5, step *
    warmup^-1.5)``; ``cosine`` decays ``lr`` to 0 over ``train.steps``: ``lr * (1 + cos(pi * step /
    steps)) / 2``."""
    optimizer: str = "adam"
    lr: float = 1e-3
    betas: List[float] = field(default_factory=lambda: [0.9, 0.995])
    eps: float = 1e-9
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 5000
    grad_clip: float = 0.0            # max gradient norm; 0 disables clipping

    DECIDING_KEYS: ClassVar[tuple[str, ...]] = ("optimizer", "schedule")

    def unread_keys(self) -> set[str]:
        unread = {"momentum"} if self.optimizer == "adam" else {"betas", "eps"}
        return unread | (set() if self.schedule == "noam" else {"warmup_steps"})

    def check(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"Unknown optim.optimizer {self.optimizer!r}. Valid: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"Unknown optim.schedule {self.schedule!r}. Valid: {', '.join(SCHEDULES)}")
        if not self.lr > 0 or self.momentum < 0 or self.weight_decay < 0:
            raise ConfigError(f"optim.lr must be > 0 and optim.momentum, optim.weight_decay >= 0, got {self.lr}, "
                              f"{self.momentum}, {self.weight_decay}")


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 32              # episodes per step, over all ranks
    seed: int = 0
    device: str = "auto"              # auto (cuda when available), cpu, cuda, cuda:1, ...
    bf16: bool = True                 # bf16 autocast on CUDA (CPU runs stay float32)
    threads: Optional[int] = None     # torch CPU threads (Default: torch's choice)
    log_every: int = 25               # at most; short runs log at least 20 points
    checkpoint_every: int = 250
    out_dir: str = "runs"
    name: Optional[str] = None        # run folder name (Default: the recipe's name, and a hash of what the
                                      # overrides change in training when they do)
    resume: str = "false"             # true: continue the run in the folder exactly (same config), refused where
                                      # there is none; auto: continue it when there is one, else start it
    init_from: Optional[str] = None   # a new run starting from another run's weights (folder or .pt)
    progress: str = "auto"            # auto (a bar on a terminal, else lines), bar, lines or none (true / false:
                                      # auto / none)
    test: bool = True                 # test after training; false defers it (python -m metafwp.evaluate <run>)


@dataclass
class EvalConfig:
    """Test: a fixed, seeded set of ``episodes`` from the task's test split, beside ``baselines``.
    Validation: every ``val_every`` steps (0: never) on ``val_episodes`` seeded episodes of the
    task's validation split; ``best.pt`` keeps the best, and testing uses it."""
    episodes: int = 1000
    batch_size: int = 100
    seed: int = 1_000_003
    baselines: Optional[List[str]] = None  # Default: the task's (pixel_nn for few_shot)
    val_every: int = 0
    val_episodes: int = 500
    val_seed: int = 2_000_003


@dataclass
class RunConfig:
    task: str = DEFAULT_TASK          # a key of metafwp.tasks.TASKS
    data: Any = field(default_factory=lambda: TASKS[DEFAULT_TASK].DataConfig())  # the task's DataConfig
    model: Any = field(default_factory=SequenceConfig)  # the Config of the learner kind model.kind
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    recipe: str = "custom"            # the recipe's file stem, for the run name


# keys that shape neither the model's trajectory nor its best checkpoint: a resumed run may change them
# (train.threads is not among them: it changes the order of float sums, so a resume would not be exact)
RUN_SETTINGS = ("recipe", "train.resume", "train.progress", "train.log_every", "train.checkpoint_every",
                "train.out_dir", "train.name", "train.test", "data.num_workers")
EVAL_TEST_KEYS = ("eval.episodes", "eval.batch_size", "eval.seed", "eval.baselines")


def test_keys(task: str) -> tuple[str, ...]:
    """The keys that shape only ``task``'s test: the eval settings and its ``DataConfig.TEST_KEYS``.
    They may change on resume and in ``python -m metafwp.evaluate``."""
    return EVAL_TEST_KEYS + tuple(f"data.{key}" for key in TASKS[task].DataConfig.TEST_KEYS)


def sections(task_name: str, kind: str) -> dict[str, type]:
    return {"data": TASKS[task_name].DataConfig, "model": LEARNER_KINDS[kind].Config, "optim": OptimConfig,
            "train": TrainConfig, "eval": EvalConfig}


def schema_keys(schema) -> list[str]:
    return [f.name for f in fields(schema)]


def check_keys(values: dict, schema: dict[str, type] | type, prefix: str = "",
               also_valid: set[str] = frozenset()) -> None:
    """Raise a ConfigError for any key of ``values`` that is not in ``schema`` (a dataclass, or the
    top level: ``{section: dataclass}`` plus ``task`` and ``recipe``) nor in ``also_valid`` (keys
    of the other learner kinds in the ``model`` section, which the chosen kind leaves unread)."""
    valid = schema_keys(RunConfig) if isinstance(schema, dict) else schema_keys(schema)
    for key, value in values.items():
        if key in also_valid:
            continue
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
            raise ConfigError(f"Unknown config key '{prefix}{key}'.{hint} Valid keys"
                              f"{' of ' + prefix.rstrip('.') if prefix else ''}: {', '.join(valid)}")
        if isinstance(schema, dict) and key in schema:
            if not isinstance(value, dict):
                raise ConfigError(f"Config key {key!r} is a section; give its keys, e.g. {key}.x=...")
            check_keys(value, schema[key], f"{key}.", other_kinds_keys(schema[key]) if key == "model" else frozenset())


def other_kinds_keys(model_schema: type) -> set[str]:
    """``model`` keys of the other learner kinds that ``model_schema`` (a kind's Config) lacks."""
    return {key for kind in LEARNER_KINDS.values() for key in schema_keys(kind.Config)} - set(schema_keys(model_schema))


def check_choices(config: RunConfig) -> None:
    """Closed-set and range checks that the types alone do not express."""
    task = TASKS[config.task]
    for section in (config.data, config.model, config.optim):
        section.check()
    if config.train.progress.lower() in ("true", "false"):  # YAML users write booleans: on (auto) or off
        config.train.progress = "auto" if config.train.progress.lower() == "true" else "none"
    config.train.resume = config.train.resume.lower()  # YAML booleans arrive as "True" / "False"
    if config.train.resume not in RESUME:
        raise ConfigError(f"Unknown train.resume {config.train.resume!r}. Valid: {', '.join(RESUME)}")
    if config.train.progress not in PROGRESS:
        raise ConfigError(f"Unknown train.progress {config.train.progress!r}. Valid: {', '.join(PROGRESS)}")
    at_least_one = [("train.steps", config.train.steps), ("train.batch_size", config.train.batch_size),
                    ("train.log_every", config.train.log_every),
                    ("train.checkpoint_every", config.train.checkpoint_every),
                    ("eval.episodes", config.eval.episodes), ("eval.batch_size", config.eval.batch_size),
                    ("eval.val_episodes", config.eval.val_episodes)]
    for key, value in at_least_one:
        if value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")
    if config.eval.val_every < 0:
        raise ConfigError(f"eval.val_every must be >= 0 (0: no validation), got {config.eval.val_every}")
    task.check_config(config)


def read_recipe(path: Path, seen: tuple[Path, ...] = ()) -> list:
    """The layers of a recipe file: its ``base`` recipe's layers (a path relative to it) first, then
    its own keys. A recipe without a ``recipe`` key is named after its file."""
    if not path.is_file():
        raise ConfigError(f"Recipe {str(path)!r} not found; the shipped ones are in recipes/ (e.g. "
                          f"recipes/glyphs_5way1shot_srwm.yaml)")
    if path.resolve() in seen:
        raise ConfigError(f"Recipe {path} names itself as a base (through {', '.join(map(str, seen))})")
    try:
        layer = OmegaConf.load(path)
    except (yaml.YAMLError, OmegaConfBaseException) as error:
        problem = " ".join(str(error).split())
        raise ConfigError(f"Recipe {path} is not valid YAML: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"Recipe {path} is not a text file: give a YAML recipe (e.g. "
                          f"recipes/glyphs_5way1shot_srwm.yaml)") from None
    if not isinstance(OmegaConf.to_container(layer), dict):
        raise ConfigError(f"Recipe {path} must be a mapping of sections (data:, model:, ...), got "
                          f"{type(OmegaConf.to_container(layer)).__name__}")
    layers = []
    if "base" in layer:
        layers = read_recipe(path.parent / str(layer.pop("base")), seen + (path.resolve(),))
    if not seen and "recipe" not in layer:  # a saved run's config.yaml keeps its recipe's name
        layer.recipe = path.stem
    return layers + [layer]


def last_layer_setting(containers: list[dict], section: str, keys) -> int:
    """Index of the last layer that sets any of ``section``.``keys``, or -1 (the defaults)."""
    return max([i for i, c in enumerate(containers) for k in keys if k in (c.get(section) or {})], default=-1)


def chosen(containers: list[dict], section: str | None, key: str, default: str) -> str:
    """The value of ``section.key`` (or the top-level ``key``) that the last layer setting it gives."""
    values = [c if section is None else (c.get(section) or {}) for c in containers]
    return next((str(v[key]) for v in reversed(values) if isinstance(v, dict) and key in v), default)


def task_unread_keys(config: RunConfig, section: str) -> set[str]:
    """The ``model`` keys the task never reads (e.g. the backbone of a task without frames)."""
    return config.model.unread_for_inputs(TASKS[config.task].inputs) if section == "model" else set()


def unread_keys(config: RunConfig, section: str) -> set[str]:
    """The keys of ``section`` that the chosen kinds (and, for ``model``, the task) do not read."""
    return getattr(config, section).unread_keys() | task_unread_keys(config, section)


def strip_other_kinds_keys(containers: list[dict], kind: str) -> dict[str, int]:
    """Remove from every layer the ``model`` keys of other learner kinds than ``kind``; returns
    ``{key: the last layer that set it}``."""
    others, stripped = other_kinds_keys(LEARNER_KINDS[kind].Config), {}
    for i, container in enumerate(containers):
        model = container.get("model")
        for key in sorted(others & set(model if isinstance(model, dict) else ())):
            del model[key]
            stripped[key] = i
    return stripped


def drop_unread_keys(config: RunConfig, containers: list[dict], stripped: dict[str, int],
                     noted_layer: int) -> list[str]:
    """Reset keys the chosen kinds do not read to their defaults (``stripped``: the model keys of
    other learner kinds, already removed); raise for those set as deliberately as the kind (or the
    task that never reads them) itself. Returns the ones left out that layer ``noted_layer`` (the
    recipe file named on the command line, under overrides) had set; those of its base recipes go
    without a word."""
    notes = []
    task_layer = max([i for i, c in enumerate(containers) if "task" in c], default=-1)
    kind_layer = last_layer_setting(containers, "model", ["kind"])
    for key, set_at in sorted(stripped.items()):
        if set_at >= kind_layer:
            raise ConfigError(f"model.{key} is not read with model.kind={config.model.kind}; remove it")
        if set_at == noted_layer:
            notes.append(f"model.{key}")
    for section in ("data", "model", "optim"):
        values, unread = getattr(config, section), unread_keys(config, section)
        by_task = task_unread_keys(config, section)
        for key in sorted(unread):
            set_at = last_layer_setting(containers, section, [key])
            if set_at == -1:
                continue
            if key in by_task:
                decided, deciding = task_layer, f"task={config.task}"
            else:
                decided = last_layer_setting(containers, section, values.DECIDING_KEYS)
                deciding = ", ".join(f"{section}.{k}={getattr(values, k)}" for k in values.DECIDING_KEYS
                                     if k not in unread)
            if set_at >= decided:
                raise ConfigError(f"{section}.{key} is not read with {deciding}; remove it")
            default = {f.name: f for f in fields(values)}[key]
            setattr(values, key, default.default if default.default is not MISSING else default.default_factory())
            if set_at == noted_layer:
                notes.append(f"{section}.{key}")
    return sorted(notes)


def load_config(recipe: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    """The RunConfig of a recipe YAML (or the defaults) with ``key=value`` overrides applied."""
    layers = read_recipe(Path(recipe).expanduser()) if recipe is not None else []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"Override {item!r} is not key=value (e.g. train.steps=100)")
    if overrides:
        try:
            layers.append(OmegaConf.from_dotlist(list(overrides)))
        except (yaml.YAMLError, OmegaConfBaseException) as error:
            raise ConfigError(f"Bad override in {' '.join(overrides)}: {' '.join(str(error).split())}") from None
    containers = [OmegaConf.to_container(layer) for layer in layers]
    task = chosen(containers, None, "task", DEFAULT_TASK)
    if task not in TASKS:
        raise ConfigError(f"Unknown task {task!r}. Valid: {', '.join(TASKS)}")
    kind = chosen(containers, "model", "kind", DEFAULT_KIND)
    if kind not in TASKS[task].learner_kinds():
        raise ConfigError(f"Unknown model.kind {kind!r} for task {task}. Valid: "
                          f"{', '.join(TASKS[task].learner_kinds())}")
    for container in containers:
        check_keys(container, sections(task, kind))
    stripped = strip_other_kinds_keys(containers, kind)
    config = merge(task, kind, containers)
    check_choices(config)
    notes = drop_unread_keys(config, containers, stripped, noted_layer=len(layers) - 1 - bool(overrides))
    if notes and int(os.environ.get("RANK", 0)) == 0:
        learner = f"model.kind={config.model.kind}" + (f", model.mixer={config.model.mixer}"
                                                       if config.model.kind == "sequence" else "")
        print(f"note: {', '.join(notes)} of {recipe} not read with {learner}: left out", file=sys.stderr)
    if recipe is not None and overrides and config.train.name is None:
        name_run_after_overrides(config, Path(recipe).expanduser())
    return config


def name_run_after_overrides(config: RunConfig, recipe: Path) -> None:
    """Set ``train.name`` to the recipe's name and a short hash of the overrides that shape training
    (two commands that differ in them get two folders; the same command finds its folder again). The
    progress bar or lines and the last line of ``python -m metafwp.train`` show the folder."""
    try:
        changed = trajectory_differences(load_config(recipe), config)
    except ConfigError:  # the recipe alone does not load (the overrides complete it): hash them all
        changed = [f"{key} ({value})" for key, value in sorted(flatten(config_to_dict(config)).items())
                   if key not in RUN_SETTINGS and key not in test_keys(config.task)]
    if changed:
        digest = hashlib.sha256("; ".join(changed).encode()).hexdigest()[:6]
        config.train.name = f"{config.recipe}-{digest}"


def merge(task: str, kind: str, containers: list[dict]) -> RunConfig:
    """The RunConfig of ``task`` and learner ``kind`` with the layers ``containers`` merged over the defaults."""
    defaults = RunConfig(data=TASKS[task].DataConfig(), model=LEARNER_KINDS[kind].Config())
    check_lists(defaults, containers)
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(defaults), *containers))
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        raise ConfigError(f"Bad config value{' for ' + repr(key) if key else ''}: "
                          f"{str(getattr(error, 'msg', error)).splitlines()[0]}") from None


def check_lists(defaults: RunConfig, containers: list[dict]) -> None:
    """A list key given one bare value (``eval.baselines=pixel_nn``) is an error that shows the list to write."""
    for container in containers:
        for section, values in container.items():
            schema = getattr(defaults, section, None)
            if not isinstance(values, dict) or schema is None:
                continue
            lists = {f.name for f in fields(schema) if "List" in str(f.type)}
            for key, value in values.items():
                if key in lists and value is not None and not isinstance(value, list):
                    raise ConfigError(f"{section}.{key} is a list: write {section}.{key}=[{value}] (brackets, "
                                      f"comma-separated)")


def config_to_dict(config: RunConfig) -> dict:
    """The keys ``config`` reads, as nested plain containers."""
    values = OmegaConf.to_container(OmegaConf.structured(config))
    for section in ("data", "model", "optim"):
        for key in unread_keys(config, section):
            values[section].pop(key)
    return values


def config_to_yaml(config: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.create(config_to_dict(config)))


def flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def trajectory_differences(saved: RunConfig, config: RunConfig) -> list[str]:
    """``key (saved -> new)`` for every key that shapes training and differs between the configs."""
    old, new = flatten(config_to_dict(saved)), flatten(config_to_dict(config))
    keys = sorted((set(old) | set(new)) - set(RUN_SETTINGS) - set(test_keys(config.task)))
    return [f"{key} ({old.get(key, 'not read')} -> {new.get(key, 'not read')})" for key in keys
            if old.get(key, "not read") != new.get(key, "not read")]


def config_from_yaml(text: str) -> RunConfig:
    """A RunConfig from the text of a saved ``config.yaml`` (as a checkpoint stores it)."""
    layer = OmegaConf.to_container(OmegaConf.create(text))
    return merge(chosen([layer], None, "task", DEFAULT_TASK), chosen([layer], "model", "kind", DEFAULT_KIND), [layer])
