"""The run configuration: typed dataclasses filled from a YAML recipe plus ``key=value`` overrides,
validated before any work. An unknown key is an error listing the valid ones; the ``data`` section
is the chosen task's own dataclass; a key the chosen kind of learner or task does not read is an
error when the recipe layer or override that sets it also chose the kind (or came later), and is
left out when it comes from an earlier layer (a ``base`` recipe, quietly; the recipe under an
override that changes ``model.kind`` / ``model.mixer``, with a note). ``config.yaml`` holds only
the keys read."""
from __future__ import annotations

import difflib
import os
import sys
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, List, Optional

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from metafwp.errors import ConfigError
from metafwp.models.backbones import BACKBONES, NORMS
from metafwp.nn import BETA_ACTIVATIONS, FEATURE_MAPS, MIXERS
from metafwp.ops import RECURRENT_FWPS, RULES
from metafwp.tasks import TASKS, FewShotTask

SCHEDULES = ("constant", "noam", "cosine")
PROGRESS = ("auto", "bar", "lines", "none")


@dataclass
class ModelConfig:
    """``kind``: sequence (an in-context learner), prototypical, pixel_nn, linear_attention or maml (the
    tasks say which they train)."""
    kind: str = "sequence"
    backbone: str = "conv4"
    filters: Optional[int] = None     # Conv-4 width (Default: 64 up to 28x28, 32 above)
    norm: str = "batch"
    backbone_dropout: float = 0.0
    mixer: str = "srwm"               # srwm, lstm, attention, a Table-1 rule (delta, ...), mesa or a recurrent FWP
    d_model: int = 256
    num_layers: int = 2
    num_heads: int = 16
    ff_multiplier: int = 4
    dropout: float = 0.0
    feature_map: Optional[str] = None
    beta_activation: str = "sigmoid"
    mesa_lambda: float = 1.0          # mesa: the ridge lambda of its least-squares fast weights
    num_householder: int = 1          # delta, gated_delta: n > 1 delta micro-steps per token (DeltaProduct)
    matched_init: bool = False        # keys start matched to queries: a shorter plateau at chance
    srwm_input_norm: bool = False     # the SRWM reads LayerNorm(h) instead of the raw stream h
    tied_layers: bool = False         # linear_attention: one layer's weights applied num_layers times
    init_std: float = 0.002           # linear_attention: weights start as N(0, init_std^2)
    inner_lr: float = 0.4             # maml: the inner SGD's learning rate
    inner_steps: int = 1              # maml: inner steps in meta-training
    test_inner_steps: Optional[int] = None  # maml: inner steps when testing (Default: inner_steps)
    first_order: bool = False         # maml: FO-MAML (inner gradients as constants)
    mlp_hidden: List[int] = field(default_factory=lambda: [40, 40])  # maml on regression: the MLP's widths

    DECIDING_KEYS: ClassVar[tuple[str, ...]] = ("kind", "mixer", "backbone")

    def unread_keys(self) -> set[str]:
        names = {f.name for f in fields(self)}
        if self.kind == "pixel_nn":
            return names - {"kind"}
        if self.kind == "linear_attention":
            return names - {"kind", "num_layers", "tied_layers", "init_std"}
        read = {"kind", "backbone", "norm", "backbone_dropout"} | ({"filters"} if self.backbone == "conv4" else set())
        if self.kind == "maml":
            read |= {"inner_lr", "inner_steps", "test_inner_steps", "first_order", "mlp_hidden"}
        if self.kind == "sequence":
            read |= {"mixer", "d_model", "num_layers", "ff_multiplier", "dropout"}
            read |= {"num_heads"} if self.mixer != "lstm" else set()
            read |= {"matched_init"} if self.mixer not in ("lstm",) + RECURRENT_FWPS else set()
            read |= {"srwm_input_norm"} if self.mixer == "srwm" else set()
            read |= {"feature_map", "beta_activation"} if self.mixer in RULES else set()
            read |= {"num_householder"} if self.mixer in ("delta", "gated_delta") else set()
            read |= {"feature_map", "mesa_lambda"} if self.mixer == "mesa" else set()
        return names - read

    def check(self) -> None:
        choices = [("backbone", self.backbone, BACKBONES), ("norm", self.norm, NORMS), ("mixer", self.mixer, MIXERS),
                   ("beta_activation", self.beta_activation, tuple(BETA_ACTIVATIONS))]
        if self.feature_map is not None:
            choices.append(("feature_map", self.feature_map, tuple(FEATURE_MAPS)))
        for key, value, valid in choices:
            if value not in valid:
                raise ConfigError(f"Unknown model.{key} {value!r}. Valid: {', '.join(valid)}")
        if self.num_householder < 1:
            raise ConfigError(f"model.num_householder must be >= 1 (1: the delta rule, n > 1: DeltaProduct), got "
                              f"{self.num_householder}")
        if not self.mesa_lambda > 0:
            raise ConfigError(f"model.mesa_lambda must be > 0 (the ridge term of the mesa rule), got {self.mesa_lambda}")


