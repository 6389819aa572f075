"""Typed, validated model and optimizer configs (pydantic), and the check that a model fits data.

Every config is a frozen pydantic model that validates itself (field constraints, plus
``model_validator``s for cross-field rules), so a config that exists is a config that can be
built. Checks that need the data (input shape, class count) live in :func:`validate_for_data`
because the same config is reused across datasets. This layer raises plain ``ValueError`` /
pydantic ``ValidationError``; ``search_spaces`` turns them into one-line ``ConfigError``s.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, TypeAlias, Union, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    model_validator,
)

from .blocks import ACTIVATIONS
from .registry import ALIASES, FAMILIES, canonical_family

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

# Strict: no "3" -> 3 or True -> 1 coercion (YAML typos must fail); frozen: configs are
# hashable cache keys; forbid: an unknown key is a typo.
CONFIG = ConfigDict(frozen=True, extra="forbid", strict=True)


def _as_tuple(value: Any) -> Any:
    # YAML/JSON give lists; configs hold tuples so they stay hashable. Strict mode would
    # otherwise refuse a list for a tuple field.
    return tuple(value) if isinstance(value, list) else value


PositiveInt = Annotated[int, Field(gt=0)]
Widths = Annotated[tuple[PositiveInt, ...], BeforeValidator(_as_tuple)]
Dropout = Annotated[float, Field(ge=0.0, lt=1.0)]
# One kernel size for every block, or one per block. The callable discriminator keeps errors
# on one branch (``kernel_size[0]``) instead of one per union member; the "<...>" tags are
# markers that the error formatter leaves out of key paths.
KernelSize = Annotated[
    Annotated[PositiveInt, Tag("<int>")] | Annotated[Widths, Tag("<list>")],
    Discriminator(lambda v: "<list>" if isinstance(v, (list, tuple)) else "<int>"),
]


def check_activation(name: str) -> str:
    if name not in ACTIVATIONS:
        known = ", ".join(sorted(ACTIVATIONS))
        raise ValueError(f"unknown activation {name!r} (known: {known})")
    return name


# --------------------------------------------------------------------------- optimizer


class OptimConfig(BaseModel):
    """Optimizer, learning-rate schedule and label smoothing: how the weights are fitted.

    ``rho`` is RMSprop's smoothing constant (torch ``alpha``, Keras ``rho``). ``eps=None`` means
    the per-optimizer default in :data:`DEFAULT_EPS`: 1e-7 for rmsprop (Keras), 1e-8 for
    adam/adamw (torch). ``momentum`` is used by sgd and rmsprop only. ``weight_decay`` is L2 for
    adam/rmsprop/sgd and decoupled for adamw. ``schedule``: ``cosine`` anneals over the run's
    epochs (stepped per epoch); ``onecycle`` peaks at ``lr`` (stepped per batch).
    ``label_smoothing`` moves that much of each target's probability to a uniform spread over
    the classes (torch's ``CrossEntropyLoss(label_smoothing=...)``; a binary target y becomes
    ``y (1 - s) + s / 2``). It shapes the training loss (``train_loss`` too); validation
    and test losses stay plain. ``cycle_ends``: epochs at which a decaying schedule completes
    a cycle and starts the next (a sweep sets them to its scheduler's rungs with
    ``budget.fair_rungs``, so that each trial is judged at the end of a cycle, not at its peak).
    """

    model_config = CONFIG

    name: OptimizerName = "adam"
    lr: Annotated[float, Field(gt=0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    nesterov: bool = False
    rho: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    eps: Annotated[float, Field(gt=0)] | None = None
    schedule: ScheduleName = "none"
    label_smoothing: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.0
    cycle_ends: Widths = ()  # positive epochs, in order

    @model_validator(mode="after")
    def _cycle_ends_increase(self) -> OptimConfig:
        if list(self.cycle_ends) != sorted(set(self.cycle_ends)):
            raise ValueError(f"cycle_ends: must increase, got {list(self.cycle_ends)}")
        return self

    @model_validator(mode="after")
    def _nesterov_needs_sgd_momentum(self) -> OptimConfig:
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise ValueError(
                "nesterov: needs name 'sgd' and momentum > 0, "
                f"got name {self.name!r} with momentum {self.momentum}"
            )
        return self

    @property
    def resolved_eps(self) -> float | None:
        """``eps``, or the optimizer's default when unset (None for sgd)."""
        return self.eps if self.eps is not None else DEFAULT_EPS[self.name]


