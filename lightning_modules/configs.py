"""Typed, validated model and optimizer configs, the family registry, and data-fit checks.

Every config is a frozen dataclass that validates itself in ``__post_init__``, so a config that
exists is a config that can be built. Checks that need the data (input shape, class count) live
in :func:`validate_for_data` because the same config is reused across datasets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias, TypeVar, get_args

from torch import nn

from search_spaces.typed import ConfigError, from_dict

from .blocks import ACTIVATIONS
from .cnn import build_cnn
from .mlp import build_mlp

T = TypeVar("T")

OptimizerName: TypeAlias = Literal["adam", "adamw", "rmsprop", "sgd"]
ScheduleName: TypeAlias = Literal["none", "cosine", "onecycle"]
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerName)
SCHEDULES: tuple[str, ...] = get_args(ScheduleName)

# Keras' RMSprop epsilon is 1e-7 and the lab's RMSprop runs used Keras defaults, so rmsprop keeps
# it; adam/adamw keep torch's 1e-8. SGD has no epsilon.
DEFAULT_EPS: dict[str, float | None] = {
    "adam": 1e-8,
    "adamw": 1e-8,
    "rmsprop": 1e-7,
    "sgd": None,
}


class _FieldError(ConfigError):
    """A ``__post_init__`` failure; its message starts with the field name so loaders can prefix
    the config's location (``model.`` / ``optimizer.``) that the dataclass itself does not know."""


def _join(where: str, message: str) -> str:
    return f"{where}.{message}" if where else message


def _build(cls: type[T], data: Mapping[str, Any] | None, where: str) -> T:
    try:
        return from_dict(cls, data, where)
    except _FieldError as exc:
        raise ConfigError(_join(where, str(exc))) from None


def _set(obj: object, name: str, value: Any) -> None:
    # Frozen dataclasses only allow normalising fields through object.__setattr__.
    object.__setattr__(obj, name, value)


def _check_widths(name: str, values: Iterable[Any]) -> tuple[int, ...]:
    if not isinstance(values, (list, tuple)):
        raise _FieldError(f"{name} must be a list of integers, got {values!r}")
    values = tuple(values)
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _FieldError(f"{name}[{i}] must be an integer, got {value!r}")
        if value <= 0:
            raise _FieldError(f"{name}[{i}] must be positive, got {value}")
    return values


def _check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        known = ", ".join(sorted(ACTIVATIONS))
        raise _FieldError(f"activation: unknown activation {name!r} (known: {known})")


def _check_dropout(value: float) -> None:
    # "not (...)" so that NaN is rejected too.
    if not 0.0 <= value < 1.0:
        raise _FieldError(f"dropout must be in [0, 1), got {value}")


# --------------------------------------------------------------------------- optimizer


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and learning-rate schedule.

    ``rho`` is RMSprop's smoothing constant (torch ``alpha``, Keras ``rho``). ``eps=None`` means
    the per-optimizer default in :data:`DEFAULT_EPS`: 1e-7 for rmsprop (Keras), 1e-8 for
    adam/adamw (torch). ``momentum`` is used by sgd and rmsprop only. ``weight_decay`` is L2 for
    adam/rmsprop/sgd and decoupled for adamw. ``schedule``: ``cosine`` anneals over the run's
    epochs (stepped per epoch); ``onecycle`` peaks at ``lr`` (stepped per batch).
    """

    name: OptimizerName = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0
    nesterov: bool = False
    rho: float = 0.9
    eps: float | None = None
    schedule: ScheduleName = "none"

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise _FieldError(
                f"name: unknown optimizer {self.name!r} (known: {', '.join(OPTIMIZERS)})"
            )
        if not self.lr > 0:
            raise _FieldError(f"lr must be positive, got {self.lr}")
        if not self.weight_decay >= 0:
            raise _FieldError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.momentum < 1.0:
            raise _FieldError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise _FieldError(
                "nesterov needs name 'sgd' and momentum > 0, "
                f"got name {self.name!r} with momentum {self.momentum}"
            )
        if not 0.0 <= self.rho < 1.0:
            raise _FieldError(f"rho must be in [0, 1), got {self.rho}")
        if self.eps is not None and not self.eps > 0:
            raise _FieldError(f"eps must be positive, got {self.eps}")
        if self.schedule not in SCHEDULES:
            raise _FieldError(
                f"schedule: unknown schedule {self.schedule!r} (known: {', '.join(SCHEDULES)})"
            )

    @property
    def resolved_eps(self) -> float | None:
        """``eps``, or the optimizer's default when unset (None for sgd)."""
        return self.eps if self.eps is not None else DEFAULT_EPS[self.name]


def optim_config_from_dict(data: Mapping[str, Any] | None, where: str = "optimizer") -> OptimConfig:
    """Strictly build an :class:`OptimConfig`; errors are prefixed with ``where``."""
    # Checked before from_dict so the message names the problem ("unknown optimizer") rather
    # than the generic Literal mismatch.
    if isinstance(data, Mapping) and "name" in data and data["name"] not in OPTIMIZERS:
        raise ConfigError(
            f"{_join(where, 'name')}: unknown optimizer {data['name']!r} "
            f"(known: {', '.join(OPTIMIZERS)})"
        )
    return _build(OptimConfig, data, where)


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class MLPConfig:
    """Fully connected network: ``hidden`` widths, each Linear [+BN] + activation [+dropout]."""

    binary: ClassVar[bool] = False

    family: Literal["mlp"] = "mlp"
    hidden: tuple[int, ...] = (300,)
    activation: str = "relu"
    dropout: float = 0.0
    batch_norm: bool = False

    def __post_init__(self) -> None:
        _set(self, "hidden", _check_widths("hidden", self.hidden))
        _check_activation(self.activation)
        _check_dropout(self.dropout)