@dataclass
class OptimConfig:
    """Adam with the reference betas and eps. ``schedule``: ``constant`` keeps ``lr``; ``noam`` warms up
    over ``warmup_steps``: ``lr * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)``; ``cosine``
    decays ``lr`` to 0 over ``train.steps``: ``lr * (1 + cos(pi * step / steps)) / 2``."""
    lr: float = 1e-3
    betas: List[float] = field(default_factory=lambda: [0.9, 0.995])
    eps: float = 1e-9
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 5000
    grad_clip: float = 0.0            # max gradient norm; 0 disables clipping

    DECIDING_KEYS: ClassVar[tuple[str, ...]] = ("schedule",)

    def unread_keys(self) -> set[str]:
        return set() if self.schedule == "noam" else {"warmup_steps"}

    def check(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"Unknown optim.schedule {self.schedule!r}. Valid: {', '.join(SCHEDULES)}")


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
    name: Optional[str] = None        # run folder name (Default: the recipe's name)
    resume: bool = False              # continue the run in the folder exactly (same config)
    init_from: Optional[str] = None   # a new run starting from another run's weights (folder or .pt)
    progress: str = "auto"            # auto (a bar on a terminal, else lines), bar, lines or none


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
    task: str = "few_shot"            # a key of metafwp.tasks.TASKS
    data: Any = field(default_factory=FewShotTask.DataConfig)  # the task's DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    recipe: str = "custom"            # the recipe's file stem, for the run name


# keys a resumed run may change: they do not shape the model's trajectory or its best checkpoint
RESUME_MAY_DIFFER = {"recipe", "train.resume", "train.progress", "train.threads", "train.log_every",
                     "train.checkpoint_every", "train.out_dir", "train.name", "data.num_workers",
                     "data.test_split", "eval.episodes", "eval.batch_size", "eval.seed", "eval.baselines"}


def sections(task_name: str) -> dict[str, type]:
    return {"data": TASKS[task_name].DataConfig, "model": ModelConfig, "optim": OptimConfig, "train": TrainConfig,
            "eval": EvalConfig}


def schema_keys(schema) -> list[str]:
    return [f.name for f in fields(schema)]


def check_keys(values: dict, schema: dict[str, type] | type, prefix: str = "") -> None:
    """Raise a ConfigError for any key of ``values`` that is not in ``schema`` (a dataclass, or the
    top level: ``{section: dataclass}`` plus ``task`` and ``recipe``)."""
    valid = schema_keys(RunConfig) if isinstance(schema, dict) else schema_keys(schema)
    for key, value in values.items():
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
            raise ConfigError(f"Unknown config key '{prefix}{key}'.{hint} Valid keys"
                              f"{' of ' + prefix.rstrip('.') if prefix else ''}: {', '.join(valid)}")
        if isinstance(schema, dict) and key in schema:
            if not isinstance(value, dict):
                raise ConfigError(f"Config key {key!r} is a section; give its keys, e.g. {key}.x=...")
            check_keys(value, schema[key], f"{key}.")