def optim_config_from_dict(data: Mapping[str, Any] | None) -> OptimConfig:
    """Strictly build an :class:`OptimConfig` (``None`` means all defaults); raises
    pydantic's ``ValidationError``."""
    return OptimConfig.model_validate(data or {})


# --------------------------------------------------------------------------- models


class ModelConfig(BaseModel):
    """What every family's config has: its ``family`` (``Literal`` in each family's class)
    and, for two-class data, the decision threshold.

    Two classes make the head one logit for the positive class (sigmoid BCE), whatever the
    family. ``threshold_rule``: ``fixed`` tests at ``threshold``; ``youden`` or ``f1`` test at
    the threshold that maximises Youden's J or the F1 on the validation split, reported beside
    the figures at ``threshold``; ``youden_smooth`` at the maximum of Youden's J of the
    kernel-smoothed validation ROC (steadier when the validation AUC is near 1). Validation
    metrics during training stay at ``threshold``. Each family checks that it fits the data
    in :meth:`check_data`.
    """

    model_config = CONFIG

    family: str
    threshold: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    threshold_rule: Literal["fixed", "youden", "youden_smooth", "f1"] = "fixed"

    def check_data(self, input_shape: tuple[int, ...], where: str) -> None:
        """Raise ``ValueError`` (its message starting with the key) if this model cannot be
        built for inputs of ``input_shape``."""


def require_images(cfg: ModelConfig, shape: tuple[int, ...], where: str) -> None:
    """A family of image models: inputs must be ``(channels, height, width)``."""
    if len(shape) != 3:
        got = f"a flat feature vector of shape {shape}" if len(shape) == 1 else \
            f"inputs of shape {shape}"
        raise ValueError(f"{where}.family: {cfg.family!r} needs image inputs shaped "
                         f"(channels, height, width), got {got}")


def require_halvings(shape: tuple[int, ...], halvings: int, key: str, what: str) -> None:
    """Inputs large enough to be halved ``halvings`` times (pooling, strides)."""
    need = 2**halvings
    height, width = shape[1:]
    if min(height, width) < need:
        raise ValueError(f"{key}: {what} inputs of at least {need}x{need}, got {height}x{width}")


def _family_by_its_registered_name(data: Any) -> Any:
    if isinstance(data, Mapping) and data.get("family") in ALIASES:
        return {**data, "family": canonical_family(data["family"])}
    return data


def model_config_union() -> Any:
    """The registered families' configs as one discriminated union (``family`` picks; an
    alias is read as its family)."""
    classes = tuple(f.config for f in FAMILIES.values())
    return Annotated[Union[classes], Field(discriminator="family"),  # noqa: UP007
                     BeforeValidator(_family_by_its_registered_name)]


@functools.cache
def _model_adapter(families: tuple[str, ...]) -> TypeAdapter[Any]:
    return TypeAdapter(model_config_union())


def model_config_from_dict(data: Mapping[str, Any]) -> ModelConfig:
    """Build the config class registered for ``data["family"]``; raises pydantic's
    ``ValidationError``."""
    return _model_adapter(tuple(FAMILIES)).validate_python(data)


def validate_for_data(
    model_cfg: ModelConfig,
    input_shape: Sequence[int],
    num_classes: int,
    where: str = "model",
) -> None:
    """Raise ``ValueError`` if ``model_cfg`` cannot be built for or trained on this data.

    ``input_shape`` excludes the batch dimension: ``(C, H, W)`` for images, ``(F,)`` for
    feature vectors. Messages start with the offending key (``model.filters: ...``).
    """
    shape = tuple(input_shape)
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in shape):
        raise ValueError(f"input_shape must be a non-empty list of positive ints, got {shape}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if num_classes != 2 and (model_cfg.threshold != 0.5 or model_cfg.threshold_rule != "fixed"):
        key = "threshold" if model_cfg.threshold != 0.5 else "threshold_rule"
        raise ValueError(f"{where}.{key}: applies to two-class data only (one logit for the "
                         f"positive class), got {num_classes} classes")
    model_cfg.check_data(shape, where)
