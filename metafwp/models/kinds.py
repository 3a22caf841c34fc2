"""Learner kinds: what a recipe's ``model.kind`` builds. Each kind declares the dataclass of its
``model:`` section (as a task declares its ``data:`` one), what it reads (frames, vectors or token
ids; class labels or target values; whether it carries a state step to step) and how it is built
for a task's episodes. Adding a kind is a ``LearnerKind`` subclass and ``register_learner_kind``."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, List, Optional

import torch.nn as nn

from metafwp.baselines.maml import STRATEGIES, MAMLLearner, relu_mlp
from metafwp.errors import ConfigError
from metafwp.models.backbones import BACKBONES, NORMS, build_backbone, feature_size
from metafwp.models.classifier import ImageClassifier, mlp_classifier
from metafwp.models.ct_fwp import ContinuousTimeFWP
from metafwp.models.gan import ConvGenerator
from metafwp.models.linear_attention import LinearSelfAttention
from metafwp.models.neural_cde import NeuralCDE
from metafwp.models.painter import PAINTER_RULES, FastWeightPainter
from metafwp.models.prototypical import PixelNearestNeighbour, PrototypicalNetwork
from metafwp.models.sequence_learner import SequenceLearner, layer_mixers
from metafwp.nn import BETA_ACTIVATIONS, DELAYED_RATES, FEATURE_MAPS, HQLT_MIXINGS, HQLT_VARIANTS, MIXERS
from metafwp.ops import CT_RULES, ODE_SOLVERS

INPUTS = ("frames", "vectors", "tokens")   # what episode learners read (generators read "latents")
TARGETS = ("classes", "values")            # what they predict (generators make "images")


@dataclass(frozen=True)
class LearnerInputs:
    """What a task's episodes give a learner.

    Fields:
        inputs: ``frames`` (``[B, T, C, H, W]`` uint8), ``vectors`` (``[B, T, D]`` float), ``tokens``
            (``[B, T]`` int64 ids, -1 on padding) or ``latents`` (a generator's ``[B, latent]`` noise).
        shape: ``(C, H, W)``, ``(D,)``, ``(vocabulary size,)``, or for latents the generated images' ``(C, H, W)``.
        num_outputs: classes (logits) or target dims.
        feedback_dim: width of the encoded feedback (``classes + 1``, ``Dy + 1``, or 0 for none).
        targets: ``classes``, ``values`` or ``images`` (generated).
    """

    inputs: str
    shape: tuple[int, ...]
    num_outputs: int
    feedback_dim: int
    targets: str


@dataclass
class ModelSection:
    """The fields every ``model:`` section has; a kind's Config subclasses it."""
    kind: str = ""

    DECIDING_KEYS: ClassVar[tuple[str, ...]] = ("kind",)

    def unread_keys(self) -> set[str]:
        """Keys the section's own choices (e.g. the mixer) leave unread."""
        return set()

    def unread_for_inputs(self, inputs: str) -> set[str]:
        """Keys a task with ``inputs`` never reads (e.g. the backbone without frames)."""
        return set()

    def check(self) -> None:
        """Raise a ConfigError for a value out of its range or closed set."""


BACKBONE_KEYS = ("backbone", "filters", "norm", "backbone_dropout")


@dataclass
class BackboneSection(ModelSection):
    """A section with a per-frame backbone: ``conv4`` or ``resnet12``, ``filters`` (Conv-4's width,
    Default: 64 up to 28x28, 32 above), ``norm`` (batch, instance) and dropout."""
    backbone: str = "conv4"
    filters: Optional[int] = None
    norm: str = "batch"
    backbone_dropout: float = 0.0

    DECIDING_KEYS: ClassVar[tuple[str, ...]] = ("kind", "backbone")

    def unread_keys(self) -> set[str]:
        return set() if self.backbone == "conv4" else {"filters"}

    def unread_for_inputs(self, inputs: str) -> set[str]:
        return set() if inputs == "frames" else set(BACKBONE_KEYS)

    def check(self) -> None:
        check_choice("backbone", self.backbone, BACKBONES)
        check_choice("norm", self.norm, NORMS)

    def build_backbone(self, shape: tuple[int, int, int], channels_last: bool = True) -> nn.Module:
        try:
            return build_backbone(self.backbone, shape[0], self.filters, self.norm, self.backbone_dropout, shape[-1],
                                  channels_last=channels_last)
        except ValueError as error:
            raise ConfigError(str(error)) from None


def check_choice(key: str, value, valid) -> None:
    if value not in valid:
        raise ConfigError(f"Unknown model.{key} {value!r}. Valid: {', '.join(valid)}")


def check_at_least_one(section, *keys: str) -> None:
    """A ConfigError naming the first of ``keys`` whose value in ``section`` is below 1."""
    for key in keys:
        if getattr(section, key) < 1:
            raise ConfigError(f"model.{key} must be >= 1, got {getattr(section, key)}")


class LearnerKind:
    """A kind of learner. Subclasses set the class attributes and implement ``build``.

    Class attributes:
        name: the ``model.kind`` of a recipe.
        Config: the dataclass of the ``model:`` section (a ``ModelSection``; ``kind`` defaults to ``name``).
        inputs: the ``LearnerInputs.inputs`` it reads; targets: the ``LearnerInputs.targets``.
        sequential: it reads a sequence step by step and carries its state (delayed feedback,
            streams): ``forward(batch, state)`` returns the state and ``embed`` / ``read`` split it.
    """

    name: str
    Config: type
    inputs: tuple[str, ...] = INPUTS
    targets: tuple[str, ...] = TARGETS
    sequential: bool = False

    @classmethod
    def build(cls, config, inputs: LearnerInputs) -> nn.Module:
        """The learner of ``config`` (this kind's Config) sized for ``inputs``."""
        raise NotImplementedError

    @classmethod
    def label(cls, config) -> str:
        """The learner's name in results (Default: the kind)."""
        return cls.name

    @classmethod
    def reads(cls, inputs: str, targets: str) -> bool:
        return inputs in cls.inputs and targets in cls.targets


LEARNER_KINDS: dict[str, type[LearnerKind]] = {}


def register_learner_kind(kind: type[LearnerKind]) -> type[LearnerKind]:
    """Add ``kind`` to ``LEARNER_KINDS`` under its name (usable as a class decorator)."""
    LEARNER_KINDS[kind.name] = kind
    return kind


SEQUENCE_KEYS = ("mixer", "d_model", "num_layers", "ff_multiplier", "dropout")  # read with every mixer


@dataclass
class SequenceConfig(BackboneSection):
    """``kind: sequence``: an in-context learner. ``mixer``: a name of ``metafwp.nn.MIXERS`` for every
    layer, or a list with one per layer (e.g. ``[delta, attention]``); the mixer options below are
    read by the mixers the table says read them."""
    kind: str = "sequence"
    mixer: Any = "srwm"               # srwm, lstm, attention, a Table-1 rule (delta, ...), mesa, a recurrent FWP
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
    window: int = 8                   # window_attention, hqlt: the steps a query attends to (delayed_chunk: chunk)
    hybrid_variant: str = "synchronous"   # hqlt: synchronous, delayed_stream or delayed_chunk
    hybrid_mixing: str = "gate"       # hqlt: gate (per channel), sum or static (two learned scalars)
    short_conv: bool = False          # attention, window_attention, the fast-weight rules, mesa, hqlt: causal
    #                                   depthwise convolutions of 4 steps on q, k, v
    delayed_rate: str = "own"         # hqlt delayed_stream: a delayed write's rate, its own or the current step's
    learned_initial_r: bool = False   # delta_rnn, delta_lstm: R starts from a learned slow matrix, not zeros
    compile_loop: bool = False        # delta_rnn, delta_lstm, recurrent_delta: the time loop by torch.compile
    elstm_cells: Optional[int] = None  # elstm: its cells, read from and mapped back to d_model (Default: d_model)
    dct_sparsity: float = 0.5         # dct_lstm, fast_dct_rnn: the fraction of each matrix's DCT coefficients dropped

    DECIDING_KEYS: ClassVar[tuple[str, ...]] = ("kind", "mixer", "backbone")

    def mixers(self) -> list[str]:
        try:
            return layer_mixers(self.mixer, self.num_layers)
        except ValueError as error:
            raise ConfigError(f"model.mixer: {error} (model.num_layers={self.num_layers})") from None

    def unread_keys(self) -> set[str]:
        options = {f.name for f in fields(self)} - {f.name for f in fields(BackboneSection)} - set(SEQUENCE_KEYS)
        read = {key for name in self.mixers() if name in MIXERS for key in MIXERS[name].options}
        return super().unread_keys() | (options - read)

    def check(self) -> None:
        super().check()
        if not isinstance(self.mixer, (str, list)) or not all(isinstance(m, str) for m in self.mixers()):
            raise ConfigError(f"model.mixer must be a mixer name or a list of names, got {self.mixer!r}")
        for name in self.mixers():
            check_choice("mixer", name, tuple(MIXERS))
        check_choice("beta_activation", self.beta_activation, tuple(BETA_ACTIVATIONS))
        check_choice("hybrid_variant", self.hybrid_variant, HQLT_VARIANTS)
        check_choice("hybrid_mixing", self.hybrid_mixing, HQLT_MIXINGS)
        check_choice("delayed_rate", self.delayed_rate, DELAYED_RATES)
        if self.feature_map is not None:
            check_choice("feature_map", self.feature_map, tuple(FEATURE_MAPS))
        check_at_least_one(self, "d_model", "num_layers", "num_heads", "ff_multiplier", "window")
        if self.elstm_cells is not None and self.elstm_cells < 1:
            raise ConfigError(f"model.elstm_cells must be >= 1 (or null: d_model cells), got {self.elstm_cells}")
        if self.num_householder < 1:
            raise ConfigError(f"model.num_householder must be >= 1 (1: the delta rule, n > 1: DeltaProduct), got "
                              f"{self.num_householder}")
        if not 0 <= self.dct_sparsity < 1:
            raise ConfigError(f"model.dct_sparsity must be in [0, 1) (the fraction of DCT coefficients dropped), got "
                              f"{self.dct_sparsity}")
        if int(self.d_model ** 2 * (1 - self.dct_sparsity)) < 1:
            raise ConfigError(f"model.dct_sparsity={self.dct_sparsity} leaves no DCT coefficient of a "
                              f"{self.d_model} x {self.d_model} matrix: lower it or raise model.d_model")
        if not 0 < self.mesa_lambda < math.inf:
            raise ConfigError(f"model.mesa_lambda must be finite and > 0 (the ridge term of the mesa rule), got "
                              f"{self.mesa_lambda}")


@register_learner_kind
class SequenceKind(LearnerKind):
    """An in-context learner (``SequenceLearner``) on frames, vectors or token ids."""
    name, Config, sequential = "sequence", SequenceConfig, True

    @classmethod
    def build(cls, config: SequenceConfig, inputs: LearnerInputs) -> nn.Module:
        backbone, width = None, inputs.shape[0]
        if inputs.inputs == "frames":
            backbone = config.build_backbone(inputs.shape)
            width = feature_size(backbone, inputs.shape)
        try:
            return SequenceLearner.from_config(config, backbone, width, inputs.num_outputs, inputs.feedback_dim)
        except ValueError as error:
            raise ConfigError(f"model: {error}") from None

    @classmethod
    def label(cls, config: SequenceConfig) -> str:
        """The mixer (``srwm``, ``delta``, ...), or the layers' mixers joined by ``+``; a delta rule with
        ``num_householder`` n > 1 is DeltaProduct: ``delta_product_n2``, ``gated_delta_product_n2``."""
        mixers = [config.mixer] if isinstance(config.mixer, str) else config.mixer
        if config.num_householder > 1:
            mixers = [f"{m}_product_n{config.num_householder}" if m in ("delta", "gated_delta") else m for m in mixers]
        return "+".join(mixers)


@dataclass
class PrototypicalConfig(BackboneSection):
    """``kind: prototypical``: a Prototypical Network on the backbone."""
    kind: str = "prototypical"


@register_learner_kind
class PrototypicalKind(LearnerKind):
    name, Config, inputs, targets = "prototypical", PrototypicalConfig, ("frames",), ("classes",)

    @classmethod
    def build(cls, config: PrototypicalConfig, inputs: LearnerInputs) -> nn.Module:
        return PrototypicalNetwork(config.build_backbone(inputs.shape))


@dataclass
class PixelNNConfig(ModelSection):
    """``kind: pixel_nn``: raw-pixel nearest neighbour (nothing to train, nothing to set)."""
    kind: str = "pixel_nn"


@register_learner_kind
class PixelNNKind(LearnerKind):
    name, Config, inputs, targets = "pixel_nn", PixelNNConfig, ("frames",), ("classes",)

    @classmethod
    def build(cls, config: PixelNNConfig, inputs: LearnerInputs) -> nn.Module:
        return PixelNearestNeighbour()


@dataclass
class MAMLConfig(BackboneSection):
    """``kind: maml``: MAML on the backbone and a linear head (frames) or on a ReLU MLP of widths
    ``mlp_hidden`` (vectors)."""
    kind: str = "maml"
    inner_lr: float = 0.4             # the inner SGD's learning rate
    inner_steps: int = 1              # inner steps in meta-training
    test_inner_steps: Optional[int] = None  # inner steps when testing (Default: inner_steps)
    first_order: bool = False         # FO-MAML (inner gradients as constants)
    mlp_hidden: List[int] = field(default_factory=lambda: [40, 40])  # vectors: the MLP's hidden widths
    strategy: str = "auto"            # how tasks run: vmap, loop, or auto (the one measured fastest: vmap)

    def unread_for_inputs(self, inputs: str) -> set[str]:
        return super().unread_for_inputs(inputs) | ({"mlp_hidden"} if inputs == "frames" else set())

    def check(self) -> None:
        super().check()
        for key, value in (("inner_steps", self.inner_steps), ("test_inner_steps", self.test_inner_steps)):
            if value is not None and value < 0:
                raise ConfigError(f"model.{key} must be >= 0 (0: no adaptation), got {value}")
        if self.inner_lr <= 0:
            raise ConfigError(f"model.inner_lr must be > 0, got {self.inner_lr}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"Unknown model.strategy {self.strategy!r}. Valid: {', '.join(STRATEGIES)}")


@register_learner_kind
class MAMLKind(LearnerKind):
    name, Config, inputs = "maml", MAMLConfig, ("frames", "vectors")

    @classmethod
    def build(cls, config: MAMLConfig, inputs: LearnerInputs) -> nn.Module:
        options = dict(inner_lr=config.inner_lr, inner_steps=config.inner_steps,
                       test_inner_steps=config.test_inner_steps, first_order=config.first_order,
                       strategy=config.strategy)
        if inputs.inputs == "vectors":
            network = relu_mlp([inputs.shape[0], *config.mlp_hidden, inputs.num_outputs])
            return MAMLLearner(network, loss="mse" if inputs.targets == "values" else "cross_entropy", **options)
        # MAML's vmap over tasks batches frames in 5-d tensors, which have no channels-last layout
        backbone = config.build_backbone(inputs.shape, channels_last=False)
        network = nn.Sequential(backbone, nn.Linear(feature_size(backbone, inputs.shape), inputs.num_outputs))
        return MAMLLearner(network, **options)


@dataclass
class LinearAttentionConfig(ModelSection):
    """``kind: linear_attention``: von Oswald et al.'s linear self-attention layers on ``[x, y]``
    tokens; ``tied_layers`` applies one layer's weights ``num_layers`` times; weights start as
    N(0, init_std^2); ``causal: false`` lets every token read the whole support (their layer)."""
    kind: str = "linear_attention"
    num_layers: int = 2
    tied_layers: bool = False
    init_std: float = 0.002
    causal: bool = True

    def check(self) -> None:
        if self.num_layers < 1 or self.init_std <= 0:
            raise ConfigError(f"model.kind=linear_attention needs model.num_layers >= 1 and model.init_std > 0, got "
                              f"{self.num_layers} and {self.init_std}")


@register_learner_kind
class LinearAttentionKind(LearnerKind):
    name, Config, inputs, targets = "linear_attention", LinearAttentionConfig, ("vectors",), ("values",)

    @classmethod
    def build(cls, config: LinearAttentionConfig, inputs: LearnerInputs) -> nn.Module:
        return LinearSelfAttention(inputs.shape[0], inputs.num_outputs, config.num_layers, tied=config.tied_layers,
                                   init_std=config.init_std, causal=config.causal)


NETWORKS = ("mlp", "backbone")


@dataclass
class ClassifierConfig(BackboneSection):
    """``kind: classifier``: a plain image classifier (``ImageClassifier``): ``network: mlp`` (ReLU
    layers of ``hidden`` widths on the pixels; the dual-form paper's 784-800-800-10) or ``backbone``
    (the ``backbone`` section's Conv-4 or ResNet-12, then a linear head)."""
    kind: str = "classifier"
    network: str = "mlp"
    hidden: List[int] = field(default_factory=lambda: [800, 800])

    DECIDING_KEYS: ClassVar[tuple[str, ...]] = ("kind", "network", "backbone")

    def unread_keys(self) -> set[str]:
        if self.network == "mlp":
            return set(BACKBONE_KEYS)
        return super().unread_keys() | {"hidden"}

    def check(self) -> None:
        check_choice("network", self.network, NETWORKS)
        if self.network == "backbone":
            super().check()
        if any(width < 1 for width in self.hidden):
            raise ConfigError(f"model.hidden widths must be >= 1, got {self.hidden}")


@register_learner_kind
class ClassifierKind(LearnerKind):
    name, Config, inputs, targets = "classifier", ClassifierConfig, ("frames",), ("classes",)

    @classmethod
    def build(cls, config: ClassifierConfig, inputs: LearnerInputs) -> nn.Module:
        if config.network == "mlp":
            return mlp_classifier(inputs.shape, list(config.hidden), inputs.num_outputs)
        backbone = config.build_backbone(inputs.shape)
        return ImageClassifier(backbone, nn.Linear(feature_size(backbone, inputs.shape), inputs.num_outputs))


@dataclass
class PathSection(ModelSection):
    """The fields of learners solved along the spline path of irregular observations whose first
    channel is the time over a grid of ``grid_steps`` (the second, the gap, is not read)."""
    solver: str = "rk4"               # a torchdiffeq method; fixed-step ones step 1 on the grid
    adjoint: bool = True              # gradients by the adjoint: memory independent of the steps
    grid_steps: int = 28

    def check(self) -> None:
        check_choice("solver", self.solver, ODE_SOLVERS)
        if self.grid_steps < 2:
            raise ConfigError(f"model.grid_steps must be >= 2, got {self.grid_steps}")


@dataclass
class CTFWPConfig(PathSection):
    """``kind: ct_fwp``: a continuous-time FWP (``ContinuousTimeFWP``)."""
    kind: str = "ct_fwp"
    hidden: int = 32
    num_heads: int = 4
    rule: str = "delta"               # hebb, oja or delta
    cde: bool = True                  # the authors' delta_cde: keys and rate from dX/dt, values from X
    ff_dim: int = 64
    dropout: float = 0.0

    def check(self) -> None:
        super().check()
        check_choice("rule", self.rule, CT_RULES)
        if self.cde and self.rule != "delta":
            raise ConfigError(f"model.cde=true is the authors' delta_cde: set model.rule=delta or model.cde=false "
                              f"(got model.rule={self.rule})")
        check_at_least_one(self, "hidden", "num_heads", "ff_dim")
        if self.hidden % self.num_heads:
            raise ConfigError(f"model.hidden={self.hidden} is not divisible by model.num_heads={self.num_heads}")


@register_learner_kind
class CTFWPKind(LearnerKind):
    name, Config, inputs, targets = "ct_fwp", CTFWPConfig, ("vectors",), ("classes",)

    @classmethod
    def build(cls, config: CTFWPConfig, inputs: LearnerInputs) -> nn.Module:
        return ContinuousTimeFWP(inputs.shape[0] - 1, config.grid_steps, inputs.num_outputs, hidden=config.hidden,
                                 num_heads=config.num_heads, rule=config.rule, cde=config.cde, ff_dim=config.ff_dim,
                                 dropout=config.dropout, method=config.solver, adjoint=config.adjoint)


@dataclass
class NeuralCDEConfig(PathSection):
    """``kind: neural_cde``: a neural CDE (``NeuralCDE``) with a state of ``hidden`` and a vector
    field MLP of width ``field_width``."""
    kind: str = "neural_cde"
    hidden: int = 32
    field_width: int = 8

    def check(self) -> None:
        super().check()
        check_at_least_one(self, "hidden", "field_width")


@register_learner_kind
class NeuralCDEKind(LearnerKind):
    name, Config, inputs, targets = "neural_cde", NeuralCDEConfig, ("vectors",), ("classes",)

    @classmethod
    def build(cls, config: NeuralCDEConfig, inputs: LearnerInputs) -> nn.Module:
        return NeuralCDE(inputs.shape[0] - 1, config.grid_steps, inputs.num_outputs, hidden=config.hidden,
                         field_width=config.field_width, method=config.solver, adjoint=config.adjoint)


@dataclass
class GeneratorSection(ModelSection):
    """The fields of every image generator: the ``latent`` size of its noise ``z ~ N(0, I)``."""
    latent: int = 64

    def check(self) -> None:
        if self.latent < 1:
            raise ConfigError(f"model.latent must be >= 1, got {self.latent}")


@dataclass
class PainterConfig(GeneratorSection):
    """``kind: painter``: the fast weight painter (``FastWeightPainter``): an LSTM of ``hidden`` units
    emits ``steps`` strokes (a key, a value and a rate per channel, keys and values as long as the
    image's side) that ``rule`` writes into one fast weight matrix per channel; ``first_rate_one``:
    the authors' first stroke, written with rate 1; ``program_scale``: the stroke layer's initial
    weights times this (1: PyTorch's initialisation, near-uniform strokes)."""
    kind: str = "painter"
    steps: int = 28
    step_input: int = 8
    step_width: int = 32
    hidden: int = 256
    rule: str = "delta"
    first_rate_one: bool = False
    program_scale: float = 1.0

    def check(self) -> None:
        super().check()
        check_choice("rule", self.rule, PAINTER_RULES)
        if self.program_scale <= 0:
            raise ConfigError(f"model.program_scale must be > 0 (1: PyTorch's initialisation), "
                              f"got {self.program_scale}")
        if self.steps < 1:
            raise ConfigError(f"model.steps must be >= 1 (the painting steps, rank-1 strokes), got {self.steps}")
        check_at_least_one(self, "step_input", "step_width", "hidden")


@register_learner_kind
class PainterKind(LearnerKind):
    name, Config, inputs, targets = "painter", PainterConfig, ("latents",), ("images",)

    @classmethod
    def build(cls, config: PainterConfig, inputs: LearnerInputs) -> nn.Module:
        channels, height, width = inputs.shape
        return FastWeightPainter(config.latent, channels, width, config.steps, config.step_input, config.step_width,
                                 config.hidden, config.rule, config.first_rate_one, config.program_scale)

    @classmethod
    def label(cls, config: PainterConfig) -> str:
        return f"painter_{config.rule}"


@dataclass
class ConvGeneratorConfig(GeneratorSection):
    """``kind: conv_generator``: the convolutional baseline (``ConvGenerator``), ``width`` channels at
    a quarter of the image's side (88: 357,985 parameters, 0.5 % below the default painter's 359,737)."""
    kind: str = "conv_generator"
    width: int = 88

    def check(self) -> None:
        super().check()
        if self.width < 4:
            raise ConfigError(f"model.width must be >= 4 (it is halved twice), got {self.width}")


@register_learner_kind
class ConvGeneratorKind(LearnerKind):
    name, Config, inputs, targets = "conv_generator", ConvGeneratorConfig, ("latents",), ("images",)

    @classmethod
    def build(cls, config: ConvGeneratorConfig, inputs: LearnerInputs) -> nn.Module:
        channels, height, width = inputs.shape
        try:
            return ConvGenerator(config.latent, channels, width, config.width)
        except ValueError as error:
            raise ConfigError(f"model.kind=conv_generator: {error}") from None
