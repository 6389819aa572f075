"""The distributions a searched hyperparameter is drawn from (``int``, ``float``, ``choice``
and ``list``), the :class:`Param` that binds one to a config path, and their parsing from the
``search:`` mapping of a search-space file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from hpsearch.search_spaces.errors import ConfigError, validated

LIST_LENGTH = "length"

# Strict: no "3" -> 3 or True -> 1 coercion; frozen: hashable, safe to share between trials;
# forbid: an unknown key is a typo.
CONFIG = ConfigDict(frozen=True, extra="forbid", strict=True)


def _as_tuple(value: Any) -> Any:
    # YAML gives lists; the configs hold tuples (hashable), which strict mode would refuse.
    return tuple(value) if isinstance(value, list) else value


class Frozen(BaseModel):
    """The base of every setting of a search-space file (see :data:`CONFIG`)."""

    model_config = CONFIG


class _Range(Frozen):
    @model_validator(mode="after")
    def _ordered(self) -> Any:
        if self.low > self.high:  # type: ignore[attr-defined]
            raise ValueError(f"low ({self.low}) > high ({self.high})")  # type: ignore[attr-defined]
        if self.log and self.low <= 0:  # type: ignore[attr-defined]
            raise ValueError(f"log scale needs low > 0, got {self.low}")  # type: ignore[attr-defined]
        return self


class IntDist(_Range):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: Annotated[int, Field(gt=0)] = 1

    def candidates(self) -> tuple[Any, ...]:
        return (self.low, self.high)


class FloatDist(_Range):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False

    def candidates(self) -> tuple[Any, ...]:
        return (self.low, self.high)


class ChoiceDist(Frozen):
    type: Literal["choice"]
    values: Annotated[tuple[Any, ...], BeforeValidator(_as_tuple)]

    @model_validator(mode="after")
    def _not_empty(self) -> ChoiceDist:
        if not self.values:
            raise ValueError("empty choice list")
        return self

    def candidates(self) -> tuple[Any, ...]:
        return self.values


Scalar = IntDist | FloatDist | ChoiceDist
_SCALARS: dict[str, type] = {"int": IntDist, "float": FloatDist, "choice": ChoiceDist}


class ListDist(Frozen):
    """A list whose length is drawn first, then each element (e.g. layer widths)."""

    type: Literal["list"]
    length: IntDist
    each: Annotated[Scalar, Field(discriminator="type")]

    @model_validator(mode="after")
    def _some_elements(self) -> ListDist:
        if self.length.low < 1:
            raise ValueError(f"length: low must be at least 1, got {self.length.low}")
        return self

    def candidates(self) -> tuple[Any, ...]:
        return tuple([v] * n for v in self.each.candidates() for n in self.length.candidates())


Dist = Scalar | ListDist


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: ``path`` is ``section.key`` in the trial config."""

    path: str
    dist: Dist
    # Sampled only when every earlier parameter named here took one of the listed values.
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    @property
    def section(self) -> str:
        return self.path.split(".", 1)[0]

    @property
    def key(self) -> str:
        return self.path.split(".", 1)[1]

    def active(self, drawn: Mapping[str, Any]) -> bool:
        return all(drawn.get(name) in values for name, values in self.when)


def parse_dist(raw: Any, where: str) -> Dist:
    """The distribution of mapping ``raw`` (``{type: ..., ...}``) at key path ``where``."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping with a 'type', got {raw!r}")
    kind = raw.get("type")
    if kind == "list":
        unknown = sorted(set(raw) - {"type", "length", "each"})
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown key (allowed: each, length, type)")
        length = raw.get("length")
        if isinstance(length, int) and not isinstance(length, bool):
            length = {"type": "int", "low": length, "high": length}
        if length is None:
            raise ConfigError(f"{where}.length: missing (an int, or an int distribution)")
        if "each" not in raw:
            raise ConfigError(f"{where}.each: missing (the distribution of each element)")
        parts = {
            "type": "list",
            "length": _parse_scalar(length, f"{where}.length", only="int"),
            "each": _parse_scalar(raw["each"], f"{where}.each"),
        }
        return validated(ListDist, parts, where)
    return _parse_scalar(raw, where)


def _parse_scalar(raw: Any, where: str, only: str | None = None) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping with a 'type', got {raw!r}")
    kind = raw.get("type")
    allowed = [only] if only else list(_SCALARS)
    if kind not in allowed:
        raise ConfigError(f"{where}.type: must be one of {', '.join(allowed)}, got {kind!r}")
    return validated(_SCALARS[kind], raw, where)


def parse_when(
    raw: Any, where: str, earlier: list[str]
) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """A parameter's ``when:`` condition, on the parameters listed ``earlier``."""
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{where}: expected a mapping of earlier parameter -> value(s)")
    out = []
    for name, values in raw.items():
        if name not in earlier:
            raise ConfigError(f"{where}.{name}: must name a parameter listed before this one")
        out.append((name, tuple(values) if isinstance(values, list) else (values,)))
    return tuple(out)