@dataclass(frozen=True)
class ConvNetConfig:
    """Fields shared by the conv families: conv blocks (conv [+BN] + activation + 2x2 max-pool),
    then ``dense`` hidden layers (activation + dropout), then the classifier layer.

    ``kernel_size`` is one size for every block or one per block.
    """

    binary: ClassVar[bool] = False

    family: str
    filters: tuple[int, ...] = (32, 64)
    kernel_size: int | tuple[int, ...] = 3
    activation: str = "relu"
    batch_norm: bool = False
    dense: tuple[int, ...] = (128,)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _set(self, "filters", _check_widths("filters", self.filters))
        if not self.filters:
            raise _FieldError("filters must list at least one conv block, got []")
        if isinstance(self.kernel_size, int) and not isinstance(self.kernel_size, bool):
            _check_widths("kernel_size", (self.kernel_size,))
        elif not isinstance(self.kernel_size, (list, tuple)):
            raise _FieldError(
                f"kernel_size must be an integer or a list of integers, got {self.kernel_size!r}"
            )
        else:
            _set(self, "kernel_size", _check_widths("kernel_size", self.kernel_size))
            if len(self.kernel_size) != len(self.filters):
                raise _FieldError(
                    f"kernel_size has {len(self.kernel_size)} entries but filters has "
                    f"{len(self.filters)}; give one kernel size per conv block or a single int"
                )
        _set(self, "dense", _check_widths("dense", self.dense))
        _check_activation(self.activation)
        _check_dropout(self.dropout)

    @property
    def kernel_sizes(self) -> tuple[int, ...]:
        """One kernel size per conv block."""
        if isinstance(self.kernel_size, int):
            return (self.kernel_size,) * len(self.filters)
        return self.kernel_size


@dataclass(frozen=True)
class CNNConfig(ConvNetConfig):
    """Multiclass CNN: one logit per class, softmax cross-entropy."""

    family: Literal["cnn"] = "cnn"


@dataclass(frozen=True)
class BinaryCNNConfig(ConvNetConfig):
    """Binary CNN: one logit for the positive class, sigmoid BCE, decision at ``threshold``."""

    binary: ClassVar[bool] = True

    family: Literal["binary_cnn"] = "binary_cnn"
    threshold: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.threshold < 1.0:
            raise _FieldError(f"threshold must be in (0, 1), got {self.threshold}")


ModelConfig: TypeAlias = MLPConfig | CNNConfig | BinaryCNNConfig
BackboneBuilder: TypeAlias = Callable[[Any, tuple[int, ...], int], nn.Module]

FAMILIES: dict[str, tuple[type[ModelConfig], BackboneBuilder]] = {
    "mlp": (MLPConfig, build_mlp),
    "cnn": (CNNConfig, build_cnn),
    "binary_cnn": (BinaryCNNConfig, build_cnn),
}


def model_config_from_dict(data: Mapping[str, Any], where: str = "") -> ModelConfig:
    """Build the config class registered for ``data["family"]``; errors are prefixed with
    ``where``."""
    known = ", ".join(FAMILIES)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'model'}: expected a mapping, got {data!r}")
    if "family" not in data:
        raise ConfigError(f"{_join(where, 'family')}: missing (known families: {known})")
    family = data["family"]
    if family not in FAMILIES:
        raise ConfigError(
            f"{_join(where, 'family')}: unknown model family {family!r} (known: {known})"
        )
    return _build(FAMILIES[family][0], data, where)


def validate_for_data(
    model_cfg: ModelConfig,
    input_shape: Sequence[int],
    num_classes: int,
    where: str = "model",
) -> None:
    """Raise :class:`ConfigError` if ``model_cfg`` cannot be built for or trained on this data.

    ``input_shape`` excludes the batch dimension: ``(C, H, W)`` for images, ``(F,)`` for
    feature vectors.
    """
    shape = tuple(input_shape)
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in shape):
        raise ConfigError(f"input_shape must be a non-empty list of positive ints, got {shape}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    family_key = _join(where, "family")
    if model_cfg.binary and num_classes != 2:
        raise ConfigError(
            f"{family_key}: {model_cfg.family!r} has a single-logit binary head and needs a "
            f"2-class dataset, got {num_classes} classes"
        )
    if isinstance(model_cfg, ConvNetConfig):
        if len(shape) != 3:
            got = (
                f"a flat feature vector of shape {shape}"
                if len(shape) == 1
                else f"inputs of shape {shape}"
            )
            raise ConfigError(
                f"{family_key}: {model_cfg.family!r} needs image inputs shaped "
                f"(channels, height, width), got {got}"
            )
        blocks = len(model_cfg.filters)
        need = 2**blocks
        height, width = shape[1:]
        if min(height, width) < need:
            what = f"{blocks} conv blocks with 2x2 pooling need"
            if blocks == 1:
                what = "1 conv block with 2x2 pooling needs"
            raise ConfigError(
                f"{_join(where, 'filters')}: {what} inputs of at least {need}x{need}, "
                f"got {height}x{width}"
            )


def build_backbone(
    model_cfg: ModelConfig, input_shape: Sequence[int], num_classes: int
) -> nn.Module:
    """Validate ``model_cfg`` against the data, then build its family's backbone.

    The backbone returns raw logits: ``(N, num_classes)``, or ``(N, 1)`` for binary families.
    """
    if model_cfg.family not in FAMILIES:
        raise ConfigError(
            f"model.family: unknown model family {model_cfg.family!r} "
            f"(known: {', '.join(FAMILIES)})"
        )
    validate_for_data(model_cfg, input_shape, num_classes)
    builder = FAMILIES[model_cfg.family][1]
    return builder(model_cfg, tuple(input_shape), num_classes)
