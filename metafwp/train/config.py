"""The run configuration: typed dataclasses filled from a YAML recipe plus ``key=value`` overrides,
validated before any work (an unknown key is an error listing the valid ones)."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import List, Optional, get_type_hints

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from episodes.feedback import FEEDBACK_MODES
from metafwp.models.backbones import BACKBONES, NORMS
from metafwp.nn import BETA_ACTIVATIONS, FEATURE_MAPS, MIXERS

DATASETS = ("glyphs", "omniglot", "mini_imagenet", "folder")
MODEL_KINDS = ("sequence", "prototypical", "pixel_nn")
SCHEDULES = ("constant", "noam", "cosine")
BASELINES = ("pixel_nn",)


@dataclass
class DataConfig:
    """Where episodes come from. ``root`` is the user's data folder (not needed for glyphs)."""
    dataset: str = "glyphs"
    root: Optional[str] = None
    train_split: str = "background"
    test_split: str = "evaluation"
    n_way: int = 5
    k_shot: int = 1
    n_query: int = 1
    feedback: str = "synchronous"
    rotations: bool = False          # Omniglot: rotated characters as new classes
    image_size: Optional[int] = None  # frames resized to this (Default: as stored)
    channels: Optional[int] = None    # frames converted to this many channels (Default: as stored)
    num_workers: int = 0


@dataclass
class ModelConfig:
    """``kind``: sequence (an in-context learner), prototypical or pixel_nn."""
    kind: str = "sequence"
    backbone: str = "conv4"
    filters: Optional[int] = None     # Conv-4 width (Default: 64 up to 28x28, 32 above)
    norm: str = "batch"
    backbone_dropout: float = 0.0
    mixer: str = "srwm"               # srwm, lstm, attention or a Table-1 rule (delta, ...)
    d_model: int = 256
    num_layers: int = 2
    num_heads: int = 16
    ff_multiplier: int = 4
    dropout: float = 0.0
    feature_map: Optional[str] = None
    beta_activation: str = "sigmoid"
    matched_init: bool = False        # keys start matched to queries: a shorter plateau at chance
    srwm_input_norm: bool = False     # the SRWM reads LayerNorm(h) instead of the raw stream h


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


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 32              # episodes per step, over all ranks
    seed: int = 0
    device: str = "auto"              # auto (cuda when available), cpu, cuda, cuda:1, ...
    bf16: bool = True                 # bf16 autocast on CUDA (CPU runs stay float32)
    threads: Optional[int] = None     # torch CPU threads (Default: torch's choice)
    log_every: int = 25
    checkpoint_every: int = 250
    out_dir: str = "runs"
    name: Optional[str] = None        # run folder name (Default: the recipe's name)
    resume: bool = False
    progress: bool = True


@dataclass
class EvalConfig:
    """A fixed, seeded set of test episodes drawn from ``data.test_split``."""
    episodes: int = 1000
    batch_size: int = 100
    seed: int = 1_000_003
    baselines: List[str] = field(default_factory=lambda: ["pixel_nn"])


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    recipe: str = "custom"            # the recipe's file stem, for the run name


class ConfigError(ValueError):
    """A recipe or override that does not fit the schema."""


def check_keys(values: dict, schema, prefix: str = "") -> None:
    """Raise a ConfigError for any key of ``values`` that is not a field of the dataclass ``schema``."""
    valid = [f.name for f in fields(schema)]
    for key, value in values.items():
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
            raise ConfigError(f"Unknown config key '{prefix}{key}'.{hint} Valid keys"
                              f"{' of ' + prefix.rstrip('.') if prefix else ''}: {', '.join(valid)}")
        section = get_type_hints(schema)[key]
        if is_dataclass(section):
            if not isinstance(value, dict):
                raise ConfigError(f"Config key {prefix}{key!r} is a section; give its keys, e.g. {prefix}{key}.x=...")
            check_keys(value, section, f"{prefix}{key}.")


def check_choices(config: RunConfig) -> None:
    """Closed-set and range checks that the types alone do not express."""
    choices = [("data.dataset", config.data.dataset, DATASETS), ("data.feedback", config.data.feedback, FEEDBACK_MODES),
               ("model.kind", config.model.kind, MODEL_KINDS), ("model.backbone", config.model.backbone, BACKBONES),
               ("model.norm", config.model.norm, NORMS), ("model.mixer", config.model.mixer, MIXERS),
               ("optim.schedule", config.optim.schedule, SCHEDULES),
               ("model.beta_activation", config.model.beta_activation, tuple(BETA_ACTIVATIONS))]
    if config.model.feature_map is not None:
        choices.append(("model.feature_map", config.model.feature_map, tuple(FEATURE_MAPS)))
    choices += [("eval.baselines", name, BASELINES) for name in config.eval.baselines]
    for key, value, valid in choices:
        if value not in valid:
            raise ConfigError(f"Unknown {key} {value!r}. Valid: {', '.join(valid)}")
    positive = [("train.steps", config.train.steps), ("train.batch_size", config.train.batch_size),
                ("train.log_every", config.train.log_every), ("train.checkpoint_every", config.train.checkpoint_every),
                ("eval.episodes", config.eval.episodes), ("eval.batch_size", config.eval.batch_size)]
    for key, value in positive:
        if value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")
    if config.model.kind != "sequence" and config.data.feedback != "synchronous":
        raise ConfigError(f"model.kind={config.model.kind} reads synchronous episodes; set data.feedback=synchronous")


def read_recipe(path: Path, seen: tuple[Path, ...] = ()) -> list:
    """The layers of a recipe file: its ``base`` recipe's layers (a path relative to it) first, then
    its own keys. A recipe without a ``recipe`` key is named after its file."""
    if not path.is_file():
        raise ConfigError(f"Recipe {str(path)!r} not found; the shipped ones are in recipes/ (e.g. "
                          f"recipes/glyphs_5way1shot_srwm.yaml)")
    if path.resolve() in seen:
        raise ConfigError(f"Recipe {path} names itself as a base (through {', '.join(map(str, seen))})")
    layer = OmegaConf.load(path)
    layers = []
    if "base" in layer:
        layers = read_recipe(path.parent / str(layer.pop("base")), seen + (path.resolve(),))
    if not seen and "recipe" not in layer:  # a saved run's config.yaml keeps its recipe's name
        layer.recipe = path.stem
    return layers + [layer]


def load_config(recipe: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    """The RunConfig of a recipe YAML (or the defaults) with ``key=value`` overrides applied."""
    layers = read_recipe(Path(recipe).expanduser()) if recipe is not None else []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"Override {item!r} is not key=value (e.g. train.steps=100)")
    if overrides:
        layers.append(OmegaConf.from_dotlist(list(overrides)))
    for layer in layers:
        check_keys(OmegaConf.to_container(layer), RunConfig)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(RunConfig), *layers)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        raise ConfigError(f"Bad config value{' for ' + repr(key) if key else ''}: "
                          f"{str(getattr(error, 'msg', error)).splitlines()[0]}") from None
    config = OmegaConf.to_object(merged)
    check_choices(config)
    return config


def config_to_yaml(config: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))
