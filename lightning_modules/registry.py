"""Model families by name, as timm registers its models: a family module decorates its backbone
builder with ``@register_family(name, ConfigClass)``, and the package imports every module of
this folder, so a new family is one file (plus a search space)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from pydantic import BaseModel
from torch import nn

# (config, input shape without the batch, outputs) -> a module that returns raw logits.
BackboneBuilder: TypeAlias = Callable[[Any, tuple[int, ...], int], nn.Module]


@dataclass(frozen=True)
class Family:
    name: str
    config: type[BaseModel]
    build: BackboneBuilder
    aliases: tuple[str, ...] = ()


FAMILIES: dict[str, Family] = {}
# Old names still read (e.g. ``binary_cnn``, from before binary followed from the data).
ALIASES: dict[str, str] = {}


def register_family(name: str, config: type[BaseModel], *, aliases: Sequence[str] = ()
                    ) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Register the decorated backbone builder as family ``name``, configured by ``config``
    (whose ``family`` field is ``Literal[name]``)."""

    def register(build: BackboneBuilder) -> BackboneBuilder:
        for key in (name, *aliases):
            if key in FAMILIES or key in ALIASES:
                raise ValueError(f"model family {key!r} is registered twice (in "
                                 f"{build.__module__} and before)")
        FAMILIES[name] = Family(name, config, build, tuple(aliases))
        ALIASES.update({alias: name for alias in aliases})
        return build

    return register


def canonical_family(name: Any) -> Any:
    """The registered name of ``name`` (an alias's family); other values unchanged."""
    return ALIASES.get(name, name) if isinstance(name, str) else name


def build_backbone(model_cfg: Any, input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """The backbone of an already validated ``model_cfg``: ``(N, num_classes)`` logits, or
    ``(N, 1)`` for two classes (one logit for the positive class)."""
    outputs = 1 if num_classes == 2 else num_classes
    return FAMILIES[model_cfg.family].build(model_cfg, tuple(input_shape), outputs)