def check_choices(config: RunConfig) -> None:
    """Closed-set and range checks that the types alone do not express."""
    task = TASKS[config.task]
    if config.model.kind not in task.learner_kinds:
        raise ConfigError(f"Unknown model.kind {config.model.kind!r} for task {config.task}. Valid: "
                          f"{', '.join(task.learner_kinds)}")
    for section in (config.data, config.model, config.optim):
        section.check()
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
    if config.model.kind == "linear_attention" and (config.model.num_layers < 1 or config.model.init_std <= 0):
        raise ConfigError(f"model.kind=linear_attention needs model.num_layers >= 1 and model.init_std > 0, got "
                          f"{config.model.num_layers} and {config.model.init_std}")
    if config.model.kind == "maml":
        for key, value in (("inner_steps", config.model.inner_steps), ("test_inner_steps", config.model.test_inner_steps)):
            if value is not None and value < 0:
                raise ConfigError(f"model.{key} must be >= 0 (0: no adaptation), got {value}")
        if config.model.inner_lr <= 0:
            raise ConfigError(f"model.inner_lr must be > 0, got {config.model.inner_lr}")
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


def unread_keys(config: RunConfig, section: str) -> set[str]:
    """The keys of ``section`` that the chosen kinds (and, for ``model``, the task) do not read."""
    keys = getattr(config, section).unread_keys()
    return keys | task_unread_keys(config, section)


def task_unread_keys(config: RunConfig, section: str) -> set[str]:
    return TASKS[config.task].unread_model_keys(config.model) if section == "model" else set()


def drop_unread_keys(config: RunConfig, containers: list[dict], noted_layer: int) -> list[str]:
    """Reset keys the chosen kinds do not read to their defaults; raise for those set as deliberately
    as the kind (or the task that never reads them) itself. Returns the ones left out that layer
    ``noted_layer`` (the recipe file named on the command line, under overrides) had set; those of
    its base recipes go without a word."""
    notes = []
    task_layer = max([i for i, c in enumerate(containers) if "task" in c], default=-1)
    for section in ("data", "model", "optim"):
        values, unread, by_task = getattr(config, section), unread_keys(config, section), task_unread_keys(config, section)
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
    return notes


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
    task = next((c["task"] for c in reversed(containers) if "task" in c), "few_shot")
    if task not in TASKS:
        raise ConfigError(f"Unknown task {task!r}. Valid: {', '.join(TASKS)}")
    for container in containers:
        check_keys(container, sections(task))
    try:
        merged = OmegaConf.merge(OmegaConf.structured(RunConfig(data=TASKS[task].DataConfig())), *layers)
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        raise ConfigError(f"Bad config value{' for ' + repr(key) if key else ''}: "
                          f"{str(getattr(error, 'msg', error)).splitlines()[0]}") from None
    check_choices(config)
    notes = drop_unread_keys(config, containers, noted_layer=len(layers) - 1 - bool(overrides))
    if notes and int(os.environ.get("RANK", 0)) == 0:
        learner = f"model.kind={config.model.kind}" + (f", model.mixer={config.model.mixer}"
                                                       if config.model.kind == "sequence" else "")
        print(f"note: {', '.join(notes)} of {recipe} not read with {learner}: left out", file=sys.stderr)
    return config


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
    keys = sorted((set(old) | set(new)) - RESUME_MAY_DIFFER)
    return [f"{key} ({old.get(key, 'not read')} -> {new.get(key, 'not read')})" for key in keys
            if old.get(key, "not read") != new.get(key, "not read")]


def config_from_yaml(text: str) -> RunConfig:
    """A RunConfig from the text of a saved ``config.yaml`` (as a checkpoint stores it)."""
    layer = OmegaConf.create(text)
    task = layer.get("task", "few_shot")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RunConfig(data=TASKS[task].DataConfig())),
                                               layer))
